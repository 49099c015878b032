//! Per-request accounting. A [`Tally`] is opened when a request arrives and closed exactly once —
//! on success, on error, or (via `Drop`) when the client goes away mid-stream — and then feeds
//! the metrics and sends one record to the request log.

use crate::app::App;
use crate::metrics::Series;
use crate::store::RequestRecord;
use codex_gate_protocol::usage::Usage;
use codex_gate_protocol::Api;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Tally {
    app: Arc<App>,
    id: String,
    pub record: RequestRecord,
    started: Instant,
    /// Time spent waiting on upstreams (excluded from overhead).
    pub upstream_wait: Duration,
    /// Time spent in the gateway after the response was committed (stream observation).
    pub stream_work: Duration,
    pub ttfb: Option<Duration>,
    route: Arc<str>,
    target: Arc<str>,
    closed: bool,
    /// The pool account serving this request (its in-flight slot is released with the tally).
    pub account: Option<crate::pool::InFlight>,
    /// The caller's key's hold on its limits, settled with the usage and cost at close.
    pub reservation: Option<crate::access::limits::Reservation>,
    /// When the open attempt (the last of `record.trail`) was sent; `None`: none is open.
    attempt_sent: Option<Instant>,
    /// With telemetry on: the request's trace context, its attempts' span ids, and its key's name.
    trace: Option<Trace>,
}

#[derive(Debug)]
struct Trace {
    ctx: crate::telemetry::TraceCtx,
    start_unix_ns: u64,
    attempt_spans: Vec<[u8; 8]>,
    key_name: Option<String>,
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally").field("id", &self.id).finish()
    }
}

/// `req_` + 24 hex digits: the millisecond clock, then 52 random bits. Time-ordered ids append to
/// the request log's primary-key index instead of landing on random pages of it.
pub fn request_id() -> String {
    format_id(crate::now_ms() as u64, rand::random::<u64>() >> 12)
}

/// Written by hand: `format!` with padded hex was a visible share of a small request's CPU.
fn format_id(ms: u64, random: u64) -> String {
    let ms = ms & 0xfff_ffff_ffff;
    let mut id = String::with_capacity(28);
    id.push_str("req_");
    let mut hex = |v: u64, digits: u32| {
        for i in (0..digits).rev() {
            id.push(char::from(b"0123456789abcdef"[((v >> (i * 4)) & 0xf) as usize]));
        }
    };
    hex(ms, 11);
    hex(random, 13);
    id
}

impl Tally {
    pub fn open(app: &Arc<App>, api: Api) -> Tally {
        app.metrics.in_flight.fetch_add(1, Relaxed);
        let id = request_id();
        Tally {
            app: app.clone(),
            record: RequestRecord {
                id: id.clone(),
                ts_ms: crate::now_ms(),
                api: api.as_str().into(),
                ..Default::default()
            },
            started: Instant::now(),
            upstream_wait: Duration::ZERO,
            stream_work: Duration::ZERO,
            ttfb: None,
            route: Arc::from("-"),
            target: Arc::from("-"),
            closed: false,
            id,
            account: None,
            reservation: None,
            attempt_sent: None,
            trace: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn set_route(&mut self, route: &Arc<str>, model: &str, stream: bool) {
        self.route = route.clone();
        self.record.route = route.to_string();
        self.record.model = model.to_owned();
        self.record.stream = stream;
    }

    /// The target of the latest attempt (`-` before the first).
    pub fn target(&self) -> Option<&str> {
        (&*self.target != "-").then_some(&*self.target)
    }

    pub fn set_target(&mut self, target: &Arc<str>) {
        self.target = target.clone();
        self.record.target = target.to_string();
        self.record.attempts += 1;
    }

    /// With telemetry on, join the client's trace (`traceparent`) and name the caller's key.
    pub fn trace(&mut self, headers: &http::HeaderMap, key_name: Option<&str>) {
        if self.app.telemetry.is_some() {
            let start_unix_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                .saturating_sub(self.started.elapsed().as_nanos() as u64);
            self.trace = Some(Trace {
                ctx: crate::telemetry::TraceCtx::from_headers(headers),
                start_unix_ns,
                attempt_spans: Vec::new(),
                key_name: key_name.map(str::to_owned),
            });
        }
    }

    /// The `traceparent` for the open attempt's upstream call (telemetry on).
    pub fn traceparent(&self) -> Option<http::HeaderValue> {
        let t = self.trace.as_ref()?;
        Some(t.ctx.header(*t.attempt_spans.last()?))
    }

    /// An attempt on `target` begins (after [`Self::set_target`]); `why` it was chosen.
    pub fn attempt(&mut self, why: std::borrow::Cow<'static, str>) {
        self.attempt_done(None);
        let target = self.record.target.clone();
        self.push_attempt(crate::store::Attempt { target, why, ..Default::default() });
    }

    fn push_attempt(&mut self, mut a: crate::store::Attempt) {
        a.at_ms = self.started.elapsed().as_millis() as u64;
        self.record.trail.push(a);
        self.attempt_sent = Some(Instant::now());
        if let Some(t) = &mut self.trace {
            t.attempt_spans.push(crate::telemetry::span_id());
        }
    }

    /// The open attempt goes to pool account `id`; a later account is an attempt of its own.
    pub fn attempt_account(&mut self, id: &str, picked: crate::pool::state::Picked) {
        let pick = Some(crate::store::AccountPick {
            why: picked.why.into(),
            usable: picked.usable as u32,
            of: picked.of as u32,
        });
        if self.attempt_sent.is_some() {
            if let Some(a) = self.record.trail.last_mut().filter(|a| a.account.is_none()) {
                a.account = Some(id.to_owned());
                a.pick = pick;
                return;
            }
        }
        let target = self.record.trail.last().map_or_else(|| self.record.target.clone(), |a| a.target.clone());
        self.attempt_done(None);
        let why = "another account after a failure".into();
        self.push_attempt(crate::store::Attempt {
            target,
            account: Some(id.to_owned()),
            why,
            pick,
            ..Default::default()
        });
    }

    /// The open attempt ended: answered (`None`) or failed with `error`.
    pub fn attempt_done(&mut self, error: Option<&str>) {
        if let (Some(sent), Some(a)) = (self.attempt_sent.take(), self.record.trail.last_mut()) {
            a.ms = sent.elapsed().as_millis() as u64;
            a.error = error.map(str::to_owned);
        }
    }

    /// The metrics series of the current (route, target).
    pub fn series(&self) -> Arc<Series> {
        self.app.metrics.series(&self.route, &self.target)
    }

    /// Overhead until the response headers, for `x-codex-gate-overhead-ms`; marks the first byte.
    pub fn commit(&mut self) -> Duration {
        let t = self.started.elapsed();
        self.ttfb = Some(t);
        t.saturating_sub(self.upstream_wait)
    }

    /// A `codex.rate_limits` event seen in the stream: the serving account learns its quota.
    pub fn rate_limits(&self, event: &serde_json::Value) {
        if let (Some(a), Some(q)) = (&self.account, crate::pool::quota::Quota::from_event(event, crate::now_ms())) {
            let used = self.app.pool.update_quota(&a.0, q);
            self.pool_used(used);
        }
    }

    /// This turn used `(5-hour, weekly)` percent of the pool: it counts against the key's share.
    pub fn pool_used(&self, (primary, secondary): (f64, f64)) {
        if let Some(r) = &self.reservation {
            if primary > 0.0 || secondary > 0.0 {
                r.pool_used(crate::now_ms(), primary, secondary);
            }
        }
    }

    /// A pool turn's `codex.rate_limits` event (`data`) as the client should see it: with
    /// `[pool] rate_limit_headers = "pool"`, the account first learns its own numbers, then the
    /// event carries the pool's windows, as the turn's headers do. `None`: relay it unchanged.
    pub fn pooled_rate_limits_event(&self, data: &str) -> Option<String> {
        if self.account.is_none() || !self.app.config.pool.pooled_rate_limit_headers {
            return None;
        }
        let mut v: serde_json::Value = serde_json::from_str(data).ok()?;
        self.rate_limits(&v);
        let pooled = self.app.pool.pooled_usage();
        let window = |w: &Option<crate::pool::usage::PooledWindow>| match w {
            Some(w) => serde_json::json!({"used_percent": f64::from(w.used_percent),
                "window_minutes": w.limit_window_seconds / 60, "reset_at": w.reset_at}),
            None => serde_json::Value::Null,
        };
        let rl = v.get_mut("rate_limits")?.as_object_mut()?;
        rl.insert("primary".into(), window(&pooled.rate_limit.primary_window));
        rl.insert("secondary".into(), window(&pooled.rate_limit.secondary_window));
        Some(v.to_string())
    }

    /// A failed attempt on the current target (before any byte reached the client).
    pub fn attempt_failed(&self, code: &str) {
        self.series().count_error(code);
    }

    /// Close the tally: metrics, one log line and one request-log record.
    pub fn close(&mut self, status: u16, error_code: Option<String>, usage: Option<Usage>) {
        if self.closed {
            return;
        }
        self.closed = true;
        let m = &self.app.metrics;
        m.in_flight.fetch_sub(1, Relaxed);
        let latency = self.started.elapsed();
        // Gateway time: up to the first byte minus upstream waiting, plus the measured work on
        // the stream after it (the clock after commit mostly runs on the upstream).
        let until_first_byte = self.ttfb.unwrap_or(latency);
        let overhead = until_first_byte.saturating_sub(self.upstream_wait) + self.stream_work;
        let series = self.series();
        series.count_status(status);
        if let Some(code) = &error_code {
            series.count_error(code);
        }
        series.latency.observe(latency);
        series.overhead.observe(overhead);
        if let Some(t) = self.ttfb {
            series.ttfb.observe(t);
        }
        let r = &mut self.record;
        r.status = status;
        r.error_code = error_code;
        if let Some(u) = usage {
            r.input_tokens = u.input_tokens as i64;
            r.cached_tokens = u.cached_input_tokens as i64;
            r.output_tokens = u.output_tokens as i64;
            r.reasoning_tokens = u.reasoning_tokens as i64;
            // Priced by the model the upstream ran (`provider/model` → `model`).
            let model = r.target.split_once('/').map_or(r.target.as_str(), |(_, m)| m);
            r.cost_usd = self.app.config.prices.cost(model, &u);
        }
        if let Some(a) = &self.account {
            r.account_id = Some(a.0.id.clone());
        }
        if let Some(res) = &mut self.reservation {
            res.settle(usage.map_or(0, |u| u.input_tokens + u.output_tokens), r.cost_usd);
        }
        r.latency_ms = latency.as_millis() as i64;
        r.ttfb_ms = self.ttfb.map(|t| t.as_millis() as i64);
        r.overhead_us = overhead.as_micros() as i64;
        // One line per request: at info for failures, at debug for successes (formatting a line
        // per success costs as much as the rest of the gateway's own work on a small request;
        // every request is in the request log and the metrics either way).
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    id = %r.id, api = %r.api, route = %r.route, target = %r.target, status = r.status,
                    error = r.error_code.as_deref().unwrap_or(""), attempts = r.attempts,
                    input_tokens = r.input_tokens, output_tokens = r.output_tokens,
                    latency_ms = r.latency_ms, overhead_us = r.overhead_us, "request"
                )
            };
        }
        if r.status >= 400 || r.error_code.is_some() {
            line!(info);
        } else {
            line!(debug);
        }
        if let (Some(tel), Some(t)) = (&self.app.telemetry, self.trace.take()) {
            tel.send(crate::telemetry::Finished {
                ctx: t.ctx,
                start_unix_ns: t.start_unix_ns,
                record: r.clone(),
                attempt_spans: t.attempt_spans,
                key_name: t.key_name,
            });
        }
        self.app.ledger.record(std::mem::take(r));
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if !self.closed {
            // Dropped before close: the client went away (the response body was dropped).
            self.close(499, Some("client_disconnected".into()), None);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_time_then_randomness_in_fixed_width_hex() {
        let cases = [(0, 0), (1_755_000_000_123, 0x1_2345_6789_abcd), (u64::MAX, u64::MAX >> 12)];
        for (ms, r) in cases {
            let want = format!("req_{:011x}{r:013x}", ms & 0xfff_ffff_ffff);
            assert_eq!(super::format_id(ms, r), want);
        }
        let (a, b) = (super::request_id(), super::request_id());
        assert_eq!((a.len(), b.len()), (28, 28));
        assert_ne!(a, b);
    }
}
