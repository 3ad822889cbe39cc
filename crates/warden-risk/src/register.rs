//! The register: its typed model, and the decoder from YAML that collects every problem with its line
//! and column instead of stopping at the first. The format is documented field by field in
//! `docs/design/risk-register.md` and as a JSON Schema (`warden risk schema`).

use crate::condition::Condition;
use crate::date::Date;
use crate::diag::Diagnostics;
use crate::scoring::{Matrix, Rating};
use crate::yaml::{Node, Pos, Value};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

/// A whole register.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub version: u32,
    pub system: System,
    pub context: Context,
    pub components: Vec<Component>,
    pub risks: Vec<Risk>,
    pub controls: Vec<Control>,
}

/// The AI system the register is about.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct System {
    pub name: String,
    pub description: String,
    pub owner: String,
}

/// ISO 31000 scope, context and risk criteria.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub scope: String,
    pub objectives: Vec<String>,
    pub stakeholders: Vec<String>,
    pub matrix: Matrix,
    /// How often every risk must be reviewed, in days.
    pub review_interval_days: u32,
}

/// What part of the AI system a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    Data,
    Model,
    TrainingPipeline,
    Serving,
    AgentTool,
    Retrieval,
    Monitoring,
    Other,
}

impl ComponentKind {
    const NAMES: [(&'static str, ComponentKind); 8] = [
        ("data", ComponentKind::Data),
        ("model", ComponentKind::Model),
        ("training-pipeline", ComponentKind::TrainingPipeline),
        ("serving", ComponentKind::Serving),
        ("agent-tool", ComponentKind::AgentTool),
        ("retrieval", ComponentKind::Retrieval),
        ("monitoring", ComponentKind::Monitoring),
        ("other", ComponentKind::Other),
    ];

    /// The kind's name in registers.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("other", |(n, _)| n)
    }
}

/// A part of the system that risks attach to.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub id: Spanned<String>,
    pub kind: ComponentKind,
    pub description: String,
}

/// FMEA ratings and matrix placement of a risk, before or after its controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assessment {
    pub severity: Rating,
    pub occurrence: Rating,
    pub detection: Rating,
    pub likelihood: u8,
    pub consequence: u8,
    pub pos: Pos,
}

/// Where a risk stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Mitigated,
    Accepted,
    Closed,
}

impl Status {
    const NAMES: [(&'static str, Status); 4] = [
        ("open", Status::Open),
        ("mitigated", Status::Mitigated),
        ("accepted", Status::Accepted),
        ("closed", Status::Closed),
    ];

    /// The status's name in registers.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("open", |(n, _)| n)
    }
}

/// A documented decision to accept a risk as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Acceptance {
    pub by: String,
    pub date: Spanned<Date>,
    pub rationale: String,
    pub pos: Pos,
}

/// One threat or failure mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Risk {
    pub id: Spanned<String>,
    pub title: String,
    pub component: Option<Spanned<String>>,
    pub owner: String,
    pub failure_mode: String,
    pub effect: String,
    pub cause: String,
    pub rationale: String,
    /// `None` when the ratings could not be read (already reported); the risk's references are
    /// still checked.
    pub inherent: Option<Assessment>,
    pub residual: Option<Assessment>,
    pub atlas: Vec<Spanned<String>>,
    pub owasp_llm: Vec<Spanned<String>>,
    pub owasp_ml: Vec<Spanned<String>>,
    pub nist_ai_rmf: Vec<Spanned<String>>,
    pub controls: Vec<Spanned<String>>,
    pub status: Spanned<Status>,
    /// A `review` was written (even if its dates were invalid).
    pub review_given: bool,
    pub last_review: Option<Spanned<Date>>,
    pub next_review: Option<Spanned<Date>>,
    pub acceptance: Option<Acceptance>,
}

/// What a control does about a risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Preventive,
    Detective,
    Corrective,
}

impl ControlKind {
    const NAMES: [(&'static str, ControlKind); 3] = [
        ("preventive", ControlKind::Preventive),
        ("detective", ControlKind::Detective),
        ("corrective", ControlKind::Corrective),
    ];

    /// The kind's name in registers.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("preventive", |(n, _)| n)
    }
}

/// A file a control's claim rests on, and what must hold in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Path of a JSON report, relative to the register's directory.
    pub file: Spanned<String>,
    /// The report's SHA-256, when pinned.
    pub sha256: Option<Spanned<[u8; 32]>>,
    pub condition: Spanned<Condition>,
    /// A `sha256` was given but is malformed (already reported): the file cannot be trusted.
    pub pin_invalid: bool,
}

/// A control that mitigates risks.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    pub id: Spanned<String>,
    pub kind: ControlKind,
    pub description: String,
    /// The Warden command or component that implements it, e.g. `warden harden train --pgd`.
    pub warden: Option<String>,
    pub evidence: Vec<Evidence>,
    /// Evidence entries written, valid or not.
    pub evidence_entries: usize,
}

/// Decodes a register from parsed YAML, returning it (when its skeleton could be read) and every
/// problem found.
pub fn decode(root: &Node, diags: &mut Diagnostics) -> Option<Register> {
    let mut top = Fields::open(root, "the register", diags)?;
    // A missing or unknown version is reported; the rest is still checked as version 1.
    let version = top
        .required("version", diags)
        .and_then(|n| integer(n, "version", 1, 1, diags))
        .map_or(1, |v| v as u32);
    let system = top
        .required("system", diags)
        .map(|n| decode_system(n, diags))
        .unwrap_or_default();
    let context = top
        .required("context", diags)
        .map(|n| decode_context(n, diags))
        .unwrap_or(Context {
            scope: String::new(),
            objectives: vec![],
            stakeholders: vec![],
            matrix: Matrix::DEFAULT,
            review_interval_days: 90,
        });
    let components = list(top.get("components"), "components", diags, |n, d| {
        decode_component(n, d)
    });
    let matrix = context.matrix;
    let risks = list(top.required("risks", diags), "risks", diags, |n, d| {
        decode_risk(n, &matrix, d)
    });
    let controls = list(top.get("controls"), "controls", diags, |n, d| {
        decode_control(n, d)
    });
    top.finish(diags);
    Some(Register {
        version,
        system,
        context,
        components,
        risks,
        controls,
    })
}

fn decode_system(n: &Node, diags: &mut Diagnostics) -> System {
    let Some(mut f) = Fields::open(n, "system", diags) else {
        return System::default();
    };
    let s = System {
        name: f
            .required("name", diags)
            .and_then(|n| nonempty(n, "name", diags))
            .unwrap_or_default(),
        description: f
            .get("description")
            .and_then(|n| text(n, "description", diags))
            .unwrap_or_default(),
        owner: f
            .required("owner", diags)
            .and_then(|n| nonempty(n, "owner", diags))
            .unwrap_or_default(),
    };
    f.finish(diags);
    s
}

fn decode_context(n: &Node, diags: &mut Diagnostics) -> Context {
    let mut ctx = Context {
        scope: String::new(),
        objectives: vec![],
        stakeholders: vec![],
        matrix: Matrix::DEFAULT,
        review_interval_days: 90,
    };
    let Some(mut f) = Fields::open(n, "context", diags) else {
        return ctx;
    };
    ctx.scope = f
        .required("scope", diags)
        .and_then(|n| nonempty(n, "scope", diags))
        .unwrap_or_default();
    ctx.objectives = texts(f.get("objectives"), "objectives", diags)
        .into_iter()
        .map(|s| s.value)
        .collect();
    ctx.stakeholders = texts(f.get("stakeholders"), "stakeholders", diags)
        .into_iter()
        .map(|s| s.value)
        .collect();
    if let Some(c) = f.required("criteria", diags)
        && let Some(mut cf) = Fields::open(c, "criteria", diags)
    {
        let l = cf
            .get("likelihood_levels")
            .and_then(|n| integer(n, "likelihood_levels", 2, 10, diags));
        let k = cf
            .get("consequence_levels")
            .and_then(|n| integer(n, "consequence_levels", 2, 10, diags));
        ctx.matrix.likelihood_levels = l.map_or(5, |v| v as u8);
        ctx.matrix.consequence_levels = k.map_or(5, |v| v as u8);
        let max =
            i64::from(ctx.matrix.likelihood_levels) * i64::from(ctx.matrix.consequence_levels);
        if let Some(a) = cf
            .required("appetite", diags)
            .and_then(|n| integer(n, "appetite", 1, max, diags))
        {
            ctx.matrix.appetite = a as u16;
        }
        if let Some(d) = cf
            .get("review_interval_days")
            .and_then(|n| integer(n, "review_interval_days", 1, 3650, diags))
        {
            ctx.review_interval_days = d as u32;
        }
        cf.finish(diags);
    }
    f.finish(diags);
    ctx
}

fn decode_component(n: &Node, diags: &mut Diagnostics) -> Option<Component> {
    let mut f = Fields::open(n, "a component", diags)?;
    let id = f.required("id", diags).and_then(|n| identifier(n, diags));
    let kind = f
        .required("kind", diags)
        .and_then(|n| choice(n, "kind", &ComponentKind::NAMES, diags));
    let description = f
        .get("description")
        .and_then(|n| text(n, "description", diags))
        .unwrap_or_default();
    f.finish(diags);
    // An unknown kind is reported; the component still exists, so risks naming it are not flagged too.
    Some(Component {
        id: id?,
        kind: kind.unwrap_or(ComponentKind::Other),
        description,
    })
}

fn decode_assessment(
    f: &mut Fields<'_>,
    pos: Pos,
    matrix: &Matrix,
    diags: &mut Diagnostics,
) -> Option<Assessment> {
    let mut rating = |key: &'static str, diags: &mut Diagnostics| {
        f.required(key, diags)
            .and_then(|n| integer(n, key, 1, 10, diags))
            .map(|v| v as u8)
    };
    let severity = rating("severity", diags);
    let occurrence = rating("occurrence", diags);
    let detection = rating("detection", diags);
    let likelihood = f.required("likelihood", diags).and_then(|n| {
        integer(
            n,
            "likelihood",
            1,
            i64::from(matrix.likelihood_levels),
            diags,
        )
    });
    let consequence = f.required("consequence", diags).and_then(|n| {
        integer(
            n,
            "consequence",
            1,
            i64::from(matrix.consequence_levels),
            diags,
        )
    });
    Some(Assessment {
        severity: severity?,
        occurrence: occurrence?,
        detection: detection?,
        likelihood: likelihood? as u8,
        consequence: consequence? as u8,
        pos,
    })
}

fn decode_risk(n: &Node, matrix: &Matrix, diags: &mut Diagnostics) -> Option<Risk> {
    let mut f = Fields::open(n, "a risk", diags)?;
    let id = f.required("id", diags).and_then(|n| identifier(n, diags));
    let title = f
        .required("title", diags)
        .and_then(|n| nonempty(n, "title", diags))
        .unwrap_or_default();
    let component = f
        .get("component")
        .and_then(|n| spanned_text(n, "component", diags));
    let owner = f
        .required("owner", diags)
        .and_then(|n| nonempty(n, "owner", diags))
        .unwrap_or_default();
    let failure_mode = f
        .get("failure_mode")
        .and_then(|n| text(n, "failure_mode", diags))
        .unwrap_or_default();
    let effect = f
        .get("effect")
        .and_then(|n| text(n, "effect", diags))
        .unwrap_or_default();
    let cause = f
        .get("cause")
        .and_then(|n| text(n, "cause", diags))
        .unwrap_or_default();
    let rationale = f
        .required("rationale", diags)
        .and_then(|n| nonempty(n, "rationale", diags))
        .unwrap_or_default();
    let inherent = decode_assessment(&mut f, n.pos, matrix, diags);
    let residual = f.get("residual").and_then(|r| {
        let mut rf = Fields::open(r, "residual", diags)?;
        let a = decode_assessment(&mut rf, r.pos, matrix, diags);
        rf.finish(diags);
        a
    });
    let atlas = texts(f.get("atlas"), "atlas", diags);
    let owasp_llm = texts(f.get("owasp_llm"), "owasp_llm", diags);
    let owasp_ml = texts(f.get("owasp_ml"), "owasp_ml", diags);
    let nist_ai_rmf = texts(f.get("nist_ai_rmf"), "nist_ai_rmf", diags);
    let controls = texts(f.get("controls"), "controls", diags);
    let status = f.required("status", diags).and_then(|n| {
        let s = choice(n, "status", &Status::NAMES, diags)?;
        Some(Spanned {
            value: s,
            pos: n.pos,
        })
    });
    let (mut last_review, mut next_review) = (None, None);
    let review_given = f.get("review").is_some();
    if let Some(r) = f.get("review")
        && let Some(mut rf) = Fields::open(r, "review", diags)
    {
        last_review = rf.get("last").and_then(|n| date(n, "last", diags));
        next_review = rf.get("next").and_then(|n| date(n, "next", diags));
        rf.finish(diags);
    }
    let acceptance = f.get("acceptance").and_then(|a| {
        let mut af = Fields::open(a, "acceptance", diags)?;
        let by = af
            .required("by", diags)
            .and_then(|n| nonempty(n, "by", diags));
        let when = af
            .required("date", diags)
            .and_then(|n| date(n, "date", diags));
        let rationale = af
            .required("rationale", diags)
            .and_then(|n| nonempty(n, "rationale", diags));
        af.finish(diags);
        Some(Acceptance {
            by: by?,
            date: when?,
            rationale: rationale?,
            pos: a.pos,
        })
    });
    f.finish(diags);
    Some(Risk {
        id: id?,
        title,
        component,
        owner,
        failure_mode,
        effect,
        cause,
        rationale,
        inherent,
        residual,
        atlas,
        owasp_llm,
        owasp_ml,
        nist_ai_rmf,
        controls,
        status: status.unwrap_or(Spanned {
            value: Status::Open,
            pos: n.pos,
        }),
        review_given,
        last_review,
        next_review,
        acceptance,
    })
}

fn decode_control(n: &Node, diags: &mut Diagnostics) -> Option<Control> {
    let mut f = Fields::open(n, "a control", diags)?;
    let id = f.required("id", diags).and_then(|n| identifier(n, diags));
    let kind = f
        .required("type", diags)
        .and_then(|n| choice(n, "type", &ControlKind::NAMES, diags));
    let description = f
        .required("description", diags)
        .and_then(|n| nonempty(n, "description", diags))
        .unwrap_or_default();
    let evidence_entries = match f.get("evidence").map(|n| &n.value) {
        Some(Value::Seq(items)) => items.len(),
        _ => 0,
    };
    let warden = f.get("warden").and_then(|n| text(n, "warden", diags));
    let evidence = list(f.get("evidence"), "evidence", diags, |e, d| {
        let mut ef = Fields::open(e, "an evidence entry", d)?;
        let file = ef
            .required("file", d)
            .and_then(|n| spanned_text(n, "file", d));
        let mut pin_invalid = false;
        let sha256 = ef.get("sha256").and_then(|n| {
            let s = n.as_str().filter(|_| !n.is_null());
            match s.and_then(parse_sha256) {
                Some(v) => Some(Spanned {
                    value: v,
                    pos: n.pos,
                }),
                None => {
                    d.error(
                        n.pos,
                        "bad-value",
                        "`sha256`: expected 64 hex digits (optionally after `sha256:`)",
                    );
                    pin_invalid = true;
                    None
                }
            }
        });
        let condition = ef.required("condition", d).and_then(|n| {
            let t = text(n, "condition", d)?;
            match Condition::parse(&t) {
                Ok(c) => Some(Spanned {
                    value: c,
                    pos: n.pos,
                }),
                Err(e) => {
                    d.error(n.pos, "bad-condition", format!("`condition`: {e}"));
                    None
                }
            }
        });
        ef.finish(d);
        Some(Evidence {
            file: file?,
            sha256,
            condition: condition?,
            pin_invalid,
        })
    });
    f.finish(diags);
    Some(Control {
        id: id?,
        // An unknown type is reported; the control still exists for the risks that name it.
        kind: kind.unwrap_or(ControlKind::Preventive),
        description,
        warden,
        evidence,
        evidence_entries,
    })
}

fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Reads a mapping's fields, remembering which were used so that unknown ones can be reported.
struct Fields<'a> {
    node: &'a Node,
    what: &'static str,
    pairs: &'a [(Node, Node)],
    used: Vec<bool>,
}

impl<'a> Fields<'a> {
    fn open(node: &'a Node, what: &'static str, diags: &mut Diagnostics) -> Option<Fields<'a>> {
        match &node.value {
            Value::Map(pairs) => Some(Fields {
                node,
                what,
                pairs,
                used: vec![false; pairs.len()],
            }),
            _ => {
                diags.error(
                    node.pos,
                    "wrong-type",
                    format!("{what}: expected a mapping, found {}", node.kind()),
                );
                None
            }
        }
    }

    fn get(&mut self, key: &str) -> Option<&'a Node> {
        let i = self
            .pairs
            .iter()
            .position(|(k, _)| k.as_str() == Some(key))?;
        self.used[i] = true;
        let v = &self.pairs[i].1;
        (!v.is_null()).then_some(v)
    }

    fn required(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<&'a Node> {
        let v = self.get(key);
        if v.is_none() {
            diags.error(
                self.node.pos,
                "missing-field",
                format!("{}: missing `{key}`", self.what),
            );
        }
        v
    }

    fn finish(self, diags: &mut Diagnostics) {
        for ((k, _), used) in self.pairs.iter().zip(self.used) {
            if !used {
                let name = k.as_str().unwrap_or("?");
                diags.error(
                    k.pos,
                    "unknown-field",
                    format!("{}: unknown field `{name}`", self.what),
                );
            }
        }
    }
}

fn list<T>(
    n: Option<&Node>,
    what: &'static str,
    diags: &mut Diagnostics,
    mut item: impl FnMut(&Node, &mut Diagnostics) -> Option<T>,
) -> Vec<T> {
    let Some(n) = n else { return Vec::new() };
    match &n.value {
        Value::Seq(items) => items.iter().filter_map(|i| item(i, diags)).collect(),
        _ => {
            diags.error(
                n.pos,
                "wrong-type",
                format!("`{what}`: expected a list, found {}", n.kind()),
            );
            Vec::new()
        }
    }
}

fn text(n: &Node, what: &str, diags: &mut Diagnostics) -> Option<String> {
    match &n.value {
        Value::Scalar { text, .. } if text.len() <= 8192 => Some(text.clone()),
        Value::Scalar { .. } => {
            diags.error(
                n.pos,
                "bad-value",
                format!("`{what}`: longer than 8192 bytes"),
            );
            None
        }
        _ => {
            diags.error(
                n.pos,
                "wrong-type",
                format!("`{what}`: expected text, found {}", n.kind()),
            );
            None
        }
    }
}

/// Text that must say something: empty or blank text is refused (a blank owner, rationale or sign-off
/// would satisfy a check without meaning anything).
fn nonempty(n: &Node, what: &str, diags: &mut Diagnostics) -> Option<String> {
    let t = text(n, what, diags)?;
    if t.trim().is_empty() {
        diags.error(n.pos, "empty-value", format!("`{what}`: must not be empty"));
        return None;
    }
    Some(t)
}

fn spanned_text(n: &Node, what: &str, diags: &mut Diagnostics) -> Option<Spanned<String>> {
    text(n, what, diags).map(|value| Spanned { value, pos: n.pos })
}

fn identifier(n: &Node, diags: &mut Diagnostics) -> Option<Spanned<String>> {
    let t = spanned_text(n, "id", diags)?;
    let ok = !t.value.is_empty()
        && t.value.len() <= 64
        && t.value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !ok {
        diags.error(
            n.pos,
            "bad-value",
            "`id`: expected 1 to 64 letters, digits, `-`, `_`, `.` or `:`",
        );
        return None;
    }
    Some(t)
}

fn texts(n: Option<&Node>, what: &'static str, diags: &mut Diagnostics) -> Vec<Spanned<String>> {
    list(n, what, diags, |i, d| spanned_text(i, what, d))
}

fn integer(n: &Node, what: &str, min: i64, max: i64, diags: &mut Diagnostics) -> Option<i64> {
    let parsed = match &n.value {
        Value::Scalar { text, plain: true } if text.len() <= 20 => text.parse::<i64>().ok(),
        _ => None,
    };
    match parsed {
        Some(v) if (min..=max).contains(&v) => Some(v),
        _ => {
            let found = match &n.value {
                Value::Scalar { text, plain: false } => format!(
                    "the quoted text `{}` (write numbers without quotes)",
                    text.chars().take(24).collect::<String>()
                ),
                Value::Scalar { text, .. } => {
                    format!("`{}`", text.chars().take(24).collect::<String>())
                }
                _ => n.kind().to_owned(),
            };
            diags.error(
                n.pos,
                "out-of-range",
                format!("`{what}`: expected a whole number from {min} to {max}, found {found}"),
            );
            None
        }
    }
}

fn choice<T: Copy>(
    n: &Node,
    what: &str,
    names: &[(&str, T)],
    diags: &mut Diagnostics,
) -> Option<T> {
    let t = text(n, what, diags)?;
    match names.iter().find(|(name, _)| *name == t) {
        Some((_, v)) => Some(*v),
        None => {
            let all: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            diags.error(
                n.pos,
                "bad-value",
                format!(
                    "`{what}`: unknown value `{}`; expected one of {}",
                    t.chars().take(32).collect::<String>(),
                    all.join(", ")
                ),
            );
            None
        }
    }
}

fn date(n: &Node, what: &str, diags: &mut Diagnostics) -> Option<Spanned<Date>> {
    let t = text(n, what, diags)?;
    match Date::parse(&t) {
        Some(d) => Some(Spanned {
            value: d,
            pos: n.pos,
        }),
        None => {
            diags.error(
                n.pos,
                "bad-value",
                format!(
                    "`{what}`: expected a date like 2026-11-25, found `{}`",
                    t.chars().take(24).collect::<String>()
                ),
            );
            None
        }
    }
}
