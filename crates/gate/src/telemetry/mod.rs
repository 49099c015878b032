//! OpenTelemetry traces, off by default: one SERVER span per request and one CLIENT span per
//! upstream attempt, in the GenAI semantic conventions, children of the client's `traceparent`,
//! with each attempt's context sent upstream. Spans are built from the request's closed record
//! and exported as OTLP/HTTP protobuf in batches by a background task — written against the wire
//! format ([`otlp`]) instead of the SDK because the data already exists when the tally closes:
//! exporting costs the request one `try_send` (a full queue drops and counts), with no second
//! HTTP stack and no span bookkeeping on the request path.

pub mod otlp;

use crate::config::raw::RawTelemetry;
use crate::metrics::Metrics;
use crate::store::RequestRecord;
use crate::upstream::client::UpstreamClient;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use otlp::{kv, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// `[telemetry]`, or the standard `OTEL_*` variables.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP traces URL (`…/v1/traces`); `None`: off.
    pub endpoint: Option<String>,
    pub service_name: String,
    /// Sent with every export (a collector's API key); marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl TelemetryConfig {
    /// `otlp_endpoint` (a base URL gets `/v1/traces`), else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// (used as it is), else `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/traces`); `OTEL_SDK_DISABLED=true`
    /// turns the variables off. Headers: `[telemetry.headers]`, else `OTEL_EXPORTER_OTLP_HEADERS`.
    pub fn from_raw(raw: RawTelemetry, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, (String, String)> {
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let env_on = !var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let with_path = |base: &str| {
            let base = base.trim_end_matches('/');
            match base.split_once("://").map(|(_, rest)| rest.contains('/')) {
                Some(true) => base.to_owned(),
                _ => format!("{base}/v1/traces"),
            }
        };
        let (endpoint, key) = match raw.otlp_endpoint.filter(|e| !e.is_empty()) {
            Some(e) => (Some(with_path(&e)), "telemetry.otlp_endpoint"),
            None if env_on => match var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(e) => (Some(e.trim().to_owned()), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
                None => (
                    var("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| format!("{}/v1/traces", e.trim().trim_end_matches('/'))),
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                ),
            },
            None => (None, ""),
        };
        if let Some(e) = &endpoint {
            let ok = e.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
            });
            if !ok {
                return Err((key.into(), format!("{e:?} is not an http:// or https:// URL")));
            }
        }
        let mut pairs: Vec<(String, String)> = raw.headers.into_iter().collect();
        if pairs.is_empty() && env_on {
            // `k=v,k2=v2`, values percent-encoded (the OTLP exporter spec).
            for item in var("OTEL_EXPORTER_OTLP_HEADERS").unwrap_or_default().split(',') {
                if let Some((k, v)) = item.split_once('=') {
                    pairs.push((k.trim().to_owned(), percent_decode(v.trim())));
                }
            }
        }
        let mut headers = Vec::new();
        for (k, v) in pairs {
            let name = HeaderName::from_bytes(k.as_bytes());
            let value = HeaderValue::from_str(&v);
            match (name, value) {
                (Ok(n), Ok(mut v)) => {
                    v.set_sensitive(true);
                    headers.push((n, v));
                }
                _ => return Err((format!("telemetry.headers.{k}"), "is not a valid HTTP header".into())),
            }
        }
        let service_name = raw
            .service_name
            .or_else(|| var("OTEL_SERVICE_NAME"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "codex-gate".into());
        Ok(TelemetryConfig { endpoint, service_name, headers })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (b.get(i + 1).and_then(|c| hex(*c)), b.get(i + 2).and_then(|c| hex(*c))) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request's W3C trace context: its trace, the client's span (the parent), and its own span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceCtx {
    pub trace_id: [u8; 16],
    pub parent: Option<[u8; 8]>,
    pub span_id: [u8; 8],
    pub sampled: bool,
}

fn hex_into(s: &str, out: &mut [u8]) -> bool {
    if s.len() != out.len() * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return false;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).unwrap_or(0);
    }
    out.iter().any(|b| *b != 0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

impl TraceCtx {
    /// Continue the client's `traceparent` (`00-trace-span-flags`), or start a new trace when
    /// it has none or an unreadable one (the W3C rule: never fail a request over it).
    pub fn from_headers(h: &HeaderMap) -> TraceCtx {
        let parsed =
            h.get("traceparent").and_then(|v| v.to_str().ok()).and_then(|v| {
                let mut it = v.trim().split('-');
                let (ver, t, s, f) = (it.next()?, it.next()?, it.next()?, it.next()?);
                if ver == "ff" || ver.len() != 2 || (ver == "00" && it.next().is_some()) {
                    return None;
                }
                let (mut trace, mut span, mut flags) = ([0u8; 16], [0u8; 8], [0u8; 1]);
                (hex_into(t, &mut trace) && hex_into(s, &mut span) && (hex_into(f, &mut flags) || f == "00"))
                    .then_some((trace, span, flags[0] & 1 == 1))
            });
        match parsed {
            Some((trace_id, parent, sampled)) => {
                TraceCtx { trace_id, parent: Some(parent), span_id: span_id(), sampled }
            }
            None => TraceCtx { trace_id: rand::random(), parent: None, span_id: span_id(), sampled: true },
        }
    }

    /// `traceparent` for a call made under span `span`.
    pub fn header(&self, span: [u8; 8]) -> HeaderValue {
        let v = format!("00-{}-{}-{}", hex(&self.trace_id), hex(&span), if self.sampled { "01" } else { "00" });
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
    }

    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// A closed request, as the exporter needs it.
#[derive(Debug)]
pub struct Finished {
    pub ctx: TraceCtx,
    pub start_unix_ns: u64,
    pub record: RequestRecord,
    /// One span id per attempt, in `record.trail` order.
    pub attempt_spans: Vec<[u8; 8]>,
    pub key_name: Option<String>,
}

/// The exporter's handle, held by the app.
#[derive(Debug)]
pub struct Telemetry {
    tx: mpsc::Sender<Finished>,
    metrics: Arc<Metrics>,
    stop: tokio_util::sync::CancellationToken,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Requests queued for export at most; beyond, spans are dropped and counted.
const QUEUE: usize = 4096;
/// Requests per export call at most, and how long the first one waits for company.
const BATCH: usize = 256;
const LINGER: Duration = Duration::from_secs(1);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

impl Telemetry {
    /// Start the exporter when an endpoint is configured. `providers`: name → upstream system
    /// (`gen_ai.provider.name`).
    pub fn start(
        cfg: &TelemetryConfig,
        client: UpstreamClient,
        metrics: Arc<Metrics>,
        providers: Vec<(String, String)>,
    ) -> Option<Telemetry> {
        let endpoint = cfg.endpoint.clone()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let stop = tokio_util::sync::CancellationToken::new();
        let exporter = Exporter { endpoint, cfg: cfg.clone(), client, metrics: metrics.clone(), providers };
        let task = tokio::spawn(exporter.run(rx, stop.clone()));
        Some(Telemetry { tx, metrics, stop, task: parking_lot::Mutex::new(Some(task)) })
    }

    /// Export what is queued and stop (at shutdown, after the last request closed).
    pub async fn flush(&self) {
        self.stop.cancel();
        let task = self.task.lock().take();
        if let Some(t) = task {
            if tokio::time::timeout(EXPORT_TIMEOUT, t).await.is_err() {
                tracing::warn!("OpenTelemetry export did not finish at shutdown");
            }
        }
    }

    pub fn send(&self, f: Finished) {
        let spans = 1 + f.attempt_spans.len() as u64;
        if self.tx.try_send(f).is_err() {
            self.metrics.spans_dropped.fetch_add(spans, Relaxed);
        }
    }
}

struct Exporter {
    endpoint: String,
    cfg: TelemetryConfig,
    client: UpstreamClient,
    metrics: Arc<Metrics>,
    providers: Vec<(String, String)>,
}

impl Exporter {
    async fn run(self, mut rx: mpsc::Receiver<Finished>, stop: tokio_util::sync::CancellationToken) {
        let mut buf = Vec::with_capacity(BATCH);
        let mut last_warning: Option<std::time::Instant> = None;
        loop {
            let n = tokio::select! {
                n = rx.recv_many(&mut buf, BATCH) => n,
                () = stop.cancelled() => {
                    while let Ok(f) = rx.try_recv() { buf.push(f); }
                    0
                }
            };
            if n > 0 && buf.len() < BATCH {
                let deadline = tokio::time::Instant::now() + LINGER;
                while buf.len() < BATCH {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(f)) => buf.push(f),
                        _ => break,
                    }
                }
            }
            if !buf.is_empty() {
                let spans: u64 = buf.iter().map(|f| 1 + f.attempt_spans.len() as u64).sum();
                let body = otlp::encode(&self.request(&buf));
                buf.clear();
                match self.post(body).await {
                    Ok(()) => {
                        self.metrics.spans_exported.fetch_add(spans, Relaxed);
                    }
                    Err(e) => {
                        self.metrics.spans_dropped.fetch_add(spans, Relaxed);
                        // One line a minute: a collector that is down must not flood the log.
                        if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                            tracing::warn!(endpoint = %self.endpoint, error = %e, spans, "OpenTelemetry export failed; spans dropped");
                            last_warning = Some(std::time::Instant::now());
                        }
                    }
                }
            }
            if n == 0 {
                break; // stopping, or every sender is gone
            }
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let mut req = http::Request::post(&self.endpoint)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Bytes::from(body))
            .map_err(|e| e.to_string())?;
        for (k, v) in &self.cfg.headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        let send = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            // Read the answer so the connection goes back to the pool.
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {status}"))
            }
        };
        tokio::time::timeout(EXPORT_TIMEOUT, send).await.map_err(|_| "timed out".to_owned())?
    }

    fn system(&self, target: &str) -> String {
        let provider = target.split_once('/').map_or(target, |(p, _)| p);
        self.providers.iter().find(|(n, _)| n == provider).map_or_else(|| provider.to_owned(), |(_, s)| s.clone())
    }

    fn request(&self, done: &[Finished]) -> otlp::ExportTraceServiceRequest {
        let mut spans = Vec::with_capacity(done.len() * 2);
        for f in done {
            self.spans(f, &mut spans);
        }
        let resource = otlp::Resource {
            attributes: vec![
                kv("service.name", Value::String(self.cfg.service_name.clone())),
                kv("service.version", Value::String(env!("CARGO_PKG_VERSION").into())),
            ],
        };
        let scope = otlp::InstrumentationScope { name: "codex-gate".into(), version: env!("CARGO_PKG_VERSION").into() };
        otlp::ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![otlp::ScopeSpans { scope: Some(scope), spans }],
            }],
        }
    }

    fn spans(&self, f: &Finished, out: &mut Vec<otlp::Span>) {
        let r = &f.record;
        let s = |v: &str| Value::String(v.to_owned());
        let status = |error: Option<&str>| {
            Some(match error {
                Some(e) => otlp::Status { message: e.to_owned(), code: otlp::STATUS_ERROR },
                None => otlp::Status { message: String::new(), code: otlp::STATUS_OK },
            })
        };
        let served_by = r.target.split_once('/').map_or(r.target.as_str(), |(_, m)| m);
        let mut attrs = vec![
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.provider.name", s(&self.system(&r.target))),
            kv("gen_ai.request.model", s(&r.model)),
            kv("gen_ai.response.model", s(served_by)),
            kv("gen_ai.usage.input_tokens", Value::Int(r.input_tokens)),
            kv("gen_ai.usage.output_tokens", Value::Int(r.output_tokens)),
            kv("gen_ai.usage.cache_read.input_tokens", Value::Int(r.cached_tokens)),
            kv("http.response.status_code", Value::Int(i64::from(r.status))),
            kv("codex_gate.request_id", s(&r.id)),
            kv("codex_gate.api", s(&r.api)),
            kv("codex_gate.route", s(&r.route)),
            kv("codex_gate.target", s(&r.target)),
            kv("codex_gate.attempts", Value::Int(i64::from(r.attempts))),
            kv("codex_gate.stream", Value::Bool(r.stream)),
            kv("codex_gate.overhead_ms", Value::Double(r.overhead_us as f64 / 1000.0)),
            kv("codex_gate.usage.reasoning_tokens", Value::Int(r.reasoning_tokens)),
            kv("codex_gate.cost_usd", Value::Double(r.cost_usd)),
        ];
        if let Some(t) = r.ttfb_ms {
            attrs.push(kv("codex_gate.ttfb_ms", Value::Int(t)));
        }
        if let Some(a) = &r.account_id {
            attrs.push(kv("codex_gate.account", s(a)));
        }
        if let Some(k) = &f.key_name {
            attrs.push(kv("codex_gate.key", s(k)));
        }
        if let Some(e) = &r.error_code {
            attrs.push(kv("error.type", s(e)));
        }
        let end = f.start_unix_ns + r.latency_ms as u64 * 1_000_000;
        let flags = 0x100 | u32::from(f.ctx.parent.is_some()) << 9; // "has is-remote" and "is remote" bits
        out.push(otlp::Span {
            trace_id: f.ctx.trace_id.to_vec(),
            span_id: f.ctx.span_id.to_vec(),
            parent_span_id: f.ctx.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: format!("chat {}", r.model),
            kind: otlp::KIND_SERVER,
            start_time_unix_nano: f.start_unix_ns,
            end_time_unix_nano: end.max(f.start_unix_ns),
            attributes: attrs,
            status: status(r.error_code.as_deref()),
            flags,
            ..Default::default()
        });
        for (i, (a, id)) in r.trail.iter().zip(&f.attempt_spans).enumerate() {
            let model = a.target.split_once('/').map_or(a.target.as_str(), |(_, m)| m);
            let start = f.start_unix_ns + a.at_ms * 1_000_000;
            let mut attrs = vec![
                kv("gen_ai.operation.name", s("chat")),
                kv("gen_ai.provider.name", s(&self.system(&a.target))),
                kv("gen_ai.request.model", s(model)),
                kv("codex_gate.target", s(&a.target)),
                kv("codex_gate.attempt", Value::Int(i as i64 + 1)),
                kv("codex_gate.why", s(&a.why)),
            ];
            if let Some(acc) = &a.account {
                attrs.push(kv("codex_gate.account", s(acc)));
            }
            if let Some(p) = &a.pick {
                attrs.push(kv("codex_gate.account_pick", s(&p.to_string())));
            }
            if let Some(e) = &a.error {
                attrs.push(kv("error.type", s(e)));
            }
            out.push(otlp::Span {
                trace_id: f.ctx.trace_id.to_vec(),
                span_id: id.to_vec(),
                parent_span_id: f.ctx.span_id.to_vec(),
                name: format!("chat {model}"),
                kind: otlp::KIND_CLIENT,
                start_time_unix_nano: start,
                end_time_unix_nano: start + a.ms * 1_000_000,
                attributes: attrs,
                status: status(a.error.as_deref()),
                flags: 0x100,
                ..Default::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_endpoint: Option<&str>, vars: &[(&str, &str)]) -> Result<TelemetryConfig, (String, String)> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let raw = RawTelemetry { otlp_endpoint: toml_endpoint.map(str::to_owned), ..Default::default() };
        TelemetryConfig::from_raw(raw, &move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn endpoint_from_the_config_or_the_standard_variables() {
        assert_eq!(cfg(None, &[]).unwrap().endpoint, None, "off by default");
        assert_eq!(cfg(Some("http://c:4318"), &[]).unwrap().endpoint.as_deref(), Some("http://c:4318/v1/traces"));
        assert_eq!(cfg(Some("http://c:4318/custom"), &[]).unwrap().endpoint.as_deref(), Some("http://c:4318/custom"));
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://e:4318/")];
        assert_eq!(cfg(None, &base).unwrap().endpoint.as_deref(), Some("http://e:4318/v1/traces"));
        let both =
            [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://e:4318"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t/x")];
        assert_eq!(cfg(None, &both).unwrap().endpoint.as_deref(), Some("http://t/x"));
        assert_eq!(cfg(Some("http://c:1"), &both).unwrap().endpoint.as_deref(), Some("http://c:1/v1/traces"));
        let off = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://e:4318"), ("OTEL_SDK_DISABLED", "true")];
        assert_eq!(cfg(None, &off).unwrap().endpoint, None);
        let e = cfg(Some("grpc://c:4317"), &[]).unwrap_err();
        assert_eq!(e.0, "telemetry.otlp_endpoint");
        let h = cfg(None, &[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x=1")]).unwrap().headers;
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].1.to_str().unwrap(), "a b");
        assert!(h[0].1.is_sensitive());
    }

    #[test]
    fn traceparent_is_continued_or_a_new_trace_starts() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        let c = TraceCtx::from_headers(&h);
        assert_eq!(c.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.parent, Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]));
        assert!(c.sampled);
        let child = c.header([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(child.to_str().unwrap(), "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01");
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            h.insert("traceparent", bad.parse().unwrap());
            let c = TraceCtx::from_headers(&h);
            assert_eq!(c.parent, None, "{bad}");
            assert_ne!(c.trace_id, [0; 16]);
        }
    }
}
