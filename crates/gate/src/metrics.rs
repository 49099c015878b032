//! Prometheus metrics, kept in atomics and rendered as text on `GET /metrics`.
//!
//! A request touches one [`Series`] (found once per request under a read lock) and then only
//! atomics, so the hot path never contends on a mutex.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

const LATENCY_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
const OVERHEAD_BUCKETS: &[f64] = &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];

#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in nanoseconds.
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| s <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Everything recorded for one (route, target) pair.
#[derive(Debug)]
pub struct Series {
    statuses: RwLock<Vec<(u16, AtomicU64)>>,
    errors: RwLock<Vec<(String, AtomicU64)>>,
    pub latency: Histogram,
    pub ttfb: Histogram,
    pub overhead: Histogram,
}

impl Series {
    fn new() -> Self {
        Self {
            statuses: RwLock::new(Vec::new()),
            errors: RwLock::new(Vec::new()),
            latency: Histogram::new(LATENCY_BUCKETS),
            ttfb: Histogram::new(LATENCY_BUCKETS),
            overhead: Histogram::new(OVERHEAD_BUCKETS),
        }
    }

    pub fn count_status(&self, status: u16) {
        bump(&self.statuses, &status, || status);
    }

    pub fn count_error(&self, code: &str) {
        let known = self.errors.read().iter().any(|(k, _)| k == code);
        let code = if !known && (code.len() > 64 || self.errors.read().len() >= MAX_CODES) { "other" } else { code };
        bump(&self.errors, code, || code.to_owned());
    }
}

/// Count one more for `key`: a read lock on the hot path, the write lock only the first time
/// a key is seen.
fn bump<K: std::borrow::Borrow<Q>, Q: PartialEq + ?Sized>(
    v: &RwLock<Vec<(K, AtomicU64)>>,
    key: &Q,
    make: impl FnOnce() -> K,
) {
    if let Some((_, c)) = v.read().iter().find(|(k, _)| k.borrow() == key) {
        c.fetch_add(1, Relaxed);
        return;
    }
    let mut w = v.write();
    match w.iter().find(|(k, _)| k.borrow() == key) {
        Some((_, c)) => {
            c.fetch_add(1, Relaxed);
        }
        None => w.push((make(), AtomicU64::new(1))),
    }
}

/// What [`Metrics::by_target`] reports for one target.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TargetStats {
    /// Requests it answered (the last attempt was on it), and of those, with a status below 400.
    pub answered: u64,
    pub ok: u64,
    /// Failed requests and failed attempts (failed over to another target or account).
    pub failures: u64,
    pub errors: Vec<(String, u64)>,
}

/// (route, target).
type SeriesKey = (Arc<str>, Arc<str>);

/// Longest route or target label kept as it is.
const MAX_LABEL: usize = 160;
/// (route, target) series at most; later ones fold into `other`.
const MAX_SERIES: usize = 256;
/// Distinct error codes per series (upstreams choose them); later ones count as `other`.
const MAX_CODES: usize = 64;

fn other_key() -> SeriesKey {
    (Arc::from("other"), Arc::from("other"))
}

/// The gateway's metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {
    series: RwLock<HashMap<SeriesKey, Arc<Series>>>,
    pub in_flight: AtomicI64,
    pub failovers: AtomicU64,
    pub ledger_dropped: AtomicU64,
    pub ledger_written: AtomicU64,
    pub ledger_failed: AtomicU64,
    pub accept_errors: AtomicU64,
    /// Connections turned away at the connection cap (every open one was busy).
    pub connections_refused: AtomicU64,
    /// Requests refused for a missing, unknown, revoked or expired key.
    pub auth_refused: AtomicU64,
    /// Requests refused by a key's limit (rpm, tpm, concurrency, budget, pool share).
    pub limited: AtomicU64,
    /// Key-set reloads (a key was created, changed or revoked somewhere).
    pub key_reloads: AtomicU64,
    /// OpenTelemetry spans accepted by the collector, and lost (queue full or export failed).
    pub spans_exported: AtomicU64,
    pub spans_dropped: AtomicU64,
    /// Responses WebSocket connections open now, and the turns they carried.
    pub ws_open: AtomicI64,
    pub ws_turns: AtomicU64,
    /// Turns that named the previous response and sent only new items; prewarms answered here.
    pub ws_incremental: AtomicU64,
    pub ws_prewarms: AtomicU64,
    /// Client WebSockets, and the gateway's own sockets upstream, that negotiated
    /// permessage-deflate.
    pub ws_deflate: AtomicU64,
    pub ws_upstream_deflate: AtomicU64,
    /// Web searches run for chat models (`[web_search]`), and those that failed.
    pub web_searches: AtomicU64,
    pub web_search_failures: AtomicU64,
}

impl Metrics {
    /// The series for (route, target), created on first use.
    /// Clients name routes and targets (`provider/anything`), so both are bounded: a label
    /// longer than [`MAX_LABEL`], or a new pair once [`MAX_SERIES`] exist, counts under
    /// `route="other",target="other"`.
    pub fn series(&self, route: &Arc<str>, target: &Arc<str>) -> Arc<Series> {
        let key = if route.len() > MAX_LABEL || target.len() > MAX_LABEL {
            other_key()
        } else {
            (route.clone(), target.clone())
        };
        if let Some(s) = self.series.read().get(&key) {
            return s.clone();
        }
        let mut w = self.series.write();
        let key = if w.len() >= MAX_SERIES && !w.contains_key(&key) { other_key() } else { key };
        w.entry(key).or_insert_with(|| Arc::new(Series::new())).clone()
    }

    /// Per target, summed over routes: answers by status class and failures by code, since start
    /// (the dashboard's routes page).
    pub fn by_target(&self) -> std::collections::BTreeMap<String, TargetStats> {
        let mut out: std::collections::BTreeMap<String, TargetStats> = std::collections::BTreeMap::new();
        for ((_, target), s) in self.series.read().iter() {
            let t = out.entry(target.to_string()).or_default();
            for (status, c) in s.statuses.read().iter() {
                let n = c.load(Relaxed);
                t.answered += n;
                if *status < 400 {
                    t.ok += n;
                }
            }
            for (code, c) in s.errors.read().iter() {
                let n = c.load(Relaxed);
                t.failures += n;
                match t.errors.iter_mut().find(|(k, _)| k == code) {
                    Some((_, m)) => *m += n,
                    None => t.errors.push((code.clone(), n)),
                }
            }
        }
        out
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let series = self.series.read();
        let mut keys: Vec<_> = series.keys().cloned().collect();
        keys.sort();
        let labels = |(r, t): &SeriesKey| format!("route=\"{}\",target=\"{}\"", esc(r), esc(t));
        out.push_str("# HELP codex_gate_requests_total Requests answered, by route, target and HTTP status.\n# TYPE codex_gate_requests_total counter\n");
        for k in &keys {
            for (status, c) in series[k].statuses.read().iter() {
                let _ =
                    writeln!(out, "codex_gate_requests_total{{{},status=\"{status}\"}} {}", labels(k), c.load(Relaxed));
            }
        }
        out.push_str("# HELP codex_gate_errors_total Failed requests and failed attempts, by route, target and error code.\n# TYPE codex_gate_errors_total counter\n");
        for k in &keys {
            for (code, c) in series[k].errors.read().iter() {
                let _ = writeln!(
                    out,
                    "codex_gate_errors_total{{{},code=\"{}\"}} {}",
                    labels(k),
                    esc(code),
                    c.load(Relaxed)
                );
            }
        }
        type Pick = fn(&Series) -> &Histogram;
        let hists: [(&str, &str, Pick); 3] = [
            ("codex_gate_request_duration_seconds", "Total request time, until the last byte.", |s| &s.latency),
            ("codex_gate_time_to_first_byte_seconds", "Time until the first response byte left the gateway.", |s| {
                &s.ttfb
            }),
            ("codex_gate_overhead_seconds", "Time spent inside the gateway, excluding waiting on the upstream.", |s| {
                &s.overhead
            }),
        ];
        for (name, help, pick) in hists {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for k in &keys {
                pick(&series[k]).render(name, &labels(k), &mut out);
            }
        }
        let gauges = [
            ("codex_gate_in_flight_requests", "gauge", "Requests being served now.", self.in_flight.load(Relaxed)),
            (
                "codex_gate_websocket_connections",
                "gauge",
                "Responses WebSocket connections open now.",
                self.ws_open.load(Relaxed),
            ),
            (
                "codex_gate_websocket_turns_total",
                "counter",
                "Turns (response.create frames sent upstream) served over Responses WebSockets.",
                self.ws_turns.load(Relaxed) as i64,
            ),
            (
                "codex_gate_websocket_incremental_turns_total",
                "counter",
                "WebSocket turns that sent only new items after previous_response_id.",
                self.ws_incremental.load(Relaxed) as i64,
            ),
            (
                "codex_gate_websocket_prewarms_total",
                "counter",
                "WebSocket prewarms (generate: false), answered without an upstream.",
                self.ws_prewarms.load(Relaxed) as i64,
            ),
            (
                "codex_gate_websocket_deflate_connections_total",
                "counter",
                "Client Responses WebSockets that negotiated permessage-deflate.",
                self.ws_deflate.load(Relaxed) as i64,
            ),
            (
                "codex_gate_upstream_websocket_deflate_connections_total",
                "counter",
                "The gateway's WebSockets to upstreams that negotiated permessage-deflate.",
                self.ws_upstream_deflate.load(Relaxed) as i64,
            ),
            (
                "codex_gate_web_searches_total",
                "counter",
                "Web searches the gateway ran for chat models ([web_search]).",
                self.web_searches.load(Relaxed) as i64,
            ),
            (
                "codex_gate_web_search_failures_total",
                "counter",
                "Web searches that failed (the model was told, the turn went on).",
                self.web_search_failures.load(Relaxed) as i64,
            ),
            (
                "codex_gate_failovers_total",
                "counter",
                "Attempts moved to the next target.",
                self.failovers.load(Relaxed) as i64,
            ),
            (
                "codex_gate_request_log_dropped_total",
                "counter",
                "Request-log records dropped because the writer queue was full.",
                self.ledger_dropped.load(Relaxed) as i64,
            ),
            (
                "codex_gate_request_log_written_total",
                "counter",
                "Request-log records written to the store.",
                self.ledger_written.load(Relaxed) as i64,
            ),
            (
                "codex_gate_request_log_failed_total",
                "counter",
                "Request-log records lost to store errors.",
                self.ledger_failed.load(Relaxed) as i64,
            ),
            (
                "codex_gate_accept_errors_total",
                "counter",
                "Failed accepts of client connections (e.g. out of file descriptors).",
                self.accept_errors.load(Relaxed) as i64,
            ),
            (
                "codex_gate_connections_refused_total",
                "counter",
                "Client connections closed at once because the connection cap was reached and all were busy.",
                self.connections_refused.load(Relaxed) as i64,
            ),
            (
                "codex_gate_auth_refused_total",
                "counter",
                "Requests refused for a missing, unknown, revoked or expired client key.",
                self.auth_refused.load(Relaxed) as i64,
            ),
            (
                "codex_gate_key_limited_total",
                "counter",
                "Requests refused because their client key reached a limit.",
                self.limited.load(Relaxed) as i64,
            ),
            (
                "codex_gate_key_reloads_total",
                "counter",
                "Times the client keys were reloaded after a change.",
                self.key_reloads.load(Relaxed) as i64,
            ),
            (
                "codex_gate_spans_exported_total",
                "counter",
                "OpenTelemetry spans the collector accepted.",
                self.spans_exported.load(Relaxed) as i64,
            ),
            (
                "codex_gate_spans_dropped_total",
                "counter",
                "OpenTelemetry spans lost: the export queue was full or the collector refused or was unreachable.",
                self.spans_dropped.load(Relaxed) as i64,
            ),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_chosen_names_are_bounded() {
        let m = Metrics::default();
        let long: Arc<str> = Arc::from(format!("rs/{}", "x".repeat(1 << 20)));
        m.series(&Arc::from("rs/*"), &long).count_status(200);
        for i in 0..5000 {
            m.series(&Arc::from("rs/*"), &Arc::from(format!("rs/m{i}"))).count_status(200);
        }
        let text = m.render();
        assert!(text.len() < 1_200_000, "metrics text is {} bytes", text.len());
        assert_eq!(m.series.read().len(), MAX_SERIES);
        let folded = 1 + 5000 - (MAX_SERIES - 1);
        let other = format!(r#"codex_gate_requests_total{{route="other",target="other",status="200"}} {folded}"#);
        assert!(text.contains(&other), "{}", &text[..2000]);
        let m2 = Metrics::default();
        let s = m2.series(&Arc::from("r"), &Arc::from("t"));
        for i in 0..500 {
            s.count_error(&format!("code_{i}"));
        }
        s.count_error(&"e".repeat(1000));
        s.count_error("code_3");
        let text2 = m2.render();
        assert!(text2.contains(r#"{route="r",target="t",code="other"} 437"#), "{text2}");
        assert!(text2.contains(r#"{route="r",target="t",code="code_3"} 2"#));
        assert!(!text.contains("xxxxxxxx"));
    }

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        let s = m.series(&Arc::from("coder"), &Arc::from("p/\"m\""));
        s.count_status(200);
        s.count_status(200);
        s.count_error("upstream_503");
        s.latency.observe(Duration::from_millis(30));
        s.overhead.observe(Duration::from_micros(80));
        let text = m.render();
        assert!(text.contains(r#"codex_gate_requests_total{route="coder",target="p/\"m\"",status="200"} 2"#), "{text}");
        assert!(text.contains(r#"codex_gate_errors_total{route="coder",target="p/\"m\"",code="upstream_503"} 1"#));
        assert!(
            text.contains(r#"codex_gate_request_duration_seconds_bucket{route="coder",target="p/\"m\"",le="0.025"} 0"#)
        );
        assert!(
            text.contains(r#"codex_gate_request_duration_seconds_bucket{route="coder",target="p/\"m\"",le="0.05"} 1"#)
        );
        assert!(text.contains(r#"codex_gate_overhead_seconds_bucket{route="coder",target="p/\"m\"",le="0.0001"} 1"#));
        assert!(text.contains(r#"codex_gate_overhead_seconds_count{route="coder",target="p/\"m\""} 1"#));
        assert!(Arc::ptr_eq(&s, &m.series(&Arc::from("coder"), &Arc::from("p/\"m\""))));
    }
}
