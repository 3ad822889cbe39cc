//! Starter registers for common AI system types, with the threats each really faces, mapped to
//! MITRE ATLAS, OWASP and the NIST AI RMF, scored, and with suggested Warden controls.

use crate::date::Date;

/// The templates, by name.
pub const TEMPLATES: [(&str, &str); 4] = [
    (
        "image-classifier",
        include_str!("../templates/image-classifier.yaml"),
    ),
    ("llm-app", include_str!("../templates/llm-app.yaml")),
    ("agent", include_str!("../templates/agent.yaml")),
    ("rag", include_str!("../templates/rag.yaml")),
];

/// The names of the templates.
pub fn names() -> Vec<&'static str> {
    TEMPLATES.iter().map(|(n, _)| *n).collect()
}

/// A template filled in: system name, owner, and review dates from `today` (next review after
/// `interval_days`). Values are written as YAML double-quoted strings.
pub fn render(template: &str, name: &str, owner: &str, today: Date) -> Option<String> {
    let text = TEMPLATES.iter().find(|(n, _)| *n == template)?.1;
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let unquote = |s: String| s[1..s.len() - 1].to_owned();
    Some(
        text.replace("{{name}}", &unquote(quote(name)))
            .replace("{{owner}}", &unquote(quote(owner)))
            .replace("{{today}}", &today.to_string())
            .replace("{{next_review}}", &today.plus_days(90).to_string()),
    )
}
