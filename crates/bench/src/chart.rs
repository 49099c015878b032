//! One SVG chart per scenario, drawn from a run's JSON: grouped bars per target, two panels
//! (throughput or memory on the left, latencies on the right). Plain SVG, no dependencies.

use crate::report::{Run, ScenarioResult};
use std::fmt::Write;
use std::path::Path;

const COLORS: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1"];

struct Series<'a> {
    label: &'a str,
    values: Vec<f64>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn fmt_num(v: f64) -> String {
    match v {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

/// A bar panel at (x, y) of size (w, h): one group per target, one bar per series.
fn panel(s: &mut String, (x, y, w, h): (f64, f64, f64, f64), title: &str, groups: &[String], series: &[Series]) {
    let max = series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0_f64, f64::max).max(1e-9) * 1.15;
    // Peers can be 100s of times slower: on a linear axis codex-gate's bars would vanish next to
    // theirs, so a panel whose values span more than 100× is drawn on a log axis (and says so).
    let min = series.iter().flat_map(|s| s.values.iter().copied()).filter(|v| *v > 0.0).fold(f64::MAX, f64::min);
    let log = min < f64::MAX && max / min > 100.0;
    let floor = min / 2.0;
    let height = |v: f64| {
        if !log {
            v / max * h
        } else if v <= 0.0 {
            0.0
        } else {
            (v / floor).log10() / (max / floor).log10() * h
        }
    };
    let title = if log { format!("{title} (log scale)") } else { title.to_owned() };
    let _ = writeln!(s, r#"<text x="{}" y="{}" font-size="14" font-weight="bold">{}</text>"#, x, y - 8.0, esc(&title));
    let _ = writeln!(s, r##"<line x1="{x}" y1="{}" x2="{}" y2="{}" stroke="#444"/>"##, y + h, x + w, y + h);
    let gw = w / groups.len().max(1) as f64;
    let bw = (gw * 0.8) / series.len().max(1) as f64;
    for (gi, g) in groups.iter().enumerate() {
        let gx = x + gi as f64 * gw + gw * 0.1;
        for (si, se) in series.iter().enumerate() {
            let v = se.values.get(gi).copied().unwrap_or(0.0);
            let bh = height(v);
            let bx = gx + si as f64 * bw;
            let _ = writeln!(
                s,
                r#"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{}"><title>{} {}: {}</title></rect>"#,
                y + h - bh,
                bw * 0.92,
                COLORS[si % COLORS.len()],
                esc(g),
                esc(se.label),
                fmt_num(v)
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                bx + bw * 0.46,
                y + h - bh - 3.0,
                fmt_num(v)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            gx + gw * 0.4,
            y + h + 16.0,
            esc(g)
        );
    }
    for (si, se) in series.iter().enumerate() {
        let lx = x + si as f64 * (w / series.len().max(1) as f64);
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            y + h + 26.0,
            COLORS[si % COLORS.len()],
            lx + 14.0,
            y + h + 35.0,
            esc(se.label)
        );
    }
}

/// The chart of one scenario, as an SVG document.
pub fn svg(sc: &ScenarioResult) -> String {
    let hold = sc.is_hold();
    let measured: Vec<_> = if hold {
        sc.targets.iter().filter(|t| t.rss_peak_mb.is_some()).collect()
    } else {
        sc.targets.iter().collect()
    };
    let names: Vec<String> = measured.iter().map(|t| t.name.clone()).collect();
    let all: Vec<String> = sc.targets.iter().map(|t| t.name.clone()).collect();
    let mut s = String::new();
    let (w, h) = (960.0, 400.0);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="20" y="26" font-size="16" font-weight="bold">{}. {}</text>"#,
        esc(&sc.id),
        esc(&sc.title)
    );
    // The result first: codex-gate against each other target, as the report states it.
    let ratios: Vec<String> = sc
        .ratios
        .iter()
        .filter(|(k, _)| k.starts_with("codex-gate") && !k.contains("/direct"))
        .filter(|(k, _)| k.ends_with(" throughput") || k.ends_with(" CPU per 1k"))
        .map(|(k, v)| format!("{k} {}", crate::report::fmt_ratio(*v)))
        .collect();
    for (i, line) in ratios.chunks(3).take(2).enumerate() {
        let _ = writeln!(s, r#"<text x="20" y="{}" font-size="11">{}</text>"#, 44 + i * 13, esc(&line.join(" · ")));
    }
    let left = (50.0, 82.0, 380.0, 240.0);
    let right = (530.0, 82.0, 400.0, 240.0);
    if hold {
        panel(
            &mut s,
            left,
            "memory while all streams are open",
            &names,
            &[
                Series {
                    label: "RSS peak (MB)",
                    values: measured.iter().map(|t| t.rss_peak_mb.unwrap_or(0.0)).collect(),
                },
                Series {
                    label: "KB per stream",
                    values: measured.iter().map(|t| t.rss_per_stream_kb.unwrap_or(0.0)).collect(),
                },
            ],
        );
        panel(
            &mut s,
            right,
            "CPU % while open; TTFB p50 (ms)",
            &names,
            &[
                Series { label: "CPU %", values: measured.iter().map(|t| t.cpu_percent.unwrap_or(0.0)).collect() },
                Series { label: "TTFB p50 ms", values: measured.iter().map(|t| t.ttfb_ms.p50).collect() },
            ],
        );
    } else {
        panel(
            &mut s,
            left,
            "throughput (requests/s)",
            &all,
            &[Series { label: "req/s", values: sc.targets.iter().map(|t| t.rps).collect() }],
        );
        panel(
            &mut s,
            right,
            "latency (ms)",
            &all,
            &[
                Series { label: "TTFB p50", values: sc.targets.iter().map(|t| t.ttfb_ms.p50).collect() },
                Series { label: "total p50", values: sc.targets.iter().map(|t| t.latency_ms.p50).collect() },
                Series { label: "total p99", values: sc.targets.iter().map(|t| t.latency_ms.p99).collect() },
            ],
        );
    }
    let checks: Vec<String> = sc
        .checks
        .iter()
        .map(|c| format!("{} {} {:.2} {} {}", if c.met { "met:" } else { "MISSED:" }, c.what, c.value, c.op, c.limit))
        .collect();
    for (i, c) in checks.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="20" y="{}" font-size="11" fill="{}">{}</text>"#,
            366 + i * 13,
            if c.starts_with("met") { "#2a7" } else { "#c33" },
            esc(c)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Write `<id>.svg` for every scenario of `run` into `dir`.
pub fn write_all(run: &Run, dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for sc in &run.scenarios {
        let p = dir.join(format!("{}.svg", sc.id));
        std::fs::write(&p, svg(sc))?;
        out.push(p);
    }
    Ok(out)
}

/// A cost curve as an SVG document: one small line panel per measured column, points evenly
/// spaced (the sizes grow by about ×10 each), values labelled.
pub fn curve_svg(c: &crate::curves::Curve) -> String {
    let (pw, ph, gap) = (300.0, 170.0, 40.0);
    let cols = c.columns.len().max(1);
    let width = gap + cols as f64 * (pw + gap);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{}" font-family="sans-serif">"#,
        ph + 110.0
    );
    let _ = writeln!(s, r#"<text x="{gap}" y="24" font-size="16" font-weight="bold">{}</text>"#, esc(c.title));
    for (ci, col) in c.columns.iter().enumerate() {
        let (x0, y0) = (gap + ci as f64 * (pw + gap), 60.0);
        let _ = writeln!(s, r#"<text x="{x0}" y="{}" font-size="13" font-weight="bold">{}</text>"#, y0 - 8.0, esc(col));
        let _ = writeln!(s, r##"<line x1="{x0}" y1="{}" x2="{}" y2="{}" stroke="#444"/>"##, y0 + ph, x0 + pw, y0 + ph);
        let vals: Vec<f64> = c.points.iter().map(|(_, v)| v.get(ci).copied().unwrap_or(0.0)).collect();
        let max = vals.iter().copied().fold(0.0_f64, f64::max).max(1e-9) * 1.15;
        let step = pw / c.points.len().max(1) as f64;
        let xy = |i: usize, v: f64| (x0 + step * (i as f64 + 0.5), y0 + ph - v / max * ph);
        let line: Vec<String> =
            vals.iter().enumerate().map(|(i, &v)| xy(i, v)).map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            line.join(" "),
            COLORS[0]
        );
        for (i, (&v, (x, _))) in vals.iter().zip(&c.points).enumerate() {
            let (px, py) = xy(i, v);
            let _ = writeln!(s, r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{}"/>"#, COLORS[0]);
            let _ = writeln!(
                s,
                r#"<text x="{px:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                py - 6.0,
                fmt_num(v)
            );
            let _ = writeln!(
                s,
                r#"<text x="{px:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
                y0 + ph + 16.0,
                fmt_num(*x)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            x0 + pw / 2.0,
            y0 + ph + 34.0,
            esc(c.x)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar_heights(svg: &str) -> Vec<f64> {
        svg.lines()
            .filter(|l| l.starts_with("<rect x=") && l.contains("<title>"))
            .filter_map(|l| l.split("height=\"").nth(1)?.split('"').next()?.parse().ok())
            .collect()
    }

    /// One req/s panel of codex-gate and a peer at these values.
    fn two_bars(gate: f64, peer: f64) -> String {
        let groups = vec!["codex-gate".to_owned(), "peer".to_owned()];
        let mut s = String::new();
        panel(
            &mut s,
            (0.0, 0.0, 400.0, 200.0),
            "req/s",
            &groups,
            &[Series { label: "req/s", values: vec![gate, peer] }],
        );
        s
    }

    #[test]
    fn a_panel_spanning_more_than_100x_goes_log_so_small_bars_stay_visible() {
        let s = two_bars(2600.0, 10.0);
        assert!(s.contains("req/s (log scale)"), "{s}");
        let h = bar_heights(&s);
        assert_eq!(h.len(), 2);
        assert!(h[1] > 10.0 && h[0] > h[1], "the peer's bar is drawn and shorter: {h:?}");
        let s = two_bars(2600.0, 1300.0);
        assert!(!s.contains("log scale"));
        let h = bar_heights(&s);
        assert!((h[0] / h[1] - 2.0).abs() < 0.01, "linear: {h:?}");
    }
}
