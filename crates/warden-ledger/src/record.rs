//! Ledger records: the versioned schema of what Warden writes down, and its canonical byte encoding.
//!
//! The bytes hashed into the tree (the *leaf*) are the record as canonical JSON: UTF-8, no
//! insignificant whitespace, object members sorted by the bytes of their keys at every depth, strings
//! escaped as `serde_json` escapes them, numbers as `serde_json` prints them. The same record therefore
//! always has the same leaf, whatever key order or spacing it arrived with. The format is specified in
//! `docs/design/ledger-format.md`; change it only together with [`SCHEMA_VERSION`].

use serde_json::{Map, Value};
use thiserror::Error;

/// Version of the record schema, written into every leaf as `"v"`.
pub const SCHEMA_VERSION: u64 = 1;
/// Largest leaf accepted, in bytes.
pub const MAX_LEAF_BYTES: usize = 64 * 1024;
/// Longest actor, in bytes.
pub const MAX_ACTOR_BYTES: usize = 256;
/// Most subjects one record may name.
pub const MAX_SUBJECTS: usize = 32;
/// Longest subject name, in bytes.
pub const MAX_SUBJECT_NAME_BYTES: usize = 64;
/// Deepest nesting of the payload.
pub const MAX_PAYLOAD_DEPTH: usize = 32;

/// What a record is about. The set is closed: a new kind is a schema change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A verdict on a request or an artefact (allow, flag, block…).
    Decision,
    /// Something handed to a human for review.
    Escalation,
    /// A human's decision on an escalation (approve, deny, override).
    Review,
    /// A kill switch, quarantine or release of one.
    Containment,
    /// A report another step relies on (robustness, privacy, calibration, register check…).
    Evidence,
    /// A release-gate result.
    Gate,
    /// Anything else worth keeping, free text in the payload.
    Note,
}

impl Kind {
    /// Every kind, in schema order.
    pub const ALL: [Kind; 7] = [
        Kind::Decision,
        Kind::Escalation,
        Kind::Review,
        Kind::Containment,
        Kind::Evidence,
        Kind::Gate,
        Kind::Note,
    ];

    /// The kind's name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Decision => "decision",
            Kind::Escalation => "escalation",
            Kind::Review => "review",
            Kind::Containment => "containment",
            Kind::Evidence => "evidence",
            Kind::Gate => "gate",
            Kind::Note => "note",
        }
    }

    /// Parses a kind's name.
    pub fn parse(s: &str) -> Result<Kind, RecordError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| RecordError::UnknownKind(s.chars().take(64).collect()))
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An artefact a record is about, named by role and identified by its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The role of the artefact in this record: `model`, `request`, `report`, `register`…
    pub name: String,
    /// The SHA-256 of the artefact's bytes.
    pub digest: [u8; 32],
}

impl Subject {
    /// The digest as `sha256:<64 lowercase hex>`.
    pub fn digest_string(&self) -> String {
        format!("sha256:{}", hex(&self.digest))
    }
}

/// One entry of the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: Kind,
    /// When it happened, milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    /// Who or what made it: `monitor:fmnist-v3`, `user:alice`, `gate`…
    pub actor: String,
    pub subjects: Vec<Subject>,
    /// Kind-specific content; a JSON object. Raw request payloads belong here only as digests.
    pub payload: Map<String, Value>,
}

/// Why a record was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record is not valid JSON: {0}")]
    Json(String),
    #[error("record is {len} bytes, the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error(
        "unknown record kind {0:?}; expected one of: decision, escalation, review, containment, evidence, gate, note"
    )]
    UnknownKind(String),
    #[error("field `{field}`: expected {expected}")]
    Field {
        field: &'static str,
        expected: &'static str,
    },
    #[error("unknown field `{0}`; expected only v, kind, time, actor, subjects, payload")]
    UnknownField(String),
    #[error("unsupported schema version {0}; this build reads version 1")]
    Version(String),
    #[error("invalid record: {0}")]
    Invalid(String),
    #[error("leaf is not in canonical form")]
    NotCanonical,
}

impl Record {
    /// Parses and validates a record from JSON. `time` may be omitted, and is then `now_ms`.
    pub fn from_json(bytes: &[u8], now_ms: i64) -> Result<Record, RecordError> {
        let leaf = Record::canonical_leaf(bytes, now_ms)?;
        Record::decode_canonical(&leaf)
    }

    /// Validates a record given as JSON and returns its canonical leaf bytes directly: the fast path
    /// for bulk appends.
    pub fn canonical_leaf(bytes: &[u8], now_ms: i64) -> Result<Vec<u8>, RecordError> {
        if bytes.len() > MAX_LEAF_BYTES {
            return Err(RecordError::TooLarge {
                len: bytes.len(),
                max: MAX_LEAF_BYTES,
            });
        }
        crate::canonical::canonicalize(bytes, now_ms, false)
    }

    /// [`Record::canonical_leaf`], appending the leaf to `out` (left unchanged on error): lets a
    /// bulk reader pack many leaves into one buffer.
    pub fn append_canonical_leaf(
        bytes: &[u8],
        now_ms: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        if bytes.len() > MAX_LEAF_BYTES {
            return Err(RecordError::TooLarge {
                len: bytes.len(),
                max: MAX_LEAF_BYTES,
            });
        }
        crate::canonical::canonicalize_into(bytes, now_ms, false, out)
    }

    /// Validates a record given as a JSON value.
    pub fn from_value(value: Value, now_ms: i64) -> Result<Record, RecordError> {
        let bytes = serde_json::to_vec(&value).map_err(|e| RecordError::Json(e.to_string()))?;
        Record::from_json(&bytes, now_ms)
    }

    /// Decodes a stored leaf, and checks that it is exactly the canonical encoding of what it says.
    pub fn from_leaf(leaf: &[u8]) -> Result<Record, RecordError> {
        check_leaf(leaf)?;
        Record::decode_canonical(leaf)
    }

    /// Reads the fields of a leaf already known to be canonical.
    fn decode_canonical(leaf: &[u8]) -> Result<Record, RecordError> {
        let bad = || RecordError::NotCanonical;
        let Value::Object(mut o) =
            serde_json::from_slice(leaf).map_err(|e| RecordError::Json(e.to_string()))?
        else {
            return Err(bad());
        };
        let text = |o: &mut Map<String, Value>, k: &str| match o.remove(k) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(bad()),
        };
        let kind = Kind::parse(&text(&mut o, "kind")?)?;
        let actor = text(&mut o, "actor")?;
        let time_ms = parse_time(&text(&mut o, "time")?)?;
        let mut subjects = Vec::new();
        if let Some(Value::Array(items)) = o.remove("subjects") {
            for item in items {
                let Value::Object(mut s) = item else {
                    return Err(bad());
                };
                let name = text(&mut s, "name")?;
                let digest = text(&mut s, "digest")?;
                check_subject(&name, &digest)?;
                let digest = parse_digest(&digest).ok_or_else(bad)?;
                subjects.push(Subject { name, digest });
            }
        }
        let Some(Value::Object(payload)) = o.remove("payload") else {
            return Err(bad());
        };
        Ok(Record {
            kind,
            time_ms,
            actor,
            subjects,
            payload,
        })
    }

    /// The canonical JSON value of the record.
    pub fn to_value(&self) -> Value {
        // The leaf is valid JSON by construction.
        serde_json::from_slice(&self.to_leaf()).unwrap_or(Value::Null)
    }

    /// The canonical bytes: what is hashed into the tree.
    pub fn to_leaf(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(128);
        write_canonical_map(&self.payload, &mut payload);
        let digests: Vec<DigestHex> = self
            .subjects
            .iter()
            .map(|s| DigestHex::from_bytes(&s.digest))
            .collect();
        let mut out = Vec::with_capacity(payload.len() + 200);
        write_leaf(
            &mut out,
            self.kind,
            self.time_ms,
            &self.actor,
            self.subjects
                .iter()
                .zip(&digests)
                .map(|(s, d)| (s.name.as_str(), d)),
            &payload,
        );
        out
    }
}

/// Checks that `leaf` is a valid record in exactly its canonical form, without decoding it further.
pub fn check_leaf(leaf: &[u8]) -> Result<(), RecordError> {
    if leaf.len() > MAX_LEAF_BYTES {
        return Err(RecordError::TooLarge {
            len: leaf.len(),
            max: MAX_LEAF_BYTES,
        });
    }
    if crate::canonical::canonicalize(leaf, 0, true)? != leaf {
        return Err(RecordError::NotCanonical);
    }
    Ok(())
}

/// Writes the canonical leaf. Member order is the sorted order of the keys: actor, kind, payload,
/// subjects (each: digest, name), time, v. `payload` is an object already in canonical form.
pub(crate) fn write_leaf<'a>(
    out: &mut Vec<u8>,
    kind: Kind,
    time_ms: i64,
    actor: &str,
    subjects: impl Iterator<Item = (&'a str, &'a DigestHex)>,
    payload: &[u8],
) {
    out.extend_from_slice(b"{\"actor\":");
    write_str(actor, out);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"payload\":");
    out.extend_from_slice(payload);
    out.extend_from_slice(b",\"subjects\":[");
    for (i, (name, digest)) in subjects.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"digest\":\"sha256:");
        out.extend_from_slice(&digest.0);
        out.extend_from_slice(b"\",\"name\":");
        write_str(name, out);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"time\":\"");
    write_rfc3339_ms(time_ms, out);
    out.extend_from_slice(b"\",\"v\":1}");
}

/// A SHA-256 digest as 64 lowercase hex digits, ready to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DigestHex(pub(crate) [u8; 64]);

impl DigestHex {
    pub(crate) fn from_bytes(d: &[u8; 32]) -> DigestHex {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, b) in d.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 15)];
        }
        DigestHex(out)
    }

    /// Validates `sha256:<64 hex digits of either case>` and lowercases the digits.
    pub(crate) fn parse(s: &str) -> Option<DigestHex> {
        let digits: &[u8; 64] = s.strip_prefix("sha256:")?.as_bytes().try_into().ok()?;
        let mut out = [0u8; 64];
        for (o, c) in out.iter_mut().zip(digits) {
            if !c.is_ascii_hexdigit() {
                return None;
            }
            *o = c.to_ascii_lowercase();
        }
        Some(DigestHex(out))
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // Serialising a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

pub(crate) fn check_actor(actor: &str) -> Result<(), RecordError> {
    if actor.is_empty() || actor.len() > MAX_ACTOR_BYTES || actor.chars().any(char::is_control) {
        return Err(RecordError::Field {
            field: "actor",
            expected: "a non-empty string of at most 256 bytes without control characters",
        });
    }
    Ok(())
}

pub(crate) fn parse_time(s: &str) -> Result<i64, RecordError> {
    parse_rfc3339_ms(s).ok_or(RecordError::Field {
        field: "time",
        expected: "an RFC 3339 time between 1970 and 9999, at most millisecond precision, e.g. 2026-11-25T21:13:00.123Z",
    })
}

pub(crate) fn subjects_error() -> RecordError {
    RecordError::Field {
        field: "subjects",
        expected: "an array of at most 32 objects {\"name\": role of at most 64 bytes, \"digest\": \"sha256:<64 hex digits>\"}",
    }
}

pub(crate) fn check_subject(name: &str, digest: &str) -> Result<DigestHex, RecordError> {
    if name.is_empty() || name.len() > MAX_SUBJECT_NAME_BYTES || name.chars().any(char::is_control)
    {
        return Err(subjects_error());
    }
    DigestHex::parse(digest).ok_or_else(subjects_error)
}

/// Parses `sha256:<64 hex digits>` (either case).
pub fn parse_digest(s: &str) -> Option<[u8; 32]> {
    let hexpart = s.strip_prefix("sha256:")?;
    unhex32(hexpart)
}

/// Decodes 64 hex digits.
pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn write_canonical_map(m: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    out.push(b'{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        write_canonical(&m[k.as_str()], out);
    }
    out.push(b'}');
}

/// Writes `v` as canonical JSON (sorted keys at every depth, no whitespace).
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => write_canonical_map(m, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(v: &Value, out: &mut Vec<u8>) {
    // Serialising a scalar into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

// Civil-calendar conversion (proleptic Gregorian), after Howard Hinnant's public-domain algorithms.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// The first millisecond of the year 10000, which RFC 3339 cannot write.
const MAX_TIME_MS: i64 = 253_402_300_800_000;

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339_ms(ms, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `YYYY-MM-DDTHH:MM:SS.mmmZ` (times are within years 1970 to 9999 by construction).
fn write_rfc3339_ms(ms: i64, out: &mut Vec<u8>) {
    fn digits(out: &mut Vec<u8>, v: i64, n: u32) {
        for k in (0..n).rev() {
            out.push(b'0' + ((v / 10i64.pow(k)) % 10) as u8);
        }
    }
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let fields = [
        (y, 4, b'-'),
        (i64::from(mo), 2, b'-'),
        (i64::from(d), 2, b'T'),
        (sod / 3600, 2, b':'),
        ((sod / 60) % 60, 2, b':'),
        (sod % 60, 2, b'.'),
        (ms.rem_euclid(1000), 3, b'Z'),
    ];
    for (v, n, sep) in fields {
        digits(out, v, n);
        out.push(sep);
    }
}

/// Parses an RFC 3339 date-time (`Z` or a numeric offset; seconds fraction of any length whose digits
/// past the third are zero) into milliseconds since the epoch. Years 1970 to 9999.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mdays = [
        31,
        if is_leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) {
        return None;
    }
    if d < 1 || d > mdays[(mo - 1) as usize] || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut milli = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            let digit = i64::from(b[i] - b'0');
            let pos = i - start;
            if pos < 3 {
                milli += digit * [100, 10, 1][pos];
            } else if digit != 0 {
                return None;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    let ms = secs * 1000 + milli;
    // The offset can move an instant across either end of the range (e.g. 9999-12-31T23:59:59-01:00).
    (0..MAX_TIME_MS).contains(&ms).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_ignores_key_order_and_spacing() {
        let a = br#"{"kind":"decision","actor":"monitor:m1","time":"2026-11-25T21:13:00.5+01:00",
            "subjects":[{"name":"model","digest":"sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}],
            "payload":{"verdict":"block","scores":{"z":1.5,"a":[1,2]}}}"#;
        let b = br#"{"payload":{"scores":{"a":[1,2],"z":1.5},"verdict":"block"},"v":1,
            "subjects":[{"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","name":"model"}],
            "actor":"monitor:m1","kind":"decision","time":"2026-11-25T20:13:00.500000Z"}"#;
        let ra = Record::from_json(a, 0).unwrap();
        let rb = Record::from_json(b, 0).unwrap();
        assert_eq!(ra.to_leaf(), rb.to_leaf());
        let leaf = String::from_utf8(ra.to_leaf()).unwrap();
        assert_eq!(
            leaf,
            r#"{"actor":"monitor:m1","kind":"decision","payload":{"scores":{"a":[1,2],"z":1.5},"verdict":"block"},"subjects":[{"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","name":"model"}],"time":"2026-11-25T20:13:00.500Z","v":1}"#
        );
        assert_eq!(Record::from_leaf(leaf.as_bytes()).unwrap(), ra);
    }

    #[test]
    fn fast_path_agrees_with_the_value_path() {
        let payloads = [
            r#"{}"#,
            r#"{"b":1,"a":2,"A":3,"_":4,"aa":5}"#,
            r#"{"x":[1,-2,3.5,1e300,-0.0,1E-7,12345678901234567890,-9223372036854775808]}"#,
            r#"{"s":"tab\tquote\"back\\slash\u0001\u00e9\ud83d\ude00 é","n":null,"t":true,"f":false}"#,
            r#"{"deep":{"z":{"y":[{"b":1,"a":[[],{}]}]}},"arr":[{"k":2,"j":1}]}"#,
            r#"{"\u0041":1,"\u00e9":2,"é2":3}"#,
        ];
        for p in payloads {
            let json = format!(
                r#"{{"kind":"note","actor":"a","time":"2026-01-01T00:00:00Z","payload":{p}}}"#
            );
            let fast = Record::canonical_leaf(json.as_bytes(), 0).unwrap();
            let payload: Map<String, Value> = serde_json::from_str(p).unwrap();
            let slow = Record {
                kind: Kind::Note,
                time_ms: 1_767_225_600_000,
                actor: "a".into(),
                subjects: vec![],
                payload,
            }
            .to_leaf();
            assert_eq!(
                String::from_utf8(fast.clone()).unwrap(),
                String::from_utf8(slow).unwrap()
            );
            check_leaf(&fast).unwrap();
        }
        let dup = br#"{"kind":"note","actor":"a","payload":{"k":1,"k":2}}"#;
        assert!(
            Record::from_json(dup, 0)
                .unwrap_err()
                .to_string()
                .contains("duplicate key")
        );
        let arr = br#"["note","a"]"#;
        assert!(Record::from_json(arr, 0).is_err());
        let subj_arr = br#"{"kind":"note","actor":"a","subjects":[["m","sha256:00"]]}"#;
        assert!(
            Record::from_json(subj_arr, 0)
                .unwrap_err()
                .to_string()
                .starts_with("field `subjects`")
        );
    }

    #[test]
    fn numbers_have_pinned_canonical_bytes() {
        // Golden bytes: a change here changes leaf hashes, so it needs a new schema version.
        let json = br#"{"kind":"note","actor":"a","time":"2026-01-01T00:00:00Z","payload":{"a":1e300,"b":1.0,"c":-0.0,"d":0.1,"e":1e16,"f":123456789012345678901234567890,"g":7.706186042953627e-10,"h":-12,"i":18446744073709551615,"j":2.5e-8}}"#;
        let leaf = Record::canonical_leaf(json, 0).unwrap();
        let text = String::from_utf8(leaf.clone()).unwrap();
        assert!(
            text.contains(r#""payload":{"a":1e+300,"b":1.0,"c":-0.0,"d":0.1,"e":1e+16,"f":1.2345678901234568e+29,"g":7.706186042953627e-10,"h":-12,"i":18446744073709551615,"j":2.5e-8}"#),
            "{text}"
        );
        // Every float reads back as itself, so the stored leaf stays canonical.
        check_leaf(&leaf).unwrap();
    }

    #[test]
    fn random_floats_survive_the_round_trip() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if !f.is_finite() {
                continue;
            }
            let json = format!(
                r#"{{"kind":"note","actor":"a","time":"2026-01-01T00:00:00Z","payload":{{"x":{}}}}}"#,
                serde_json::Value::from(f)
            );
            let leaf = Record::canonical_leaf(json.as_bytes(), 0).unwrap();
            check_leaf(&leaf).unwrap_or_else(|e| panic!("{f:e}: {e}"));
        }
    }

    #[test]
    fn from_leaf_rejects_non_canonical_bytes() {
        let leaf = Record::from_json(
            br#"{"kind":"note","actor":"a","time":"2026-01-01T00:00:00Z"}"#,
            0,
        )
        .unwrap()
        .to_leaf();
        let mut spaced = leaf.clone();
        spaced.insert(1, b' ');
        assert_eq!(Record::from_leaf(&spaced), Err(RecordError::NotCanonical));
    }

    #[test]
    fn bad_records_say_what_was_expected() {
        let cases: &[(&[u8], &str)] = &[
            (b"{", "record is not valid JSON"),
            (b"[]", "field `record`: expected a JSON object"),
            (
                br#"{"kind":"vibes","actor":"a"}"#,
                "unknown record kind \"vibes\"",
            ),
            (br#"{"kind":"note"}"#, "field `actor`"),
            (
                br#"{"kind":"note","actor":"a","extra":1}"#,
                "unknown field `extra`",
            ),
            (
                br#"{"kind":"note","actor":"a","v":2}"#,
                "unsupported schema version 2",
            ),
            (
                br#"{"kind":"note","actor":"a","time":"2026-02-30T00:00:00Z"}"#,
                "field `time`",
            ),
            (
                br#"{"kind":"note","actor":"a","time":"2026-01-01T00:00:00.0001Z"}"#,
                "field `time`",
            ),
            (
                br#"{"kind":"note","actor":"a","payload":[1]}"#,
                "field `payload`",
            ),
            (
                br#"{"kind":"note","actor":"a","subjects":[{"name":"m","digest":"sha256:12"}]}"#,
                "field `subjects`",
            ),
        ];
        for (input, want) in cases {
            let err = Record::from_json(input, 0).unwrap_err().to_string();
            assert!(
                err.starts_with(want),
                "{}: got {err:?}",
                String::from_utf8_lossy(input)
            );
        }
        let big = format!(
            r#"{{"kind":"note","actor":"a","payload":{{"x":"{}"}}}}"#,
            "y".repeat(MAX_LEAF_BYTES)
        );
        assert!(matches!(
            Record::from_json(big.as_bytes(), 0),
            Err(RecordError::TooLarge { .. })
        ));
        let deep = format!(
            r#"{{"kind":"note","actor":"a","payload":{{"x":{}1{}}}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert!(
            Record::from_json(deep.as_bytes(), 0)
                .unwrap_err()
                .to_string()
                .contains("nesting")
        );
    }

    #[test]
    fn time_round_trips() {
        for (s, ms) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:34:56.789Z", 951_827_696_789),
            ("2026-11-25T21:13:00-05:30", 1_795_660_980_000),
        ] {
            assert_eq!(parse_rfc3339_ms(s), Some(ms), "{s}");
        }
        for ms in [
            0i64,
            1,
            999,
            86_399_999,
            951_827_696_789,
            253_402_300_799_999,
        ] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
        for bad in [
            "9999-12-31T23:59:59-01:00",
            "1970-01-01T00:30:00+01:00",
            "",
            "1969-12-31T23:59:59Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }
}
