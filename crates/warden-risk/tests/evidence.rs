//! Evidence conditions as `check` meets them: passing, failing, missing file, malformed JSON, digest
//! mismatch, a path the report does not have; each gives the right outcome and message.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

mod common;

use common::{Files, opts};
use sha2::{Digest, Sha256};
use warden_risk::check::EvidenceState;

const REGISTER: &str = r#"version: 1
system: {name: demo, owner: a@example.com}
context:
  scope: demo
  criteria: {appetite: 6}
risks:
  - id: R-1
    title: Evasion
    owner: a@example.com
    severity: 8
    occurrence: 6
    detection: 7
    likelihood: 2
    consequence: 3
    rationale: test
    controls: [C-1]
    status: open
    review: {last: "2026-11-01"}
controls:
  - id: C-1
    type: preventive
    description: Adversarial training
    evidence:
      - file: reports/robustness.json
        SHA
        condition: robust_accuracy >= 0.80
"#;

fn run(report: Option<&[u8]>, pin: Option<String>) -> (EvidenceState, Vec<String>) {
    let sha = match pin {
        Some(h) => format!("sha256: {h}"),
        None => String::new(),
    };
    let text = REGISTER.replace(
        "        SHA\n",
        &if sha.is_empty() {
            String::new()
        } else {
            format!("        {sha}\n")
        },
    );
    let mut files = Files::default();
    if let Some(r) = report {
        files.0.insert("reports/robustness.json".into(), r.to_vec());
    }
    let a = warden_risk::check(text.as_bytes(), &files, &opts());
    let state = a.controls[0].evidence[0].state.clone();
    let errors = a
        .diagnostics
        .iter()
        .filter(|d| d.severity == warden_risk::Severity::Error)
        .map(|d| d.render("r.yaml"))
        .collect();
    (state, errors)
}

/// (report bytes, pinned digest, expected state, expected message).
type Case = (
    Option<&'static [u8]>,
    Option<String>,
    EvidenceState,
    &'static str,
);

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn passing_evidence_supports_the_control() {
    let report = br#"{"robust_accuracy": 0.83, "clean_accuracy": 0.9}"#;
    let (state, errors) = run(Some(report), Some(sha(report)));
    assert_eq!(state, EvidenceState::Holds);
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn each_failure_gives_its_own_outcome_and_message() {
    let cases: Vec<Case> = vec![
        (
            Some(br#"{"robust_accuracy": 0.61}"#),
            None,
            EvidenceState::Fails,
            "r.yaml:25:20: error[evidence-failing]: control C-1: `robust_accuracy >= 0.80` does not hold in reports/robustness.json: value is 0.61",
        ),
        (
            None,
            None,
            EvidenceState::Missing,
            "r.yaml:24:15: error[evidence-missing]: control C-1: evidence reports/robustness.json cannot be read: no such file",
        ),
        (
            Some(b"{\"robust_accuracy\": 0.9,"),
            None,
            EvidenceState::Malformed,
            "r.yaml:24:15: error[evidence-malformed]: control C-1: evidence reports/robustness.json is not a JSON report: EOF while parsing a value at line 1 column 24",
        ),
        (
            Some(br#"{"robust_accuracy": 0.9}"#),
            Some("ab".repeat(32)),
            EvidenceState::DigestMismatch,
            "r.yaml:25:17: error[evidence-digest-mismatch]: control C-1: reports/robustness.json has SHA-256 ",
        ),
        (
            Some(br#"{"accuracy": 0.9}"#),
            None,
            EvidenceState::Unusable,
            "r.yaml:25:20: error[evidence-unusable]: control C-1: the report has no `robust_accuracy` (in reports/robustness.json)",
        ),
        (
            Some(br#"{"robust_accuracy": "high"}"#),
            None,
            EvidenceState::Unusable,
            "cannot be compared with a number",
        ),
    ];
    for (report, pin, want_state, want_msg) in cases {
        let (state, errors) = run(report, pin);
        assert_eq!(state, want_state);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(want_msg) || errors[0].contains(want_msg),
            "got {:?}\nwant {want_msg:?}",
            errors[0]
        );
    }
}
