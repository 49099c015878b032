//! Results: what one run measured (serialized as JSON), the ratios and targets derived from it,
//! and the markdown table.

use crate::scenarios::{Load, Scenario};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// Peers that serve from a pool of ChatGPT accounts (compared with codex-gate's pool).
pub const POOLING_PEERS: [&str; 1] = ["codex-lb"];

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Pcts {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
}

/// One target (direct, bare-relay, codex-gate, or an external gateway) in one scenario.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TargetResult {
    pub name: String,
    /// Complete, checked answers.
    pub requests: u64,
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub seconds: f64,
    pub rps: f64,
    pub latency_ms: Pcts,
    pub ttfb_ms: Pcts,
    /// CPU seconds the target's process spent per 1,000 answers.
    pub cpu_s_per_1k: Option<f64>,
    /// CPU seconds the mock spent per 1,000 answers (the same work on every path).
    pub mock_cpu_s_per_1k: f64,
    pub rss_idle_mb: Option<f64>,
    pub rss_peak_mb: Option<f64>,
    /// Hold scenario: memory added per open stream, CPU while they were open.
    pub rss_per_stream_kb: Option<f64>,
    pub open_streams: Option<usize>,
    pub cpu_percent: Option<f64>,
    /// codex-gate: its `x-codex-gate-overhead-ms` header and its `/metrics` overhead mean.
    pub header_overhead_ms: Option<Pcts>,
    pub metrics_overhead_us: Option<f64>,
    /// Throughput of each measured round, in order (the spread a single figure hides).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_rps: Vec<f64>,
    /// TLS scenarios: new upstream connections (handshakes at the mock) per 100 answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_handshakes_per_100: Option<f64>,
}

impl TargetResult {
    /// How far the rounds' throughput spread: (max − min) / mean, when there were two or more.
    pub fn spread(&self) -> Option<f64> {
        let r = &self.round_rps;
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        let (lo, hi) = r.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        (r.len() >= 2 && mean > 0.0).then(|| (hi - lo) / mean)
    }
}

/// codex-gate's own overhead numbers next to the harness's view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agreement {
    pub header_mean_us: f64,
    pub header_p99_us: f64,
    pub metrics_mean_us: Option<f64>,
    pub ttfb_added_vs_bare_p50_us: f64,
    pub ttfb_added_vs_direct_p50_us: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub what: String,
    pub value: f64,
    /// `>=` or `<=`.
    pub op: String,
    pub limit: f64,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub id: String,
    pub title: String,
    pub params: serde_json::Value,
    pub targets: Vec<TargetResult>,
    /// `NAME/bare-relay throughput`, `NAME/direct TTFB p50`, … for every measured target.
    pub ratios: Vec<(String, f64)>,
    pub checks: Vec<Check>,
    pub agreement: Option<Agreement>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub mode: String,
    pub started_unix: u64,
    pub command: String,
    pub machine: serde_json::Value,
    pub scenarios: Vec<ScenarioResult>,
}

fn check(what: &str, value: Option<f64>, op: &str, limit: f64) -> Option<Check> {
    let v = value.filter(|v| v.is_finite())?;
    let met = if op == ">=" { v >= limit } else { v <= limit };
    Some(Check { what: what.into(), value: v, op: op.into(), limit, met })
}

impl ScenarioResult {
    pub fn new(sc: &Scenario, targets: Vec<TargetResult>, agreement: Option<Agreement>) -> ScenarioResult {
        let find = |n: &str| targets.iter().find(|t| t.name == n);
        let (direct, bare, gate) = (find("direct"), find("bare-relay"), find("codex-gate"));
        let div = |a: Option<f64>, b: Option<f64>| a.zip(b).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b);
        let mut ratios = Vec::new();
        let hold = matches!(sc.load, Load::Hold { .. });
        for t in targets.iter().filter(|t| t.name != "direct") {
            let mut add = |what: String, v: Option<f64>| {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    ratios.push((what, round4(v)));
                }
            };
            if !hold {
                if t.name != "bare-relay" {
                    add(format!("{}/bare-relay throughput", t.name), div(Some(t.rps), bare.map(|b| b.rps)));
                    add(
                        format!("{}/bare-relay CPU per 1k", t.name),
                        div(t.cpu_s_per_1k, bare.and_then(|b| b.cpu_s_per_1k)),
                    );
                }
                add(format!("{}/direct throughput", t.name), div(Some(t.rps), direct.map(|d| d.rps)));
            }
            add(format!("{}/direct TTFB p50", t.name), div(Some(t.ttfb_ms.p50), direct.map(|d| d.ttfb_ms.p50)));
            add(format!("{}/direct TTFB p99", t.name), div(Some(t.ttfb_ms.p99), direct.map(|d| d.ttfb_ms.p99)));
        }
        // Against every other gateway, codex-gate first: how many times its throughput, and its
        // CPU per request as a fraction of theirs. A pooling peer is set against codex-gate's
        // pool, the same work.
        let own = ["direct", "bare-relay", "codex-gate", "codex-gate-pool"];
        for t in targets.iter().filter(|t| !own.contains(&t.name.as_str())) {
            let ours = if POOLING_PEERS.contains(&t.name.as_str()) { "codex-gate-pool" } else { "codex-gate" };
            let Some(gate) = find(ours) else { continue };
            let mut add = |what: String, v: Option<f64>| {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    ratios.push((what, round4(v)));
                }
            };
            if !hold {
                add(format!("{ours}/{} throughput", t.name), div(Some(gate.rps), Some(t.rps)));
                add(format!("{ours}/{} CPU per 1k", t.name), div(gate.cpu_s_per_1k, t.cpu_s_per_1k));
            }
            add(format!("{ours}/{} TTFB p50", t.name), div(Some(gate.ttfb_ms.p50), Some(t.ttfb_ms.p50)));
        }
        let ratio = |key: &str| ratios.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
        let mut checks: Vec<Option<Check>> = Vec::new();
        match sc.id {
            "a" | "b" | "e" | "k" => {
                checks.push(check("throughput vs bare relay", ratio("codex-gate/bare-relay throughput"), ">=", 0.6));
                checks.push(check(
                    "CPU per 1k requests vs bare relay",
                    ratio("codex-gate/bare-relay CPU per 1k"),
                    "<=",
                    1.7,
                ));
            }
            "c" | "d" => {
                checks.push(check("throughput vs bare relay", ratio("codex-gate/bare-relay throughput"), ">=", 0.5));
            }
            "f" => {
                checks.push(check("RSS per open stream (KB)", gate.and_then(|g| g.rss_per_stream_kb), "<=", 30.0));
                checks.push(check("idle RSS (MB)", gate.and_then(|g| g.rss_idle_mb), "<=", 30.0));
            }
            "g" | "j" => {
                checks.push(check("TTFB p50 vs direct", ratio("codex-gate/direct TTFB p50"), "<=", 1.05));
                checks.push(check("TTFB p99 vs direct", ratio("codex-gate/direct TTFB p99"), "<=", 1.2));
            }
            _ => {}
        }
        if sc.tls {
            // Connections to the upstream are reused: a handshake per turn would cost Codex
            // users a round trip and the gateway CPU on every turn.
            let handshakes = gate.and_then(|g| g.upstream_handshakes_per_100);
            checks.push(check("upstream TLS handshakes per 100 answers", handshakes, "<=", 1.0));
        }
        let errors =
            [direct, bare, gate, find("codex-gate-pool")].iter().flatten().map(|t| t.errors as f64).sum::<f64>();
        checks.push(check("errors (direct, bare relay, codex-gate and its pool)", Some(errors), "<=", 0.0));
        let params = serde_json::json!({
            "client_api": format!("{:?}", sc.client), "gate_upstream_api": format!("{:?}", sc.upstream),
            "body": format!("{:?}", sc.body), "deltas": sc.deltas, "delta_bytes": sc.delta_bytes,
            "delay_ms": sc.delay_ms, "ttft_ms": sc.ttft_ms, "load": format!("{:?}", sc.load),
            "pool_accounts": sc.pool_accounts, "tls": sc.tls,
        });
        ScenarioResult {
            id: sc.id.into(),
            title: sc.title.into(),
            params,
            targets,
            ratios,
            checks: checks.into_iter().flatten().collect(),
            agreement,
        }
    }

    /// A held-streams scenario (f): memory and CPU while open, not throughput.
    pub fn is_hold(&self) -> bool {
        self.targets.iter().any(|t| t.open_streams.is_some())
    }
}

/// Four significant digits: a 1/268 CPU ratio must not round to 0.004 (1/250).
fn round4(v: f64) -> f64 {
    format!("{v:.3e}").parse().unwrap_or(v)
}

/// A ratio as a reader takes it in: `262×`, `1.37×`, or `1/268` where two decimals would
/// round it to nothing.
pub fn fmt_ratio(v: f64) -> String {
    match v {
        v if v >= 10.0 => format!("{v:.0}×"),
        v if v >= 0.095 => format!("{v:.2}×"),
        v if v > 0.0 => format!("1/{:.0}", 1.0 / v),
        _ => "0×".into(),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "–".into())
}

/// The markdown report of a run.
pub fn markdown(run: &Run) -> String {
    let mut s = String::new();
    let m = &run.machine;
    let _ = writeln!(s, "# codex-gate benchmark ({} run)\n", run.mode);
    let _ = writeln!(
        s,
        "Machine: {} × {}, {} GiB, Linux {}; {}; commit {}; `{}`.\n",
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or("?"),
        m["memory_gib"],
        m["kernel"].as_str().unwrap_or("?"),
        m["rustc"].as_str().unwrap_or("?"),
        m["commit"].as_str().unwrap_or("?"),
        run.command
    );
    for sc in &run.scenarios {
        let _ = writeln!(s, "## {}. {}\n", sc.id, sc.title);
        // Ratios first: they are the result; the table below is what they come from.
        if !sc.ratios.is_empty() {
            let r: Vec<String> = sc.ratios.iter().map(|(k, v)| format!("{k} **{}**", fmt_ratio(*v))).collect();
            let _ = writeln!(s, "Ratios: {}.\n", r.join(", "));
        }
        if sc.is_hold() {
            s.push_str("| target | open streams | done | errors | RSS idle MB | RSS peak MB | KB per stream | CPU % while open | TTFB p50 ms | TTFB p99 ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for t in &sc.targets {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} |",
                    t.name,
                    t.open_streams.unwrap_or(0),
                    t.requests,
                    t.errors,
                    opt(t.rss_idle_mb, 1),
                    opt(t.rss_peak_mb, 1),
                    opt(t.rss_per_stream_kb, 1),
                    opt(t.cpu_percent, 1),
                    t.ttfb_ms.p50,
                    t.ttfb_ms.p99
                );
            }
        } else {
            s.push_str("| target | req/s | spread over rounds | p50 ms | p90 ms | p99 ms | TTFB p50 ms | TTFB p99 ms | CPU s / 1k req | mock CPU s / 1k | RSS peak MB | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for t in &sc.targets {
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.3} | {} | {} |",
                    t.name,
                    t.rps,
                    t.spread().map(|v| format!("{:.0} %", v * 100.0)).unwrap_or_else(|| "–".into()),
                    t.latency_ms.p50,
                    t.latency_ms.p90,
                    t.latency_ms.p99,
                    t.ttfb_ms.p50,
                    t.ttfb_ms.p99,
                    opt(t.cpu_s_per_1k, 3),
                    t.mock_cpu_s_per_1k,
                    opt(t.rss_peak_mb, 1),
                    t.errors
                );
            }
        }
        let handshakes: Vec<String> = sc
            .targets
            .iter()
            .filter_map(|t| t.upstream_handshakes_per_100.map(|h| format!("{} {h:.2}", t.name)))
            .collect();
        if !handshakes.is_empty() {
            let _ = writeln!(s, "\nTLS handshakes at the mock per 100 answers: {}.", handshakes.join(", "));
        }
        if let Some(a) = &sc.agreement {
            let _ = writeln!(
                s,
                "\nOverhead agreement: `x-codex-gate-overhead-ms` mean {:.0} µs (p99 {:.0} µs); `/metrics` overhead mean {} µs; \
                 harness TTFB p50 added over the bare relay {:.0} µs, over direct {:.0} µs.",
                a.header_mean_us,
                a.header_p99_us,
                opt(a.metrics_mean_us, 0),
                a.ttfb_added_vs_bare_p50_us,
                a.ttfb_added_vs_direct_p50_us
            );
        }
        for c in &sc.checks {
            let _ = writeln!(
                s,
                "- {} {}: {:.3} {} {} ",
                if c.met { "✅ met" } else { "❌ missed" },
                c.what,
                c.value,
                c.op,
                c.limit
            );
        }
        for t in sc.targets.iter().filter(|t| t.first_error.is_some()) {
            let _ = writeln!(s, "- first error from {}: `{}`", t.name, t.first_error.as_deref().unwrap_or(""));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_keep_their_size_when_small() {
        assert_eq!(round4(1.0 / 268.0), 0.003731);
        assert_eq!(round4(2274.4), 2274.0);
        assert_eq!(fmt_ratio(round4(1.0 / 268.0)), "1/268");
        assert_eq!(fmt_ratio(262.4), "262×");
        assert_eq!(fmt_ratio(1.374), "1.37×");
        assert_eq!(fmt_ratio(0.0), "0×");
    }
}
