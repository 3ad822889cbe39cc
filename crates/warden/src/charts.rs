//! Pictures and pages for the reports of `warden monitor` and `warden harden eval`: score
//! histograms, ROC curves and accuracy curves as inline SVG in a self-contained HTML page (no
//! script, no external resource), and the ROC points themselves.

use std::fmt::Write as _;

const W: f64 = 420.0;
const H: f64 = 260.0;
const PAD: f64 = 36.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

/// Escapes text for HTML and SVG.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The ROC curve's points (false-positive rate, true-positive rate) of `anomalous` against
/// `clean` scores, thresholds from high to low, thinned to at most about 200 points.
pub(crate) fn roc_points(clean: &[f64], anomalous: &[f64]) -> Vec<(f64, f64)> {
    if clean.is_empty() || anomalous.is_empty() {
        return Vec::new();
    }
    let mut all: Vec<(f64, bool)> = clean
        .iter()
        .map(|&s| (s, false))
        .chain(anomalous.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (nc, na) = (clean.len() as f64, anomalous.len() as f64);
    let (mut fp, mut tp) = (0.0, 0.0);
    let mut pts = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            if all[j].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            j += 1;
        }
        pts.push((fp / nc, tp / na));
        i = j;
    }
    let step = pts.len().div_ceil(200).max(1);
    let last = pts.len() - 1;
    pts.into_iter()
        .enumerate()
        .filter(|(k, _)| k % step == 0 || *k == last)
        .map(|(_, p)| p)
        .collect()
}

fn frame(title: &str, x_label: &str, y_label: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="10"><title>{t}</title><rect x="{PAD}" y="8" width="{pw}" height="{ph}" fill="none" stroke="#999"/><text x="{cx}" y="{by}" text-anchor="middle">{xl}</text><text x="10" y="{cy}" transform="rotate(-90 10 {cy})" text-anchor="middle">{yl}</text>"##,
        t = esc(title),
        pw = W - PAD - 8.0,
        ph = H - PAD - 8.0,
        cx = PAD + (W - PAD - 8.0) / 2.0,
        by = H - 4.0,
        cy = 8.0 + (H - PAD - 8.0) / 2.0,
        xl = esc(x_label),
        yl = esc(y_label),
    );
    s
}

fn px(x: f64, lo: f64, hi: f64) -> f64 {
    PAD + (x - lo) / (hi - lo).max(1e-300) * (W - PAD - 8.0)
}

fn py(y: f64, lo: f64, hi: f64) -> f64 {
    8.0 + (1.0 - (y - lo) / (hi - lo).max(1e-300)) * (H - PAD - 8.0)
}

/// An SVG path through `pts` (x over `lo..hi`, y over 0..1).
fn polyline(pts: &[(f64, f64)], lo: f64, hi: f64) -> String {
    let mut path = String::new();
    for (i, (x, y)) in pts.iter().enumerate() {
        let _ = write!(
            path,
            "{}{:.1},{:.1} ",
            if i == 0 { "M" } else { "L" },
            px(*x, lo, hi),
            py(*y, 0.0, 1.0)
        );
    }
    path
}

fn legend(s: &mut String, names: &[&str]) {
    for (k, n) in names.iter().enumerate() {
        let y = 20.0 + 12.0 * k as f64;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{ry}" width="8" height="8" fill="{c}"/><text x="{tx}" y="{y}">{n}</text>"#,
            x = W - 150.0,
            ry = y - 7.0,
            c = COLORS[k % COLORS.len()],
            tx = W - 138.0,
            n = esc(n)
        );
    }
}

/// Overlaid histograms (as step lines of densities) of several score sets on common bins, with
/// vertical lines at the thresholds.
pub(crate) fn histogram_svg(
    title: &str,
    series: &[(&str, &[f64])],
    thresholds: &[(&str, f64)],
) -> String {
    let bins = 40usize;
    let finite = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    for (_, t) in thresholds {
        if t.is_finite() {
            lo = lo.min(*t);
            hi = hi.max(*t);
        }
    }
    if !(lo.is_finite() && hi.is_finite()) {
        return String::new();
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let mut dens: Vec<Vec<f64>> = Vec::new();
    let mut top = 0.0f64;
    for (_, v) in series {
        let h = warden_monitor::detect::histogram(v, bins, Some((lo, hi)));
        let d: Vec<f64> = match h {
            Ok(h) => {
                let n = v.len().max(1) as f64;
                h.counts.iter().map(|&c| c as f64 / n).collect()
            }
            Err(_) => vec![0.0; bins],
        };
        top = d.iter().copied().fold(top, f64::max);
        dens.push(d);
    }
    let top = top.max(1e-9) * 1.05;
    let mut s = frame(title, "score", "fraction per bin");
    for (k, d) in dens.iter().enumerate() {
        let mut path = String::new();
        for (b, &v) in d.iter().enumerate() {
            let x0 = px(lo + (hi - lo) * b as f64 / bins as f64, lo, hi);
            let x1 = px(lo + (hi - lo) * (b + 1) as f64 / bins as f64, lo, hi);
            let y = py(v, 0.0, top);
            let _ = write!(
                path,
                "{}{x0:.1},{y:.1} L{x1:.1},{y:.1} ",
                if b == 0 { "M" } else { "L" }
            );
        }
        let _ = write!(
            s,
            r#"<path d="{path}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
            COLORS[k % COLORS.len()]
        );
    }
    for (name, t) in thresholds {
        if !t.is_finite() {
            continue;
        }
        let x = px(*t, lo, hi);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="8" x2="{x:.1}" y2="{yb}" stroke="#444" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{ty}" fill="#444">{n}</text>"##,
            yb = H - PAD,
            tx = x + 2.0,
            ty = H - PAD - 4.0,
            n = esc(name)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{PAD}" y="{y}">{lo:.3}</text><text x="{xr}" y="{y}" text-anchor="end">{hi:.3}</text>"#,
        y = H - PAD + 12.0,
        xr = W - 8.0
    );
    legend(&mut s, &series.iter().map(|(n, _)| *n).collect::<Vec<_>>());
    s.push_str("</svg>");
    s
}

/// ROC curves, with the diagonal and a dashed vertical line at `fpr_mark`.
pub(crate) fn roc_svg(title: &str, curves: &[(&str, Vec<(f64, f64)>)], fpr_mark: f64) -> String {
    let mut s = frame(title, "false-positive rate", "true-positive rate");
    let _ = write!(
        s,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#ccc"/>"##,
        x0 = px(0.0, 0.0, 1.0),
        y0 = py(0.0, 0.0, 1.0),
        x1 = px(1.0, 0.0, 1.0),
        y1 = py(1.0, 0.0, 1.0)
    );
    let xm = px(fpr_mark, 0.0, 1.0);
    let _ = write!(
        s,
        r##"<line x1="{xm:.1}" y1="8" x2="{xm:.1}" y2="{yb}" stroke="#444" stroke-dasharray="4 3"/>"##,
        yb = H - PAD
    );
    for (k, (_, pts)) in curves.iter().enumerate() {
        let path = polyline(pts, 0.0, 1.0);
        let _ = write!(
            s,
            r#"<path d="{path}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
            COLORS[k % COLORS.len()]
        );
    }
    let mut names: Vec<&str> = curves.iter().map(|(n, _)| *n).collect();
    names.truncate(16);
    legend(&mut s, &names);
    s.push_str("</svg>");
    s
}

/// Accuracy curves: lines through the points `(x, y)` of each curve, a dot at each point, `y` in
/// [0, 1] drawn as a percentage, `x` over the range of `x_ticks` with each tick labelled. Points
/// outside the plot (or not finite) are dropped.
pub(crate) fn line_svg(
    title: &str,
    x_label: &str,
    x_ticks: &[f64],
    curves: &[(&str, Vec<(f64, f64)>)],
) -> String {
    let mut s = frame(title, x_label, "accuracy");
    let lo = x_ticks.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = x_ticks.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = py(t, 0.0, 1.0);
        let _ = write!(
            s,
            r##"<line x1="{PAD}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="#eee"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{p}%</text>"##,
            x2 = W - 8.0,
            tx = PAD - 3.0,
            ty = y + 3.0,
            p = (t * 100.0) as u32
        );
    }
    for &t in x_ticks.iter().filter(|t| (lo..=hi).contains(*t)) {
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{y}" text-anchor="middle">{t}</text>"#,
            x = px(t, lo, hi),
            y = H - PAD + 12.0
        );
    }
    for (k, (_, pts)) in curves.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let pts: Vec<(f64, f64)> = pts
            .iter()
            .copied()
            .filter(|(x, y)| (lo..=hi).contains(x) && (0.0..=1.0).contains(y))
            .collect();
        let path = polyline(&pts, lo, hi);
        if !path.is_empty() {
            let _ = write!(
                s,
                r#"<path d="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>"#
            );
        }
        for (x, y) in &pts {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#,
                px(*x, lo, hi),
                py(*y, 0.0, 1.0)
            );
        }
    }
    let mut names: Vec<&str> = curves.iter().map(|(n, _)| *n).collect();
    names.truncate(16);
    legend(&mut s, &names);
    s.push_str("</svg>");
    s
}

/// A self-contained HTML page.
pub(crate) fn html_page(title: &str, sections: &[(String, String)]) -> String {
    let mut s = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}th:first-child,td:first-child{{text-align:left}}svg{{margin:4px}}</style></head><body><h1>{t}</h1>",
        t = esc(title)
    );
    for (h, body) in sections {
        let _ = write!(s, "<h2>{}</h2>{body}", esc(h));
    }
    s.push_str("</body></html>\n");
    s
}

/// An HTML table from a header and rows of already-escaped cells.
pub(crate) fn html_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><tr>");
    for h in header {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{c}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// A Markdown table.
pub(crate) fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|", header.join(" | "));
    for _ in header {
        s.push_str("---|");
    }
    s.push('\n');
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_curves_draw_their_points_and_escape_names() {
        let svg = line_svg(
            "curve <1>",
            "eps",
            &[0.0, 0.05, 0.1],
            &[
                ("model", vec![(0.0, 0.9), (0.05, 0.8), (0.1, 0.7)]),
                ("base & co", vec![(0.0, 0.95), (0.1, f64::NAN), (0.2, 0.1)]),
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // Three dots for the model, one for the baseline (NaN and out-of-range points dropped).
        assert_eq!(svg.matches("<circle").count(), 4);
        assert_eq!(svg.matches("<path").count(), 2);
        assert!(svg.contains("curve &lt;1&gt;") && svg.contains("base &amp; co"));
        assert!(!svg.contains("NaN"));
        for tick in [">0<", ">0.05<", ">0.1<", ">50%<", ">100%<"] {
            assert!(svg.contains(tick), "{tick}");
        }
        // The model's first dot sits at the left edge, its last at the right one.
        assert!(svg.contains(&format!(r#"cx="{PAD:.1}""#)));
        assert!(svg.contains(&format!(r#"cx="{:.1}""#, W - 8.0)));
    }

    #[test]
    fn roc_of_separated_scores_reaches_the_corner() {
        let pts = roc_points(&[0.0, 0.1, 0.2], &[1.0, 2.0]);
        assert_eq!(pts.first(), Some(&(0.0, 0.0)));
        assert!(pts.contains(&(0.0, 1.0)));
        assert_eq!(pts.last(), Some(&(1.0, 1.0)));
        assert!(roc_points(&[], &[1.0]).is_empty());
    }

    #[test]
    fn svg_is_escaped_and_closed() {
        let s = histogram_svg("a<b", &[("x&y", &[0.0, 1.0, 2.0])], &[("t", 1.5)]);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("a&lt;b") && s.contains("x&amp;y"));
        assert!(histogram_svg("empty", &[("n", &[f64::NAN])], &[]).is_empty());
    }
}
