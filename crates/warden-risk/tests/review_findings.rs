//! Regressions for the findings of the first outside review of `warden risk check`: ways to pass the
//! gates without treatment, one mistake hiding others, positions, escaping, taxonomy suffixes,
//! review and acceptance dates, pins, and volume.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

mod common;

use common::{Files, opts};

const BASE: &str = r#"version: 1
system: {name: demo, owner: a@example.com}
context:
  scope: demo
  criteria: {appetite: 6, review_interval_days: 90}
risks:
  - id: R1
    title: Evasion
    owner: a@example.com
    severity: 9
    occurrence: 8
    detection: 7
    likelihood: 4
    consequence: 4
    rationale: test
    controls: [C1]
    residual: {severity: 9, occurrence: 3, detection: 4, likelihood: 2, consequence: 3}
    status: open
    review: {last: "2026-11-01"}
controls:
  - {id: C1, type: preventive, description: Adversarial training}
"#;

fn errors(text: &str) -> Vec<String> {
    let a = warden_risk::check(text.as_bytes(), &Files::default(), &opts());
    a.diagnostics
        .iter()
        .filter(|d| d.severity == warden_risk::Severity::Error)
        .map(|d| d.render("r.yaml"))
        .collect()
}

fn all(text: &str) -> Vec<String> {
    let a = warden_risk::check(text.as_bytes(), &Files::default(), &opts());
    a.diagnostics.iter().map(|d| d.render("r.yaml")).collect()
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|e| e.contains(want))
}

#[test]
fn the_base_register_passes() {
    assert!(errors(BASE).is_empty(), "{:?}", errors(BASE));
}

#[test]
fn gates_cannot_be_passed_without_treatment() {
    // Residual lowered with no control.
    let t = BASE.replace("    controls: [C1]\n", "");
    let e = errors(&t);
    assert!(has(&e, "error[residual-without-control]"), "{e:?}");
    assert!(has(&e, "error[high-priority-untreated]"), "{e:?}");
    // Blank sign-off, owner and rationale.
    let t = BASE
        .replace("    controls: [C1]\n", "")
        .replace("    status: open\n", "    status: accepted\n    acceptance: {by: \"\", date: \"2026-11-20\", rationale: \" \"}\n")
        .replace("    owner: a@example.com\n    severity", "    owner: \"\"\n    severity")
        .replace("rationale: test", "rationale: \"\"");
    let e = errors(&t);
    for field in ["`by`", "`rationale`", "`owner`"] {
        assert!(
            has(
                &e,
                &format!("error[empty-value]: {field}: must not be empty")
            ),
            "{field}: {e:?}"
        );
    }
    // An acceptance only counts with status accepted, and only until the next review is due.
    let t = BASE.replace(
        "    status: open\n",
        "    status: open\n    acceptance: {by: cro, date: \"2026-11-20\", rationale: ok}\n",
    );
    assert!(has(&errors(&t), "error[acceptance-without-status]"));
    let t = BASE.replace(
        "    status: open\n",
        "    status: accepted\n    acceptance: {by: cro, date: \"2001-01-01\", rationale: ok}\n",
    );
    assert!(
        has(&errors(&t), "error[acceptance-expired]"),
        "{:?}",
        errors(&t)
    );
    // Closed risks are exempt from the treatment gates.
    let t = BASE.replace("    controls: [C1]\n", "").replace("status: open", "status: closed").replace("    residual: {severity: 9, occurrence: 3, detection: 4, likelihood: 2, consequence: 3}\n", "");
    let e = errors(&t);
    assert!(
        !has(&e, "high-priority-untreated") && !has(&e, "above-appetite"),
        "{e:?}"
    );
}

#[test]
fn one_mistake_does_not_hide_the_others() {
    let t = BASE
        .replace(
            "severity: 9\n    occurrence: 8",
            "severity: 11\n    occurrence: 8",
        )
        .replace(
            "    controls: [C1]\n",
            "    controls: [C1, C9]\n    atlas: [AML.T9999]\n",
        );
    let d = all(&t);
    assert!(
        has(&d, "out-of-range") && has(&d, "unknown-atlas-id") && has(&d, "unknown control `C9`"),
        "{d:?}"
    );
    assert!(!has(&d, "unused-control"), "C1 is still used: {d:?}");
    let t = BASE.replace("type: preventive", "type: preventative");
    let e = errors(&t);
    assert_eq!(e.len(), 1, "only the bad type: {e:?}");
    let t = BASE.replace("version: 1\n", "").replace("atlas", "x");
    let t = t.replace(
        "    controls: [C1]\n",
        "    controls: [C1]\n    owasp_llm: [LLM99]\n",
    );
    let e = errors(&t);
    assert!(
        has(&e, "missing `version`") && has(&e, "unknown-owasp-llm-id"),
        "{e:?}"
    );
    let t = BASE.replace(
        "review: {last: \"2026-11-01\"}",
        "review: {last: \"2026-02-30\"}",
    );
    assert!(!has(&all(&t), "no-review-date"), "{:?}", all(&t));
}

#[test]
fn positions_escaping_and_bom() {
    let e = errors(&BASE.replace("    rationale: test\n", ""));
    assert!(
        has(
            &e,
            "r.yaml:7:5: error[missing-field]: a risk: missing `rationale`"
        ),
        "{e:?}"
    );
    let with_bom = format!("\u{feff}{BASE}");
    assert!(errors(&with_bom).is_empty(), "{:?}", errors(&with_bom));
    let t = BASE.replace(
        "title: Evasion",
        "title: Evasion\n    \"weird\\e[31mRED\": 1",
    );
    let e = errors(&t);
    assert!(e.iter().all(|m| !m.contains('\u{1b}')), "{e:?}");
    assert!(has(&e, "weird\\u{1b}[31mRED"), "{e:?}");
}

#[test]
fn taxonomy_suffixes_and_tactics() {
    let with = |field: &str, ids: &str| {
        BASE.replace(
            "    controls: [C1]\n",
            &format!("    controls: [C1]\n    {field}: [{ids}]\n"),
        )
    };
    assert!(errors(&with("owasp_llm", "LLM01, LLM01:2025, llm02")).is_empty());
    assert!(has(
        &errors(&with("owasp_llm", "LLM03:2023")),
        "unknown-owasp-llm-id"
    ));
    assert!(has(
        &errors(&with("owasp_llm", "LLM01:garbage")),
        "unknown-owasp-llm-id"
    ));
    assert!(errors(&with("owasp_ml", "ML01:2023")).is_empty());
    assert!(has(
        &errors(&with("owasp_ml", "ML01:2099")),
        "unknown-owasp-ml-id"
    ));
    let e = errors(&with("atlas", "AML.TA0002"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(has(&e, "atlas-tactic-not-technique"));
}

#[test]
fn review_dates_are_bounded() {
    let e = errors(&BASE.replace(
        "review: {last: \"2026-11-01\"}",
        "review: {last: \"2027-01-01\"}",
    ));
    assert!(has(&e, "review-in-future"), "{e:?}");
    let e = errors(&BASE.replace(
        "review: {last: \"2026-11-01\"}",
        "review: {last: \"2026-11-01\", next: \"2099-01-01\"}",
    ));
    assert!(has(&e, "review-interval-exceeded"), "{e:?}");
}

#[test]
fn pins_duplicates_and_conditions() {
    let t = BASE.replace(
        "  - {id: C1, type: preventive, description: Adversarial training}",
        "  - id: C1\n    type: preventive\n    description: Adversarial training\n    evidence:\n      - {file: r.json, sha256: nothex, condition: s == \"q\\\"uote\"}",
    );
    let mut files = Files::default();
    files
        .0
        .insert("r.json".into(), br#"{"s": "q\"uote"}"#.to_vec());
    let a = warden_risk::check(t.as_bytes(), &files, &opts());
    let e: Vec<String> = a
        .diagnostics
        .iter()
        .filter(|d| d.severity == warden_risk::Severity::Error)
        .map(|d| d.render("r"))
        .collect();
    assert_eq!(e.len(), 1, "only the malformed pin: {e:?}");
    assert_ne!(
        a.controls[0].evidence[0].state,
        warden_risk::check::EvidenceState::Holds,
        "a malformed pin is not trusted"
    );
    assert!(!a.controls[0].supported);
    // Without the pin, the escaped quote in the condition matches the report's string.
    let a = warden_risk::check(
        t.replace("sha256: nothex, ", "").as_bytes(),
        &files,
        &opts(),
    );
    assert_eq!(
        a.controls[0].evidence[0].state,
        warden_risk::check::EvidenceState::Holds,
        "{:?}",
        a.diagnostics
    );
    // A third duplicate names the first occurrence.
    let risk = &BASE[BASE.find("  - id: R1").unwrap()..BASE.find("controls:\n  -").unwrap()];
    let t = BASE.replace("controls:\n  -", &format!("{risk}{risk}controls:\n  -"));
    let e = errors(&t);
    assert_eq!(
        e.iter().filter(|m| m.contains("(first at line 7)")).count(),
        2,
        "{e:?}"
    );
}

#[test]
fn volume_is_bounded() {
    let ids: Vec<String> = (0..5000).map(|i| format!("X{i}")).collect();
    let t = BASE.replace(
        "    controls: [C1]\n",
        &format!("    controls: [C1]\n    atlas: [{}]\n", ids.join(", ")),
    );
    let a = warden_risk::check(t.as_bytes(), &Files::default(), &opts());
    assert_eq!(a.diagnostics.len(), warden_risk::diag::MAX_DIAGNOSTICS + 1);
    assert!(
        a.diagnostics
            .last()
            .unwrap()
            .message
            .contains("more problems not shown")
    );
    // Many keys in one mapping: duplicates are still found (in linear time).
    let mut big = String::from("version: 1\nx:\n");
    for i in 0..50_000 {
        big.push_str(&format!("  k{i}: 1\n"));
    }
    big.push_str("  k7: 2\n");
    assert!(has(&errors(&big), "duplicate key `k7` (first at line 10)"));
}
