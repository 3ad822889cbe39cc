//! The fast path from a record's JSON to its canonical leaf bytes, in one pass and without building a
//! `serde_json::Value`: the top level is deserialised into borrowed fields, and the payload is
//! re-emitted as canonical JSON while it is parsed (members of each object collected and sorted).
//!
//! It produces exactly the bytes [`crate::record::write_canonical`] would for the same value, and it
//! refuses duplicate object keys, which a `Value` would silently collapse.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::record::{self, Kind, MAX_PAYLOAD_DEPTH, RecordError};

/// A string that borrows from the input when it has no escapes.
struct Str<'de>(Cow<'de, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

struct SubjectIn<'a> {
    name: Str<'a>,
    digest: Str<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for SubjectIn<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = SubjectIn<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with name and digest")
            }
            // Only objects: a derived impl would also take a two-element array.
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SubjectIn<'a>, A::Error> {
                let (mut name, mut digest) = (None, None);
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    let slot = match key.0.as_ref() {
                        "name" => &mut name,
                        "digest" => &mut digest,
                        _ => return Err(de::Error::custom("unknown field in a subject")),
                    };
                    if slot.replace(map.next_value::<Str<'a>>()?).is_some() {
                        return Err(de::Error::custom("duplicate field in a subject"));
                    }
                }
                match (name, digest) {
                    (Some(name), Some(digest)) => Ok(SubjectIn { name, digest }),
                    _ => Err(de::Error::custom("a subject needs name and digest")),
                }
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIn<'a> {
    #[serde(default)]
    v: Option<u64>,
    #[serde(borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    actor: Str<'a>,
    #[serde(borrow, default)]
    time: Option<Str<'a>>,
    #[serde(borrow, default)]
    subjects: Option<Vec<SubjectIn<'a>>>,
    #[serde(default)]
    payload: Option<Payload>,
}

/// The payload object, already in canonical form.
struct Payload(Vec<u8>);

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Payload;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Payload, A::Error> {
                let mut out = Vec::with_capacity(128);
                Canon {
                    out: &mut out,
                    depth: 1,
                }
                .visit_map(map)?;
                Ok(Payload(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Writes the value it is fed as canonical JSON into `out`.
struct Canon<'o> {
    out: &'o mut Vec<u8>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Canon<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn scalar<T: serde::Serialize + ?Sized, E: de::Error>(out: &mut Vec<u8>, v: &T) -> Result<(), E> {
    serde_json::to_writer(out, v).map_err(E::custom)
}

impl<'de> Visitor<'de> for Canon<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        scalar(self.out, &v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        scalar(self.out, &v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        scalar(self.out, &v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // Exactly what serde_json::Value does with a float: finite ones print shortest, others are null.
        scalar(self.out, &serde_json::Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        scalar(self.out, v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth > MAX_PAYLOAD_DEPTH {
            return Err(de::Error::custom(
                "payload nesting is deeper than 32 levels",
            ));
        }
        self.out.push(b'[');
        let mut first = true;
        loop {
            let mark = self.out.len();
            if !first {
                self.out.push(b',');
            }
            if seq
                .next_element_seed(Canon {
                    out: self.out,
                    depth: self.depth + 1,
                })?
                .is_none()
            {
                self.out.truncate(mark);
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.depth > MAX_PAYLOAD_DEPTH {
            return Err(de::Error::custom(
                "payload nesting is deeper than 32 levels",
            ));
        }
        let mut members: Vec<(Str<'de>, Vec<u8>)> = Vec::new();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            let mut value = Vec::with_capacity(16);
            map.next_value_seed(Canon {
                out: &mut value,
                depth: self.depth + 1,
            })?;
            members.push((key, value));
        }
        members.sort_unstable_by(|a, b| a.0.0.as_bytes().cmp(b.0.0.as_bytes()));
        if let Some(w) = members.windows(2).find(|w| w[0].0.0 == w[1].0.0) {
            let key: String = w[0].0.0.chars().take(64).collect();
            return Err(de::Error::custom(format_args!(
                "duplicate key {key:?} in the payload"
            )));
        }
        self.out.push(b'{');
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            scalar(self.out, k.0.as_ref())?;
            self.out.push(b':');
            self.out.extend_from_slice(v);
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// Validates a record given as JSON and returns its canonical leaf bytes. `time` may be omitted and is
/// then `now_ms`; with `strict`, `v` and `time` must be present (as in a stored leaf).
pub(crate) fn canonicalize(
    bytes: &[u8],
    now_ms: i64,
    strict: bool,
) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(bytes.len() + 32);
    canonicalize_into(bytes, now_ms, strict, &mut out)?;
    Ok(out)
}

/// [`canonicalize`], appending the leaf to `out`; on error `out` is left as it was.
pub(crate) fn canonicalize_into(
    bytes: &[u8],
    now_ms: i64,
    strict: bool,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    // A derived struct would also accept an array; a record is an object.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(diagnose(bytes, None));
    }
    let r: RecordIn<'_> = serde_json::from_slice(bytes).map_err(|e| diagnose(bytes, Some(e)))?;
    if let Some(v) = r.v {
        if v != record::SCHEMA_VERSION {
            return Err(RecordError::Version(v.to_string()));
        }
    } else if strict {
        return Err(RecordError::NotCanonical);
    }
    let kind = Kind::parse(&r.kind.0)?;
    record::check_actor(&r.actor.0)?;
    let time_ms = match &r.time {
        Some(t) => record::parse_time(&t.0)?,
        None if strict => return Err(RecordError::NotCanonical),
        None => now_ms,
    };
    let subjects = r.subjects.unwrap_or_default();
    if subjects.len() > record::MAX_SUBJECTS {
        return Err(record::subjects_error());
    }
    let mut checked = Vec::with_capacity(subjects.len());
    for s in &subjects {
        checked.push((
            s.name.0.as_ref(),
            record::check_subject(&s.name.0, &s.digest.0)?,
        ));
    }
    let payload = r.payload.map(|p| p.0);
    let start = out.len();
    record::write_leaf(
        out,
        kind,
        time_ms,
        &r.actor.0,
        checked.iter().map(|(n, d)| (*n, d)),
        payload.as_deref().unwrap_or(b"{}"),
    );
    let len = out.len() - start;
    if len > record::MAX_LEAF_BYTES {
        out.truncate(start);
        return Err(RecordError::TooLarge {
            len,
            max: record::MAX_LEAF_BYTES,
        });
    }
    Ok(())
}

/// Explains why `bytes` is not a record, in the words of the schema rather than of serde.
fn diagnose(bytes: &[u8], err: Option<serde_json::Error>) -> RecordError {
    use serde_json::Value;
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return RecordError::Json(e.to_string()),
    };
    let Value::Object(o) = value else {
        return RecordError::Field {
            field: "record",
            expected: "a JSON object",
        };
    };
    const KNOWN: [&str; 6] = ["v", "kind", "time", "actor", "subjects", "payload"];
    if let Some(k) = o.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return RecordError::UnknownField(k.chars().take(64).collect());
    }
    if let Some(v) = o.get("v")
        && v.as_u64() != Some(record::SCHEMA_VERSION)
    {
        return RecordError::Version(v.to_string().chars().take(32).collect());
    }
    match o.get("kind") {
        Some(Value::String(k)) => {
            if let Err(e) = Kind::parse(k) {
                return e;
            }
        }
        _ => {
            return RecordError::Field {
                field: "kind",
                expected: "a string",
            };
        }
    }
    match o.get("actor") {
        Some(Value::String(a)) => {
            if let Err(e) = record::check_actor(a) {
                return e;
            }
        }
        _ => {
            return RecordError::Field {
                field: "actor",
                expected: "a non-empty string of at most 256 bytes without control characters",
            };
        }
    }
    match o.get("time") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(_) => {
            return RecordError::Field {
                field: "time",
                expected: "an RFC 3339 string",
            };
        }
    }
    match o.get("subjects") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items))
            if items.iter().all(|i| {
                i.as_object().is_some_and(|s| {
                    s.len() == 2
                        && s.get("name").is_some_and(Value::is_string)
                        && s.get("digest").is_some_and(Value::is_string)
                })
            }) => {}
        Some(_) => return record::subjects_error(),
    }
    match o.get("payload") {
        None | Some(Value::Null | Value::Object(_)) => {}
        Some(_) => {
            return RecordError::Field {
                field: "payload",
                expected: "a JSON object",
            };
        }
    }
    RecordError::Invalid(err.map_or_else(|| "malformed record".to_owned(), |e| e.to_string()))
}
