//! Every template passes `check` as written, and each known defect planted in a copy of it is reported
//! with the right line and column (snapshots of the diagnostics).

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

mod common;

use common::{Files, opts, snapshot, today};
use warden_risk::templates;

fn render(t: &str) -> String {
    templates::render(t, "demo system", "owner@example.com", today()).unwrap()
}

#[test]
fn every_template_passes_check_as_written() {
    for name in templates::names() {
        let text = render(name);
        let a = warden_risk::check(text.as_bytes(), &Files::default(), &opts());
        let errors: Vec<String> = a
            .diagnostics
            .iter()
            .filter(|d| d.severity == warden_risk::Severity::Error)
            .map(|d| d.render(name))
            .collect();
        assert!(errors.is_empty(), "template {name}:\n{}", errors.join("\n"));
        assert!(
            a.risks.len() >= 8,
            "template {name} has only {} risks",
            a.risks.len()
        );
        assert!(
            a.risks.iter().all(|r| !r.controls.is_empty()),
            "template {name}: every risk suggests a control"
        );
    }
}

/// (case, anchor, find, replace): the first `find` after `anchor` in the image-classifier template
/// becomes `replace`.
const DEFECTS: &[(&str, &str, &str, &str)] = &[
    (
        "unknown ATLAS technique",
        "id: R-EVASION",
        "AML.T0043]",
        "AML.T9943]",
    ),
    (
        "ATLAS tactic instead of technique",
        "id: R-POISON",
        "AML.T0059]",
        "AML.TA0000]",
    ),
    ("unknown OWASP ML id", "id: R-EXTRACT", "[ML05]", "[ML11]"),
    (
        "unknown OWASP LLM id",
        "id: R-EXTRACT",
        "owasp_ml: [ML05]",
        "owasp_llm: [LLM11:2025]",
    ),
    (
        "unknown NIST AI RMF subcategory",
        "id: R-INVERSION",
        "[MEASURE 2.10]",
        "[MEASURE 2.14]",
    ),
    (
        "severity out of range",
        "id: R-BACKDOOR",
        "severity: 9",
        "severity: 11",
    ),
    (
        "detection not a number",
        "id: R-BACKDOOR",
        "detection: 8",
        "detection: high",
    ),
    (
        "likelihood beyond the matrix",
        "id: R-BACKDOOR",
        "likelihood: 2",
        "likelihood: 6",
    ),
    (
        "H priority with no control and no acceptance",
        "id: R-EVASION",
        "controls: [C-ADV-TRAIN, C-ROBUST-EVAL, C-ADV-DETECT]",
        "controls: []",
    ),
    (
        "overdue review",
        "id: R-DRIFT",
        "review: {last: \"2026-11-25\", next: \"2027-02-23\"}",
        "review: {last: \"2025-01-01\", next: \"2025-04-01\"}",
    ),
    (
        "residual above appetite",
        "id: R-EXTRACT",
        "likelihood: 2, consequence: 3}",
        "likelihood: 4, consequence: 3}",
    ),
    (
        "unknown control",
        "id: R-DOS",
        "[C-RATE-LIMIT]",
        "[C-RATE-LIMITS]",
    ),
    (
        "duplicate risk id",
        "id: R-INVERSION",
        "R-INVERSION",
        "R-MEMBERSHIP",
    ),
    ("misspelt field", "id: R-DRIFT", "rationale:", "rationle:"),
    (
        "accepted without sign-off",
        "id: R-DOS",
        "status: open",
        "status: accepted",
    ),
    (
        "unknown component kind",
        "components:",
        "kind: serving",
        "kind: servng",
    ),
    (
        "bad date",
        "id: R-SUPPLY",
        "last: \"2026-11-25\"",
        "last: \"2026-02-30\"",
    ),
    (
        "YAML syntax error",
        "id: R-DOS",
        "[AML.T0029]",
        "[AML.T0029",
    ),
    (
        "anchor and alias",
        "id: R-DOS",
        "atlas: [AML.T0029]",
        "atlas: &a [AML.T0029]\n    owasp_ml: *a",
    ),
    (
        "malformed evidence condition",
        "id: C-ADV-TRAIN",
        "    warden: warden harden train\n",
        "    warden: warden harden train\n    evidence:\n      - {file: reports/robustness.json, condition: robust_accuracy => 0.7}\n",
    ),
];

fn plant(text: &str, anchor: &str, find: &str, replace: &str) -> String {
    let at = text
        .find(anchor)
        .unwrap_or_else(|| panic!("anchor {anchor:?} not in template"));
    let rel = text[at..]
        .find(find)
        .unwrap_or_else(|| panic!("{find:?} not after {anchor:?}"));
    let mut out = text.to_owned();
    out.replace_range(at + rel..at + rel + find.len(), replace);
    out
}

#[test]
fn planted_defects_are_reported_at_their_line_and_column() {
    let base = render("image-classifier");
    let mut snap = String::new();
    for (case, anchor, find, replace) in DEFECTS {
        let text = plant(&base, anchor, find, replace);
        let a = warden_risk::check(text.as_bytes(), &Files::default(), &opts());
        let errors: Vec<String> = a
            .diagnostics
            .iter()
            .filter(|d| d.severity == warden_risk::Severity::Error)
            .map(|d| d.render("register.yaml"))
            .collect();
        assert!(!errors.is_empty(), "case {case:?} was not reported");
        // An error must point at the planted change, or at the entry that holds it.
        let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
        let at = base.find(anchor).unwrap();
        let planted_line = line_of(at + text[at..].find(replace.lines().next().unwrap()).unwrap());
        let anchor_line = line_of(at);
        let error_lines: Vec<usize> = a
            .diagnostics
            .iter()
            .filter(|d| d.severity == warden_risk::Severity::Error)
            .map(|d| d.line)
            .collect();
        assert!(
            error_lines
                .iter()
                .any(|l| *l == anchor_line || (planted_line..=planted_line + 2).contains(l)),
            "case {case:?}: errors at lines {error_lines:?}, planted at {planted_line}"
        );
        snap.push_str(&format!("## {case}\n{}\n\n", errors.join("\n")));
    }
    snapshot("planted-defects.txt", &snap);
}

/// Defects that apply to any template: planted in the first risk of each.
const GENERIC_DEFECTS: &[(&str, &str, &str)] = &[
    (
        "unknown ATLAS technique",
        "    atlas: [",
        "    atlas: [AML.T9999, ",
    ),
    ("severity out of range", "    severity: ", "    severity: 1"),
    (
        "unknown NIST subcategory",
        "    nist_ai_rmf: [",
        "    nist_ai_rmf: [GOVERN 9.9, ",
    ),
    (
        "accepted without sign-off",
        "    status: open",
        "    status: accepted",
    ),
    ("no rationale", "    rationale: ", "    rationale_: "),
];

#[test]
fn generic_defects_are_found_in_every_template() {
    let mut snap = String::new();
    for name in templates::names() {
        let base = render(name);
        let first_risk = base.find("risks:").unwrap();
        for (case, find, replace) in GENERIC_DEFECTS {
            let text = plant(&base, &base[first_risk..first_risk + 6], find, replace);
            let a = warden_risk::check(text.as_bytes(), &Files::default(), &opts());
            let errors: Vec<String> = a
                .diagnostics
                .iter()
                .filter(|d| d.severity == warden_risk::Severity::Error)
                .map(|d| d.render(&format!("{name}.yaml")))
                .collect();
            assert!(!errors.is_empty(), "{name}: {case} not reported");
            let at = first_risk + base[first_risk..].find(find).unwrap();
            let line = base[..at].matches('\n').count() + 1;
            assert!(
                a.diagnostics.iter().any(|d| d.line == line),
                "{name}: {case}: no diagnostic on line {line}: {errors:?}"
            );
            snap.push_str(&format!("## {name}: {case}\n{}\n\n", errors.join("\n")));
        }
    }
    snapshot("generic-defects.txt", &snap);
}
