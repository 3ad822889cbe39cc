//! Reports, snapshot-tested: the agent template with one control's evidence holding and another's
//! failing, as Markdown, JSON and HTML. The HTML page must be self-contained (no scripts, no
//! external resources), so it opens in a browser with no network access.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

mod common;

use common::{Files, opts, snapshot, today};
use warden_risk::report;

fn analysis() -> warden_risk::Analysis {
    let text =
        warden_risk::templates::render("agent", "Support agent", "platform@example.com", today())
            .unwrap();
    let text = text
        .replace(
            "    warden: warden oversight\n  - id: C-KILL-SWITCH",
            "    warden: warden oversight\n    evidence:\n      - {file: reports/approvals.json, condition: approval_coverage >= 0.99}\n  - id: C-KILL-SWITCH",
        )
        .replace(
            "    warden: warden monitor calibrate\n",
            "    warden: warden monitor calibrate\n    evidence:\n      - {file: reports/calibration.json, condition: injection.tpr_at_fpr >= 0.9}\n",
        );
    let mut files = Files::default();
    files.0.insert(
        "reports/approvals.json".into(),
        br#"{"approval_coverage": 1.0}"#.to_vec(),
    );
    files.0.insert(
        "reports/calibration.json".into(),
        br#"{"injection": {"tpr_at_fpr": 0.82, "fpr": 0.05}}"#.to_vec(),
    );
    warden_risk::check(text.as_bytes(), &files, &opts())
}

#[test]
fn markdown_report() {
    let a = analysis();
    assert!(!a.passed(), "the failing evidence must fail the check");
    snapshot("agent-report.md", &report::markdown(&a, "agent.yaml"));
}

#[test]
fn json_report() {
    let a = analysis();
    let json = report::json(&a);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["schema"], report::JSON_SCHEMA);
    assert_eq!(v["passed"], false);
    assert_eq!(v["risks"].as_array().unwrap().len(), 9);
    snapshot("agent-report.json", &json);
}

#[test]
fn html_report_is_self_contained() {
    let a = analysis();
    let html = report::html(&a, "agent.yaml");
    for banned in [
        "<script", "src=", "href=", "@import", "url(", "<link", "<iframe",
    ] {
        assert!(
            !html.contains(banned),
            "the page must not load anything: found {banned:?}"
        );
    }
    // The only URL is the SVG namespace, which browsers never fetch.
    assert_eq!(
        html.matches("http").count(),
        html.matches("http://www.w3.org/2000/svg").count()
    );
    assert!(html.starts_with("<!doctype html>") && html.ends_with("</html>\n"));
    snapshot("agent-report.html", &html);
}
