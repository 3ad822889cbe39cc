//! `check`: everything wrong with a register, at once, with lines and columns, and the scored view of
//! it that reports are made from. Evidence files are read through [`EvidenceSource`], so this module
//! does no I/O of its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::condition::Outcome;
use crate::date::Date;
use crate::diag::{Diagnostic, Diagnostics};
use crate::register::{self, Assessment, Register, Status};
use crate::scoring::{self, ActionPriority, Band, Matrix};
use crate::taxonomy::{self, Taxonomy};
use crate::yaml;

/// Where evidence files come from (the file system, in the CLI).
pub trait EvidenceSource {
    /// The bytes of the file at `path` (relative to the register), or why it cannot be read.
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;
}

/// What a check needs besides the register.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Today's date, for overdue reviews.
    pub today: Date,
}

/// Scores of one assessment.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub severity: u8,
    pub occurrence: u8,
    pub detection: u8,
    pub rpn: u16,
    pub action_priority: ActionPriority,
    pub likelihood: u8,
    pub consequence: u8,
    pub matrix_score: u16,
    pub band: Band,
}

impl Score {
    fn of(a: &Assessment, m: &Matrix) -> Score {
        Score {
            severity: a.severity,
            occurrence: a.occurrence,
            detection: a.detection,
            rpn: scoring::rpn(a.severity, a.occurrence, a.detection),
            action_priority: scoring::action_priority(a.severity, a.occurrence, a.detection),
            likelihood: a.likelihood,
            consequence: a.consequence,
            matrix_score: m.score(a.likelihood, a.consequence),
            band: m.band(a.likelihood, a.consequence),
        }
    }
}

/// A risk as reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct RiskView {
    pub id: String,
    pub title: String,
    pub component: Option<String>,
    pub owner: String,
    pub status: &'static str,
    pub inherent: Score,
    pub residual: Option<Score>,
    pub within_appetite: bool,
    pub accepted_by: Option<String>,
    pub controls: Vec<String>,
    pub atlas: Vec<String>,
    pub owasp_llm: Vec<String>,
    pub owasp_ml: Vec<String>,
    pub nist_ai_rmf: Vec<String>,
    pub next_review: Option<Date>,
}

/// The state of one piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceState {
    Holds,
    Fails,
    Missing,
    Malformed,
    DigestMismatch,
    Unusable,
}

/// One piece of evidence, checked.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceView {
    pub file: String,
    pub condition: String,
    pub state: EvidenceState,
    pub detail: String,
    /// The pinned digest, if any.
    pub sha256: Option<String>,
    /// SHA-256 of the bytes that were judged (when the file could be read).
    pub read_sha256: Option<String>,
}

/// A control as reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct ControlView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub description: String,
    pub warden: Option<String>,
    pub evidence: Vec<EvidenceView>,
    /// Every piece of evidence holds (and there is at least one).
    pub supported: bool,
    pub risks: Vec<String>,
}

/// How much of a taxonomy the register touches.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    /// ATLAS tactic → (name, risks whose techniques fall under it).
    pub atlas_tactics: Vec<(String, String, Vec<String>)>,
    /// AI RMF function → (subcategories referenced, subcategories in the framework).
    pub ai_rmf_functions: Vec<(String, usize, usize)>,
    pub owasp_llm: Vec<(String, String, Vec<String>)>,
    pub owasp_ml: Vec<(String, String, Vec<String>)>,
}

/// The result of checking a register.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// SHA-256 of the register's bytes.
    pub register_sha256: String,
    pub system: String,
    pub owner: String,
    pub scope: String,
    pub matrix: Matrix,
    pub today: Date,
    pub diagnostics: Vec<Diagnostic>,
    pub errors: usize,
    pub warnings: usize,
    pub risks: Vec<RiskView>,
    pub controls: Vec<ControlView>,
    pub coverage: Coverage,
}

impl Analysis {
    /// True when no error was found.
    pub fn passed(&self) -> bool {
        self.errors == 0
    }
}

/// Parses, decodes and checks a register; never panics on any input.
pub fn check(bytes: &[u8], evidence: &dyn EvidenceSource, opts: &CheckOptions) -> Analysis {
    let digest = Sha256::digest(bytes);
    let mut diags = Diagnostics::default();
    let register = match yaml::parse(bytes) {
        Ok(root) => register::decode(&root, &mut diags),
        Err(e) => {
            diags.error(e.pos, "yaml", e.message);
            None
        }
    };
    let mut risks = Vec::new();
    let mut controls = Vec::new();
    let mut coverage = Coverage {
        atlas_tactics: vec![],
        ai_rmf_functions: vec![],
        owasp_llm: vec![],
        owasp_ml: vec![],
    };
    let (mut system, mut owner, mut scope, mut matrix) =
        (String::new(), String::new(), String::new(), Matrix::DEFAULT);
    if let Some(reg) = &register {
        (risks, controls) = semantic(reg, evidence, opts, &mut diags);
        coverage = cover(&risks);
        system.clone_from(&reg.system.name);
        owner.clone_from(&reg.system.owner);
        scope.clone_from(&reg.context.scope);
        matrix = reg.context.matrix;
    }
    let diagnostics = diags.into_sorted();
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == crate::diag::Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    Analysis {
        register_sha256: hex(&digest),
        system,
        owner,
        scope,
        matrix,
        today: opts.today,
        diagnostics,
        errors,
        warnings,
        risks,
        controls,
        coverage,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn check_ids(
    tax: &Taxonomy,
    ids: &[register::Spanned<String>],
    code: &'static str,
    example: &str,
    suggestions_left: &mut usize,
    diags: &mut Diagnostics,
) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        match taxonomy::lookup(tax, &id.value) {
            Some(e) => out.push(e.id.clone()),
            // Tactics are reported once, by their own check.
            None if taxonomy::atlas_tactics()
                .iter()
                .any(|(t, _)| *t == id.value)
                && code == "unknown-atlas-id" => {}
            None => {
                // Suggestions cost an edit distance per known id: only for the first hundred.
                let hint = if *suggestions_left > 0 {
                    *suggestions_left -= 1;
                    taxonomy::suggest(tax, &id.value)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                let version = if tax.version.is_empty() {
                    String::new()
                } else {
                    format!(" {}", tax.version)
                };
                diags.error(
                    id.pos,
                    code,
                    format!(
                        "unknown {}{version} id `{}`{hint}; expected an id like `{example}`",
                        tax.name,
                        id.value.chars().take(40).collect::<String>()
                    ),
                );
            }
        }
    }
    out
}

fn semantic(
    reg: &Register,
    source: &dyn EvidenceSource,
    opts: &CheckOptions,
    diags: &mut Diagnostics,
) -> (Vec<RiskView>, Vec<ControlView>) {
    let m = reg.context.matrix;
    let interval = i64::from(reg.context.review_interval_days);
    // Unique ids.
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    let ids = reg
        .components
        .iter()
        .map(|c| ("component", &c.id))
        .chain(reg.risks.iter().map(|r| ("risk", &r.id)))
        .chain(reg.controls.iter().map(|c| ("control", &c.id)));
    for (what, id) in ids {
        let first = *seen.entry((what, id.value.as_str())).or_insert(id.pos.line);
        if first != id.pos.line {
            diags.error(
                id.pos,
                "duplicate-id",
                format!("duplicate {what} id `{}` (first at line {first})", id.value),
            );
        }
    }
    let components: BTreeSet<&str> = reg.components.iter().map(|c| c.id.value.as_str()).collect();
    let control_ids: BTreeSet<&str> = reg.controls.iter().map(|c| c.id.value.as_str()).collect();

    // Controls and their evidence.
    let mut controls: Vec<ControlView> = reg
        .controls
        .iter()
        .map(|c| check_control(c, source, diags))
        .collect();

    let mut suggestions_left = 100usize;
    let mut risks = Vec::new();
    for r in &reg.risks {
        let rid = &r.id.value;
        if let Some(c) = &r.component
            && !components.contains(c.value.as_str())
        {
            diags.error(c.pos, "unknown-component", format!("risk {rid}: unknown component `{}`; expected one of the ids under `components`", c.value));
        }
        for c in &r.controls {
            if !control_ids.contains(c.value.as_str()) {
                diags.error(c.pos, "unknown-control", format!("risk {rid}: unknown control `{}`; expected one of the ids under `controls`", c.value));
            }
            if let Some(cv) = controls.iter_mut().find(|cv| cv.id == c.value) {
                cv.risks.push(rid.clone());
            }
        }
        let atlas = check_ids(
            taxonomy::atlas(),
            &r.atlas,
            "unknown-atlas-id",
            "AML.T0043",
            &mut suggestions_left,
            diags,
        );
        for id in &r.atlas {
            if taxonomy::atlas_tactics()
                .iter()
                .any(|(t, _)| *t == id.value)
            {
                diags.error(
                    id.pos,
                    "atlas-tactic-not-technique",
                    format!(
                        "`{}` is an ATLAS tactic; map risks to techniques such as AML.T0015",
                        id.value
                    ),
                );
            }
        }
        let owasp_llm = check_ids(
            taxonomy::owasp_llm(),
            &r.owasp_llm,
            "unknown-owasp-llm-id",
            "LLM01",
            &mut suggestions_left,
            diags,
        );
        let owasp_ml = check_ids(
            taxonomy::owasp_ml(),
            &r.owasp_ml,
            "unknown-owasp-ml-id",
            "ML01",
            &mut suggestions_left,
            diags,
        );
        let nist = check_ids(
            taxonomy::nist_ai_rmf(),
            &r.nist_ai_rmf,
            "unknown-nist-ai-rmf-id",
            "MEASURE 2.7",
            &mut suggestions_left,
            diags,
        );

        // Sign-offs count only for accepted risks, and only until the next review is due.
        let status = r.status.value;
        let mut accepted = None;
        match (&r.acceptance, status) {
            (Some(a), Status::Accepted) => {
                if a.date.value > opts.today {
                    diags.error(a.date.pos, "acceptance-in-future", format!("risk {rid}: acceptance dated {} is in the future", a.date.value));
                } else if a.date.value.plus_days(interval) < opts.today {
                    diags.error(a.date.pos, "acceptance-expired", format!(
                        "risk {rid}: acceptance of {} is older than the review interval ({interval} days); review and sign it again",
                        a.date.value
                    ));
                } else {
                    accepted = Some(a);
                }
            }
            (Some(a), _) => diags.error(a.pos, "acceptance-without-status", format!(
                "risk {rid}: has an `acceptance` but status is `{}`; set `status: accepted` or remove the acceptance",
                status.as_str()
            )),
            (None, Status::Accepted) => diags.error(r.status.pos, "accepted-without-sign-off", format!(
                "risk {rid}: status is `accepted` but there is no `acceptance` with by, date and rationale"
            )),
            (None, _) => {}
        }

        // Reviews.
        if let Some(l) = &r.last_review
            && l.value > opts.today
        {
            diags.error(
                l.pos,
                "review-in-future",
                format!("risk {rid}: last review {} is in the future", l.value),
            );
        }
        if let (Some(l), Some(n)) = (&r.last_review, &r.next_review) {
            if n.value < l.value {
                diags.error(
                    n.pos,
                    "bad-value",
                    format!(
                        "risk {rid}: next review {} is before the last one {}",
                        n.value, l.value
                    ),
                );
            } else if n.value > l.value.plus_days(interval) {
                diags.error(n.pos, "review-interval-exceeded", format!(
                    "risk {rid}: next review {} is more than {interval} days after the last one {}",
                    n.value, l.value
                ));
            }
        }
        let next = r
            .next_review
            .as_ref()
            .map(|d| (d.value, d.pos))
            .or_else(|| {
                r.last_review
                    .as_ref()
                    .map(|l| (l.value.plus_days(interval), l.pos))
            });
        match next {
            Some((due, pos)) if due < opts.today && status != Status::Closed => {
                diags.error(
                    pos,
                    "review-overdue",
                    format!("risk {rid}: review was due on {due}"),
                );
            }
            None if status != Status::Closed && !r.review_given => {
                diags.warning(r.id.pos, "no-review-date", format!("risk {rid}: no `review` with `last` or `next`; reviews are due every {interval} days"));
            }
            _ => {}
        }

        // Scores: only when the ratings could be read.
        let Some(inh) = &r.inherent else { continue };
        let inherent = Score::of(inh, &m);
        let residual = r.residual.as_ref().map(|a| Score::of(a, &m));
        if let Some(res) = &r.residual {
            if res.severity > inh.severity {
                diags.warning(
                    res.pos,
                    "residual-above-inherent",
                    format!(
                        "risk {rid}: residual severity {} is above the inherent {}",
                        res.severity, inh.severity
                    ),
                );
            }
            let key = |a: &Assessment| {
                (
                    a.severity,
                    a.occurrence,
                    a.detection,
                    a.likelihood,
                    a.consequence,
                )
            };
            if r.controls.is_empty() && key(res) != key(inh) && status != Status::Closed {
                diags.error(res.pos, "residual-without-control", format!(
                    "risk {rid}: residual scores differ from the inherent ones but no control is listed; residual risk is what remains after controls"
                ));
            }
        }
        if inherent.action_priority == ActionPriority::H
            && r.controls.is_empty()
            && accepted.is_none()
            && status != Status::Closed
        {
            diags.error(r.id.pos, "high-priority-untreated", format!(
                "risk {rid}: action priority H (S={} O={} D={}) with no control and no signed acceptance; add a control or an `acceptance`",
                inherent.severity, inherent.occurrence, inherent.detection
            ));
        }
        let effective = r.residual.as_ref().unwrap_or(inh);
        let within = m.within_appetite(effective.likelihood, effective.consequence);
        if !within && accepted.is_none() && status != Status::Closed {
            let which = if r.residual.is_some() {
                "residual"
            } else {
                "inherent (no residual given)"
            };
            diags.error(effective.pos, "above-appetite", format!(
                "risk {rid}: {which} score {}×{}={} is above the appetite {}; treat it further or record an `acceptance`",
                effective.likelihood,
                effective.consequence,
                m.score(effective.likelihood, effective.consequence),
                m.appetite
            ));
        }
        risks.push(RiskView {
            id: rid.clone(),
            title: r.title.clone(),
            component: r.component.as_ref().map(|c| c.value.clone()),
            owner: r.owner.clone(),
            status: status.as_str(),
            inherent,
            residual,
            within_appetite: within,
            accepted_by: accepted.map(|a| a.by.clone()),
            controls: r.controls.iter().map(|c| c.value.clone()).collect(),
            atlas,
            owasp_llm,
            owasp_ml,
            nist_ai_rmf: nist,
            next_review: next.map(|(d, _)| d),
        });
    }
    for (cv, c) in controls.iter().zip(&reg.controls) {
        if cv.risks.is_empty() {
            diags.warning(
                c.id.pos,
                "unused-control",
                format!("control {} mitigates no risk", cv.id),
            );
        }
    }
    (risks, controls)
}

fn check_control(
    c: &register::Control,
    source: &dyn EvidenceSource,
    diags: &mut Diagnostics,
) -> ControlView {
    let mut evidence = Vec::new();
    if c.evidence_entries == 0 {
        diags.warning(
            c.id.pos,
            "no-evidence",
            format!(
                "control {} names no evidence, so nothing shows it works",
                c.id.value
            ),
        );
    }
    for e in &c.evidence {
        let (state, detail, read_sha256) = evaluate(e, source);
        let id = &c.id.value;
        let file = &e.file.value;
        match state {
            EvidenceState::Holds => {}
            EvidenceState::Fails => diags.error(
                e.condition.pos,
                "evidence-failing",
                format!(
                    "control {id}: `{}` does not hold in {file}: {detail}",
                    e.condition.value
                ),
            ),
            EvidenceState::Missing => diags.error(
                e.file.pos,
                "evidence-missing",
                format!("control {id}: evidence {file} cannot be read: {detail}"),
            ),
            EvidenceState::Malformed => diags.error(
                e.file.pos,
                "evidence-malformed",
                format!("control {id}: evidence {file} is not a JSON report: {detail}"),
            ),
            // A malformed pin was reported where it was written.
            EvidenceState::DigestMismatch if e.pin_invalid => {}
            EvidenceState::DigestMismatch => diags.error(
                e.sha256.as_ref().map_or(e.file.pos, |s| s.pos),
                "evidence-digest-mismatch",
                format!("control {id}: {file} {detail}"),
            ),
            EvidenceState::Unusable => diags.error(
                e.condition.pos,
                "evidence-unusable",
                format!("control {id}: {detail} (in {file})"),
            ),
        }
        evidence.push(EvidenceView {
            file: e.file.value.clone(),
            condition: e.condition.value.to_string(),
            state,
            detail,
            sha256: e.sha256.as_ref().map(|s| hex(&s.value)),
            read_sha256,
        });
    }
    let supported =
        !evidence.is_empty() && evidence.iter().all(|e| e.state == EvidenceState::Holds);
    ControlView {
        id: c.id.value.clone(),
        kind: c.kind.as_str(),
        description: c.description.clone(),
        warden: c.warden.clone(),
        evidence,
        supported,
        risks: Vec::new(),
    }
}

/// Largest evidence report read, in bytes.
pub const MAX_EVIDENCE_BYTES: usize = 64 << 20;

/// Reads and judges one piece of evidence: (state, detail, SHA-256 of the bytes read).
fn evaluate(
    e: &register::Evidence,
    source: &dyn EvidenceSource,
) -> (EvidenceState, String, Option<String>) {
    if e.pin_invalid {
        return (
            EvidenceState::DigestMismatch,
            "the pinned sha256 is malformed, so the file is not trusted".into(),
            None,
        );
    }
    let bytes = match source.read(&e.file.value) {
        Ok(b) => b,
        Err(why) => return (EvidenceState::Missing, why, None),
    };
    let got: [u8; 32] = Sha256::digest(&bytes).into();
    let digest = Some(hex(&got));
    if bytes.len() > MAX_EVIDENCE_BYTES {
        return (
            EvidenceState::Malformed,
            format!("larger than {MAX_EVIDENCE_BYTES} bytes"),
            digest,
        );
    }
    if let Some(want) = &e.sha256
        && got != want.value
    {
        return (
            EvidenceState::DigestMismatch,
            format!(
                "has SHA-256 {}, but the register pins {}",
                hex(&got),
                hex(&want.value)
            ),
            digest,
        );
    }
    let report: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(err) => return (EvidenceState::Malformed, err.to_string(), digest),
    };
    match e.condition.value.evaluate(&report) {
        Outcome::Holds(v) => (EvidenceState::Holds, format!("value {v}"), digest),
        Outcome::Fails(v) => (EvidenceState::Fails, format!("value is {v}"), digest),
        Outcome::Unusable(why) => (EvidenceState::Unusable, why, digest),
    }
}

fn cover(risks: &[RiskView]) -> Coverage {
    let atlas = taxonomy::atlas();
    let mut by_tactic: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for r in risks {
        for t in &r.atlas {
            for tactic in atlas
                .get(t)
                .map(|e| e.groups.as_slice())
                .unwrap_or_default()
            {
                by_tactic.entry(tactic).or_default().insert(r.id.clone());
            }
        }
    }
    let atlas_tactics = taxonomy::atlas_tactics()
        .iter()
        .map(|(id, name)| {
            (
                id.clone(),
                name.clone(),
                by_tactic
                    .get(id.as_str())
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let nist = taxonomy::nist_ai_rmf();
    let used: BTreeSet<&str> = risks
        .iter()
        .flat_map(|r| r.nist_ai_rmf.iter().map(String::as_str))
        .collect();
    let ai_rmf_functions = ["GOVERN", "MAP", "MEASURE", "MANAGE"]
        .iter()
        .map(|f| {
            let all: Vec<&str> = nist
                .entries
                .values()
                .filter(|e| e.groups.iter().any(|g| g == f))
                .map(|e| e.id.as_str())
                .collect();
            (
                (*f).to_owned(),
                all.iter().filter(|id| used.contains(*id)).count(),
                all.len(),
            )
        })
        .collect();
    let list = |tax: &Taxonomy, pick: &dyn Fn(&RiskView) -> &Vec<String>| {
        tax.entries
            .values()
            .map(|e| {
                (
                    e.id.clone(),
                    e.name.clone(),
                    risks
                        .iter()
                        .filter(|r| pick(r).contains(&e.id))
                        .map(|r| r.id.clone())
                        .collect(),
                )
            })
            .collect()
    };
    Coverage {
        atlas_tactics,
        ai_rmf_functions,
        owasp_llm: list(taxonomy::owasp_llm(), &|r| &r.owasp_llm),
        owasp_ml: list(taxonomy::owasp_ml(), &|r| &r.owasp_ml),
    }
}
