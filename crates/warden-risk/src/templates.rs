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

/// A template filled in: system name, owner, and review dates from `today` (the next review after
/// the template's `review_interval_days`).
/// Placeholders are replaced in one pass over the template, so text in `name` or `owner` is never
/// itself expanded; values are escaped as YAML double-quoted string content.
pub fn render(template: &str, name: &str, owner: &str, today: Date) -> Option<String> {
    let text = TEMPLATES.iter().find(|(n, _)| *n == template)?.1;
    let quoted = |s: &str| {
        let q = serde_json::to_string(s).unwrap_or_default();
        q[1..q.len() - 1].to_owned()
    };
    // The first review is due after the template's own review interval.
    let interval: i64 = text
        .split_once("review_interval_days: ")
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(90);
    let values = [
        ("{{name}}", quoted(name)),
        ("{{owner}}", quoted(owner)),
        ("{{today}}", today.to_string()),
        ("{{next_review}}", today.plus_days(interval).to_string()),
    ];
    let mut out = String::with_capacity(text.len() + 256);
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match values.iter().find(|(k, _)| rest.starts_with(k)) {
            Some((k, v)) => {
                out.push_str(v);
                rest = &rest[k.len()..];
            }
            None => {
                out.push_str("{{");
                rest = &rest[2..];
            }
        }
    }
    out.push_str(rest);
    Some(out)
}
