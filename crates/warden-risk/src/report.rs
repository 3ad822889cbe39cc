//! Reports of a checked register, as Markdown, JSON and one self-contained HTML page (inline CSS and
//! SVG, no scripts, no network): the risk matrix as heat maps (inherent and residual), the RPN Pareto,
//! the action-priority list, coverage of ATLAS tactics, the AI RMF functions and OWASP, and the state
//! of every control's evidence.

use std::fmt::Write as _;

use crate::check::{Analysis, EvidenceState, RiskView, Score};
use crate::scoring::{ActionPriority, Band};

/// Version of the JSON report's layout.
pub const JSON_SCHEMA: &str = "warden.risk.report/v1";

/// The report as JSON.
pub fn json(a: &Analysis) -> String {
    let mut v = serde_json::to_value(a).unwrap_or(serde_json::Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("schema".into(), JSON_SCHEMA.into());
        o.insert("passed".into(), a.passed().into());
    }
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

fn effective(r: &RiskView) -> &Score {
    r.residual.as_ref().unwrap_or(&r.inherent)
}

/// Risks ordered for the action list: H before M before L, then by RPN, then by id.
fn by_priority(a: &Analysis) -> Vec<&RiskView> {
    let mut v: Vec<&RiskView> = a.risks.iter().collect();
    v.sort_by(|x, y| {
        (
            std::cmp::Reverse(x.inherent.action_priority),
            std::cmp::Reverse(x.inherent.rpn),
            &x.id,
        )
            .cmp(&(
                std::cmp::Reverse(y.inherent.action_priority),
                std::cmp::Reverse(y.inherent.rpn),
                &y.id,
            ))
    });
    v
}

/// (risk, RPN, cumulative share of the total RPN) in decreasing RPN order.
fn pareto(a: &Analysis) -> Vec<(&RiskView, u16, f64)> {
    let mut v: Vec<&RiskView> = a.risks.iter().collect();
    v.sort_by(|x, y| {
        (std::cmp::Reverse(x.inherent.rpn), &x.id).cmp(&(std::cmp::Reverse(y.inherent.rpn), &y.id))
    });
    let total: f64 = v
        .iter()
        .map(|r| f64::from(r.inherent.rpn))
        .sum::<f64>()
        .max(1.0);
    let mut acc = 0.0;
    v.into_iter()
        .map(|r| {
            acc += f64::from(r.inherent.rpn);
            (r, r.inherent.rpn, acc / total)
        })
        .collect()
}

/// Risk ids per matrix cell: `cells[likelihood-1][consequence-1]`.
fn heat(a: &Analysis, residual: bool) -> Vec<Vec<Vec<&str>>> {
    let (l, c) = (
        usize::from(a.matrix.likelihood_levels),
        usize::from(a.matrix.consequence_levels),
    );
    let mut cells = vec![vec![Vec::new(); c]; l];
    for r in &a.risks {
        let s = if residual { effective(r) } else { &r.inherent };
        let (li, ci) = (usize::from(s.likelihood), usize::from(s.consequence));
        if (1..=l).contains(&li) && (1..=c).contains(&ci) {
            cells[li - 1][ci - 1].push(r.id.as_str());
        }
    }
    cells
}

fn state_word(s: &EvidenceState) -> &'static str {
    match s {
        EvidenceState::Holds => "holds",
        EvidenceState::Fails => "FAILS",
        EvidenceState::Missing => "MISSING",
        EvidenceState::Malformed => "MALFORMED",
        EvidenceState::DigestMismatch => "DIGEST MISMATCH",
        EvidenceState::Unusable => "UNUSABLE",
    }
}

/// Text safe inside a Markdown table cell: Markdown and HTML syntax escaped, line breaks flattened.
fn md_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '|' | '`' | '*' | '_' | '[' | ']' | '#' | '~' => {
                o.push('\\');
                o.push(c);
            }
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '\n' | '\r' => o.push(' '),
            c if c.is_control() => o.extend(c.escape_default()),
            c => o.push(c),
        }
    }
    o
}

/// The report as Markdown.
pub fn markdown(a: &Analysis, file: &str) -> String {
    let mut o = String::new();
    let verdict = if a.passed() { "passed" } else { "FAILED" };
    let _ = writeln!(o, "# Risk register: {}\n", md_escape(&a.system));
    let _ = writeln!(o, "- Owner: {}", md_escape(&a.owner));
    let _ = writeln!(o, "- Scope: {}", md_escape(&a.scope));
    let _ = writeln!(
        o,
        "- Register: {}, SHA-256 `{}`",
        md_escape(file),
        a.register_sha256
    );
    let _ = writeln!(
        o,
        "- Checked on {}: **{verdict}**, {} error(s), {} warning(s)",
        a.today, a.errors, a.warnings
    );
    let _ = writeln!(
        o,
        "- Risk matrix: {}×{} (likelihood × consequence), appetite {}\n",
        a.matrix.likelihood_levels, a.matrix.consequence_levels, a.matrix.appetite
    );

    let _ = writeln!(o, "## Action priority\n");
    let _ = writeln!(
        o,
        "| AP | risk | title | S | O | D | RPN | residual AP | status | controls |"
    );
    let _ = writeln!(
        o,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in by_priority(a) {
        let i = &r.inherent;
        let res = r
            .residual
            .as_ref()
            .map_or("-", |s| s.action_priority.as_str());
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {res} | {}{} | {} |",
            i.action_priority.as_str(),
            r.id,
            md_escape(&r.title),
            i.severity,
            i.occurrence,
            i.detection,
            i.rpn,
            r.status,
            r.accepted_by
                .as_ref()
                .map(|b| format!(" (accepted by {})", md_escape(b)))
                .unwrap_or_default(),
            if r.controls.is_empty() {
                "-".into()
            } else {
                r.controls.join(", ")
            }
        );
    }

    for (title, residual) in [
        ("Inherent risk matrix", false),
        ("Residual risk matrix", true),
    ] {
        let _ = writeln!(o, "\n## {title}\n");
        let cells = heat(a, residual);
        let _ = write!(o, "| likelihood \\ consequence |");
        for c in 1..=a.matrix.consequence_levels {
            let _ = write!(o, " {c} |");
        }
        let _ = write!(o, "\n| --- |");
        for _ in 1..=a.matrix.consequence_levels {
            let _ = write!(o, " --- |");
        }
        o.push('\n');
        for l in (1..=a.matrix.likelihood_levels).rev() {
            let _ = write!(o, "| **{l}** |");
            for c in 1..=a.matrix.consequence_levels {
                let ids = &cells[usize::from(l) - 1][usize::from(c) - 1];
                let mark = match a.matrix.band(l, c) {
                    Band::Acceptable => "",
                    Band::Tolerable => "!",
                    Band::Intolerable => "!!",
                };
                let _ = write!(
                    o,
                    " {}{mark} |",
                    if ids.is_empty() {
                        "·".to_owned()
                    } else {
                        ids.join(" ")
                    }
                );
            }
            o.push('\n');
        }
        let _ = writeln!(o, "\n`!` above appetite, `!!` above twice the appetite.");
    }

    let _ = writeln!(o, "\n## RPN Pareto\n");
    let _ = writeln!(o, "| risk | RPN | cumulative |");
    let _ = writeln!(o, "| --- | --- | --- |");
    for (r, rpn, cum) in pareto(a) {
        let _ = writeln!(o, "| {} | {rpn} | {:.0}% |", r.id, cum * 100.0);
    }

    let _ = writeln!(o, "\n## Controls and evidence\n");
    let _ = writeln!(
        o,
        "| control | type | mitigates | evidence | condition | state |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- |");
    for c in &a.controls {
        let risks = if c.risks.is_empty() {
            "-".to_owned()
        } else {
            c.risks.join(", ")
        };
        if c.evidence.is_empty() {
            let _ = writeln!(
                o,
                "| {} | {} | {risks} | - | - | no evidence |",
                c.id, c.kind
            );
        }
        for e in &c.evidence {
            let _ = writeln!(
                o,
                "| {} | {} | {risks} | {} | {} | {} ({}) |",
                c.id,
                c.kind,
                md_escape(&e.file),
                md_escape(&e.condition),
                state_word(&e.state),
                md_escape(&e.detail)
            );
        }
    }

    let _ = writeln!(o, "\n## Coverage\n");
    let _ = writeln!(o, "MITRE ATLAS tactics:\n");
    for (id, name, risks) in &a.coverage.atlas_tactics {
        let _ = writeln!(
            o,
            "- {id} {name}: {}",
            if risks.is_empty() {
                "not covered".to_owned()
            } else {
                risks.join(", ")
            }
        );
    }
    let _ = writeln!(o, "\nNIST AI RMF functions (subcategories referenced):\n");
    for (f, used, all) in &a.coverage.ai_rmf_functions {
        let _ = writeln!(o, "- {f}: {used} of {all}");
    }
    for (title, list) in [
        (
            "OWASP Top 10 for LLM Applications 2025",
            &a.coverage.owasp_llm,
        ),
        (
            "OWASP Machine Learning Security Top Ten",
            &a.coverage.owasp_ml,
        ),
    ] {
        let _ = writeln!(o, "\n{title}:\n");
        for (id, name, risks) in list {
            let _ = writeln!(
                o,
                "- {id} {name}: {}",
                if risks.is_empty() {
                    "-".to_owned()
                } else {
                    risks.join(", ")
                }
            );
        }
    }

    let _ = writeln!(o, "\n## Problems\n");
    if a.diagnostics.is_empty() {
        let _ = writeln!(o, "None.");
    }
    for d in &a.diagnostics {
        let _ = writeln!(o, "- {}", md_escape(&d.render(file)));
    }
    o
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d2433}\
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #dde2ea;padding-bottom:.3rem}\
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #dde2ea;padding:.3rem .55rem;text-align:left;vertical-align:top}\
th{background:#f4f6fa}.ok{color:#11703a;font-weight:600}.bad{color:#b3261e;font-weight:600}.muted{color:#6b7385}\
.ap-H{background:#b3261e;color:#fff}.ap-M{background:#e8a33d}.ap-L{background:#cfe8d4}\
.cell{width:6.5rem;height:3.2rem;text-align:center;font-size:.8rem}.acceptable{background:#d6efd9}.tolerable{background:#fbe3b4}.intolerable{background:#f5b8b2}\
.grids{display:flex;gap:2.5rem;flex-wrap:wrap}.summary td{border:none;padding:.1rem .8rem .1rem 0}code{font-size:.85em}";

fn heat_html(a: &Analysis, residual: bool, title: &str) -> String {
    let cells = heat(a, residual);
    let mut o = format!("<div><h3>{}</h3><table><tr><th>L \\ C</th>", esc(title));
    for c in 1..=a.matrix.consequence_levels {
        let _ = write!(o, "<th>{c}</th>");
    }
    o.push_str("</tr>");
    for l in (1..=a.matrix.likelihood_levels).rev() {
        let _ = write!(o, "<tr><th>{l}</th>");
        for c in 1..=a.matrix.consequence_levels {
            let class = match a.matrix.band(l, c) {
                Band::Acceptable => "acceptable",
                Band::Tolerable => "tolerable",
                Band::Intolerable => "intolerable",
            };
            let ids = &cells[usize::from(l) - 1][usize::from(c) - 1];
            let _ = write!(
                o,
                "<td class=\"cell {class}\" title=\"score {}\">{}</td>",
                a.matrix.score(l, c),
                esc(&ids.join(" "))
            );
        }
        o.push_str("</tr>");
    }
    o.push_str("</table></div>");
    o
}

fn pareto_svg(a: &Analysis) -> String {
    let rows = pareto(a);
    if rows.is_empty() {
        return "<p class=\"muted\">No risks.</p>".into();
    }
    let (w, h, pad, bottom) = (720.0_f64, 320.0_f64, 40.0_f64, 100.0_f64);
    let base = h - bottom;
    let bw = (w - 2.0 * pad) / rows.len() as f64;
    let max = f64::from(rows.iter().map(|r| r.1).max().unwrap_or(1).max(1));
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"RPN Pareto chart\">"
    );
    let _ = write!(
        o,
        "<line x1=\"{pad}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#888\"/>",
        w - pad
    );
    let mut points = Vec::new();
    for (i, (r, rpn, cum)) in rows.iter().enumerate() {
        let x = pad + i as f64 * bw;
        let bh = (base - pad) * f64::from(*rpn) / max;
        let fill = match r.inherent.action_priority {
            ActionPriority::H => "#b3261e",
            ActionPriority::M => "#e8a33d",
            ActionPriority::L => "#7fb98a",
        };
        let _ = write!(
            o,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{fill}\"><title>{} RPN {rpn}</title></rect>",
            x + 2.0,
            base - bh,
            (bw - 4.0).max(1.0),
            esc(&r.id)
        );
        let (lx, ly) = (x + bw / 2.0, base + 12.0);
        let _ = write!(
            o,
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" font-size=\"10\" text-anchor=\"end\" transform=\"rotate(-40 {lx:.1} {ly:.1})\">{}</text>",
            esc(&r.id)
        );
        points.push(format!(
            "{:.1},{:.1}",
            x + bw / 2.0,
            base - (base - pad) * cum
        ));
    }
    let _ = write!(
        o,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#1d2433\" stroke-width=\"1.5\"/>",
        points.join(" ")
    );
    let _ = write!(
        o,
        "<text x=\"{pad}\" y=\"{}\" font-size=\"11\">RPN (bars, coloured by action priority); cumulative share of the total RPN (line)</text>",
        pad - 12.0
    );
    o.push_str("</svg>");
    o
}

/// The report as one self-contained HTML page.
pub fn html(a: &Analysis, file: &str) -> String {
    let mut o = String::new();
    let verdict = if a.passed() {
        "<span class=\"ok\">passed</span>"
    } else {
        "<span class=\"bad\">FAILED</span>"
    };
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Risk register: {}</title><style>{CSS}</style></head><body>",
        esc(&a.system)
    );
    let _ = write!(
        o,
        "<h1>Risk register: {}</h1><table class=\"summary\">",
        esc(&a.system)
    );
    let _ = write!(
        o,
        "<tr><td>Owner</td><td>{}</td></tr><tr><td>Scope</td><td>{}</td></tr>",
        esc(&a.owner),
        esc(&a.scope)
    );
    let _ = write!(
        o,
        "<tr><td>Register</td><td><code>{}</code>, SHA-256 <code>{}</code></td></tr>",
        esc(file),
        a.register_sha256
    );
    let _ = write!(
        o,
        "<tr><td>Checked on {}</td><td>{verdict}: {} error(s), {} warning(s)</td></tr>",
        a.today, a.errors, a.warnings
    );
    let _ = write!(
        o,
        "<tr><td>Matrix</td><td>{}×{} likelihood × consequence, appetite {}</td></tr></table>",
        a.matrix.likelihood_levels, a.matrix.consequence_levels, a.matrix.appetite
    );

    o.push_str("<h2>Risk matrix</h2><div class=\"grids\">");
    o.push_str(&heat_html(a, false, "Inherent"));
    o.push_str(&heat_html(a, true, "Residual"));
    o.push_str("</div><p class=\"muted\">Green: within appetite; amber: up to twice the appetite; red: beyond.</p>");

    o.push_str("<h2>Action priority</h2><table><tr><th>AP</th><th>Risk</th><th>Title</th><th>S</th><th>O</th><th>D</th><th>RPN</th><th>Residual AP</th><th>Status</th><th>Controls</th></tr>");
    for r in by_priority(a) {
        let i = &r.inherent;
        let res = r
            .residual
            .as_ref()
            .map_or("-", |s| s.action_priority.as_str());
        let status = match &r.accepted_by {
            Some(b) => format!("{} (accepted by {})", r.status, esc(b)),
            None => r.status.to_owned(),
        };
        let _ = write!(
            o,
            "<tr><td class=\"ap-{0}\">{0}</td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td><td>{6}</td><td>{res}</td><td>{status}</td><td>{7}</td></tr>",
            i.action_priority.as_str(),
            esc(&r.id),
            esc(&r.title),
            i.severity,
            i.occurrence,
            i.detection,
            i.rpn,
            esc(&r.controls.join(", "))
        );
    }
    o.push_str("</table>");

    o.push_str("<h2>RPN Pareto</h2>");
    o.push_str(&pareto_svg(a));

    o.push_str("<h2>Controls and evidence</h2><table><tr><th>Control</th><th>Type</th><th>Mitigates</th><th>Evidence</th><th>Condition</th><th>State</th></tr>");
    for c in &a.controls {
        let risks = esc(&c.risks.join(", "));
        if c.evidence.is_empty() {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{risks}</td><td colspan=\"3\" class=\"muted\">no evidence</td></tr>",
                esc(&c.id),
                c.kind
            );
        }
        for e in &c.evidence {
            let class = if e.state == EvidenceState::Holds {
                "ok"
            } else {
                "bad"
            };
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{risks}</td><td><code>{}</code></td><td><code>{}</code></td><td class=\"{class}\">{} <span class=\"muted\">{}</span></td></tr>",
                esc(&c.id),
                c.kind,
                esc(&e.file),
                esc(&e.condition),
                state_word(&e.state),
                esc(&e.detail)
            );
        }
    }
    o.push_str("</table>");

    o.push_str("<h2>Coverage</h2><div class=\"grids\"><div><h3>MITRE ATLAS tactics</h3><table><tr><th>Tactic</th><th>Risks</th></tr>");
    for (id, name, risks) in &a.coverage.atlas_tactics {
        let cell = if risks.is_empty() {
            "<span class=\"muted\">not covered</span>".to_owned()
        } else {
            esc(&risks.join(", "))
        };
        let _ = write!(
            o,
            "<tr><td>{} {}</td><td>{cell}</td></tr>",
            esc(id),
            esc(name)
        );
    }
    o.push_str("</table></div><div><h3>NIST AI RMF functions</h3><table><tr><th>Function</th><th>Subcategories referenced</th></tr>");
    for (f, used, all) in &a.coverage.ai_rmf_functions {
        let _ = write!(o, "<tr><td>{f}</td><td>{used} of {all}</td></tr>");
    }
    o.push_str("</table>");
    for (title, list) in [
        ("OWASP LLM Top 10 (2025)", &a.coverage.owasp_llm),
        ("OWASP ML Top 10", &a.coverage.owasp_ml),
    ] {
        let _ = write!(o, "<h3>{title}</h3><table>");
        for (id, name, risks) in list {
            let _ = write!(
                o,
                "<tr><td>{} {}</td><td>{}</td></tr>",
                esc(id),
                esc(name),
                esc(&risks.join(", "))
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</div></div>");

    o.push_str("<h2>Problems</h2>");
    if a.diagnostics.is_empty() {
        o.push_str("<p class=\"ok\">None.</p>");
    } else {
        o.push_str("<ul>");
        for d in &a.diagnostics {
            let _ = write!(o, "<li><code>{}</code></li>", esc(&d.render(file)));
        }
        o.push_str("</ul>");
    }
    o.push_str("</body></html>\n");
    o
}
