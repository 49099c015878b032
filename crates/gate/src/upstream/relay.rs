//! The relay: try the route's targets in order, commit on the first byte, fail over before it.
//!
//! A request is committed when the upstream has answered 2xx *and* sent its first body chunk;
//! only then do response headers go to the client. So an upstream that errors, resets, times
//! out or closes an empty stream is still invisible to the client, and the next target is
//! tried (unless the route fails closed or the failure would repeat everywhere).

use super::body::{RelayBody, RelayOptions, Translate};
use super::client::UpstreamBody;
use super::compaction::Compact;
use crate::app::App;
use crate::egress::TransportKind;
use crate::error::GateError;
use crate::routing::{Resolved, Target};
use crate::tally::Tally;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use codex_gate_protocol::body::{rewrite_model, with_include_usage, RequestHead};
use codex_gate_protocol::compaction;
use codex_gate_protocol::observe::{ChatObserver, Outcome, ResponsesObserver};
use codex_gate_protocol::repair::ResponsesRepair;
use codex_gate_protocol::served_model;
use codex_gate_protocol::translate::chat_stream::completion_to_response;
use codex_gate_protocol::translate::responses_stream::response_to_completion;
use codex_gate_protocol::translate::{
    chat_to_responses_request, responses_to_chat_request, ChatToResponses, ResponsesToChat, ToolMap,
};
use codex_gate_protocol::usage::Usage;
use codex_gate_protocol::Api;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout_at;

/// Largest non-streaming upstream answer the gateway will hold.
const MAX_WHOLE_BODY: usize = 64 << 20;
/// Largest upstream error body kept for the client.
const MAX_ERROR_BODY: usize = 1 << 20;
pub(super) const USER_AGENT: &str = concat!("codex-gate/", env!("CARGO_PKG_VERSION"));

/// A client request, read and inspected.
#[derive(Debug)]
pub struct Inbound {
    pub api: Api,
    pub head: RequestHead,
    pub body: Bytes,
    pub headers: HeaderMap,
    /// The body parsed, once, when a target needs translation.
    pub parsed: Option<Value>,
    /// The client is Codex (it keeps `codex.*` vendor events).
    pub codex_client: bool,
    /// The caller's own pool routing (its key's override), else the pool's.
    pub pool_rules: crate::pool::PickRules,
    /// `POST /responses/compact` (compaction v1) rather than `/responses`.
    pub compact_endpoint: bool,
    /// The turn's pin (`x-codex-turn-state` made by this gateway): the target to try first.
    pub turn: Option<super::turn_state::TurnState>,
    /// A client WebSocket's turn: pool accounts and Responses providers serve it over the
    /// connection's own socket.
    pub ws: Option<super::socket::WsTurn>,
}

/// What one attempt sends and how its answer is turned back into the client's API.
pub(super) struct Plan {
    pub(super) upstream: Api,
    /// Set when a Responses request was translated for a chat upstream.
    pub(super) tools: Option<ToolMap>,
    /// The gateway asked a chat upstream for the usage chunk the client did not ask for.
    pub(super) strip_usage: bool,
    /// A chat upstream writes the summary of an emulated compaction (asked for whole).
    pub(super) compact: Option<Compact>,
    /// The chat request as sent, when its model was offered the gateway's web search (the
    /// response goes on after the searches it asks for).
    pub(super) search: Option<Value>,
}

impl Plan {
    pub(super) fn responses() -> Plan {
        Plan { upstream: Api::Responses, tools: None, strip_usage: false, compact: None, search: None }
    }

    /// Whether the upstream is asked to stream.
    fn streams(&self, inb: &Inbound) -> bool {
        inb.head.stream && self.compact.is_none() && !inb.compact_endpoint
    }
}

pub(super) enum Answer {
    Stream { parts: http::response::Parts, first: Bytes, body: UpstreamBody },
    Whole { parts: http::response::Parts, body: Bytes },
}

/// Headers a client sends that must reach the upstream to keep prompt caches, sticky routing
/// and turn state working (codex-protocol §2.2). Codex's own headers (`x-codex-*`,
/// `x-openai-subagent`) describe the user's machine — installation id, workspace path, git
/// commit, sandbox mode — so they go only where `codex_own` says (OpenAI/ChatGPT upstreams,
/// or a provider that opted in with `forward_codex_headers`).
pub(super) fn is_continuity_header(name: &str, codex_own: bool) -> bool {
    match name {
        "session-id" | "session_id" | "thread-id" | "x-client-request-id" | "traceparent" | "tracestate" => true,
        "x-openai-subagent" => codex_own,
        _ => codex_own && name.starts_with("x-codex-"),
    }
}

/// Upstream response headers passed back to the client. Not `x-models-etag`: it names the
/// upstream's catalog, not the gateway's `/models` the client read, and Codex refetches `/models`
/// whenever it differs from the ETag it stored, which would be after every turn.
fn is_relayed_response_header(name: &str) -> bool {
    matches!(name, "openai-model" | "x-openai-model" | "x-request-id" | "x-reasoning-included" | "openai-processing-ms")
        || name.starts_with("x-codex-")
        || name.starts_with("x-ratelimit-")
}

/// `search`: the gateway runs web searches for chat models (`[web_search]`).
fn translated_body(t: &Target, inb: &mut Inbound, search: bool) -> Result<(Bytes, Plan), GateError> {
    let upstream = t.provider.kind.api();
    if upstream == inb.api {
        let body = if inb.head.model == t.model {
            inb.body.clone()
        } else {
            Bytes::from(rewrite_model(&inb.body, inb.head.model_span.clone(), &t.model))
        };
        // A chat stream reports its tokens only when asked to (OpenClaw does not ask): ask, so
        // every request is counted and priced, and keep the extra chunk from the client.
        if upstream == Api::Chat && inb.head.stream && !inb.head.include_usage {
            // The model rewrite changed no stream option, so the client's head still tells.
            if let Some(with) = with_include_usage(&body, &inb.head) {
                let plan = Plan { upstream, tools: None, strip_usage: true, compact: None, search: None };
                return Ok((Bytes::from(with), plan));
            }
        }
        return Ok((body, Plan { upstream, tools: None, strip_usage: false, compact: None, search: None }));
    }
    if inb.parsed.is_none() {
        let v = serde_json::from_slice(&inb.body)
            .map_err(|e| GateError::bad_request(format!("invalid JSON: {e}"), None))?;
        inb.parsed = Some(v);
    }
    let v = inb.parsed.as_ref().unwrap_or(&Value::Null);
    let refuse = |e: codex_gate_protocol::body::BodyError| GateError::bad_request(e.message, e.param);
    match inb.api {
        Api::Responses => {
            // A chat model cannot compact: it is asked for a summary of the history instead.
            let compact = if inb.compact_endpoint {
                Some(Compact::Endpoint)
            } else {
                compaction::is_requested(v).then_some(Compact::Trigger)
            };
            let summary_req;
            let src = match compact {
                Some(_) => {
                    summary_req = compaction::summary_request(v);
                    &summary_req
                }
                None => v,
            };
            // Searches continue a streamed answer; a whole answer or a summary has no room for them.
            let mut dialect = t.provider.dialect.clone();
            dialect.web_search = search && compact.is_none() && inb.head.stream;
            let r = responses_to_chat_request(src, &t.model, &dialect).map_err(refuse)?;
            if !r.dropped_tools.is_empty() {
                tracing::debug!(target = %t.label, dropped = ?r.dropped_tools, "hosted tools dropped for a chat upstream");
            }
            let body = Bytes::from(r.body.to_string());
            let search = r.tools.web_search().is_some().then_some(r.body);
            Ok((body, Plan { upstream, tools: Some(r.tools), strip_usage: false, compact, search }))
        }
        Api::Chat => {
            let r = chat_to_responses_request(v, &t.model).map_err(refuse)?;
            Ok((
                Bytes::from(r.to_string()),
                Plan { upstream, tools: None, strip_usage: false, compact: None, search: None },
            ))
        }
    }
}

fn build_request(app: &App, t: &Target, inb: &mut Inbound) -> Result<(Request<Bytes>, Plan), GateError> {
    let (body, plan) = translated_body(t, inb, app.config.web_search.is_some())?;
    let path = match plan.upstream {
        Api::Responses if inb.compact_endpoint => "/responses/compact",
        Api::Responses => "/responses",
        Api::Chat => "/chat/completions",
    };
    let accept = if plan.streams(inb) { "text/event-stream" } else { "application/json" };
    let mut req = Request::post(format!("{}{path}", t.provider.base_url))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, accept)
        .header(header::USER_AGENT, USER_AGENT)
        .body(body)
        .map_err(|e| GateError::Internal(format!("bad upstream request for {}: {e}", t.label)))?;
    for_provider(t, &inb.headers, &mut req)?;
    Ok((req, plan))
}

/// What every request to an API provider carries: the client's continuity headers, the
/// provider's own key (the client's Authorization is never forwarded), its headers and egress.
pub(super) fn for_provider(t: &Target, client: &HeaderMap, req: &mut Request<Bytes>) -> Result<(), GateError> {
    let h = req.headers_mut();
    for (k, v) in client {
        if is_continuity_header(k.as_str(), t.provider.forward_codex_headers) {
            h.append(k.clone(), v.clone());
        }
    }
    if let Some(key) = &t.provider.api_key {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
            .map_err(|_| GateError::Internal(format!("provider {} has an invalid api_key", t.provider.name)))?;
        v.set_sensitive(true);
        h.insert(header::AUTHORIZATION, v);
    }
    for (k, v) in &t.provider.headers {
        h.insert(k.clone(), v.clone());
    }
    if let Some(route) = &t.provider.proxy {
        req.extensions_mut().insert(crate::egress::ProxyChoice(route.clone()));
    }
    Ok(())
}

/// A client error as the gateway's error for `target`.
fn transport(target: &str, e: &crate::egress::ClientError) -> GateError {
    GateError::Transport { target: target.into(), kind: e.kind, detail: e.to_string() }
}

/// Read a whole body: the first frame by `first_deadline`, then at most `idle` between frames.
pub(super) async fn read_all(
    body: &mut UpstreamBody,
    first_deadline: tokio::time::Instant,
    idle: Duration,
    limit: usize,
    target: &str,
) -> Result<Bytes, GateError> {
    // Most answers arrive in one frame: it is kept as is, and only a second frame starts a copy.
    let mut one = Bytes::new();
    let mut buf = BytesMut::new();
    let mut deadline = first_deadline;
    loop {
        let frame = match timeout_at(deadline, body.frame()).await {
            Err(_) => {
                let started = !one.is_empty() || !buf.is_empty();
                let what = if started { "idle" } else { "first byte" };
                let ms = if started { idle.as_millis() } else { 0 };
                return Err(GateError::Timeout { target: target.into(), what, ms });
            }
            Ok(None) if buf.is_empty() => return Ok(one),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => return Err(transport(target, &e)),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(d) = frame.into_data() {
            if one.len() + buf.len() + d.len() > limit {
                return Err(GateError::Transport {
                    target: target.into(),
                    kind: TransportKind::Malformed,
                    detail: format!("answer larger than {limit} bytes"),
                });
            }
            if one.is_empty() && buf.is_empty() {
                one = d;
            } else {
                if !one.is_empty() {
                    buf.extend_from_slice(&std::mem::take(&mut one));
                }
                buf.extend_from_slice(&d);
            }
        }
        deadline = tokio::time::Instant::now() + idle;
    }
}

/// What an attempt's 2xx answer must be to be the API's answer (anything else fails over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// One JSON object, read whole.
    Json,
    /// An event stream, relayed from its first chunk.
    Events,
    /// Whatever the upstream sends (a relayed path the gateway does not read): an event
    /// stream is relayed as one, anything else is read whole.
    Any,
}

impl Expect {
    pub(super) fn stream(stream: bool) -> Expect {
        if stream {
            Expect::Events
        } else {
            Expect::Json
        }
    }
}

pub(super) async fn attempt(app: &App, t: &Target, req: Request<Bytes>, expect: Expect) -> Result<Answer, GateError> {
    let to = t.provider.timeouts;
    let label = &*t.label;
    let deadline = tokio::time::Instant::now() + to.first_byte;
    let first_byte_timeout =
        || GateError::Timeout { target: label.into(), what: "first byte", ms: to.first_byte.as_millis() };
    let resp = match timeout_at(deadline, app.client.request(req)).await {
        Err(_) => return Err(first_byte_timeout()),
        Ok(Err(e)) => return Err(transport(label, &e)),
        Ok(Ok(r)) => r,
    };
    let (parts, mut body) = resp.into_parts();
    if !parts.status.is_success() {
        let err_deadline = tokio::time::Instant::now() + to.idle.min(Duration::from_secs(30));
        let bytes = read_all(&mut body, err_deadline, to.idle, MAX_ERROR_BODY, label).await.unwrap_or_default();
        return Err(GateError::Upstream {
            target: label.into(),
            status: parts.status,
            headers: Box::new(parts.headers),
            body: bytes,
        });
    }
    let bad = |detail: String| GateError::Transport { target: label.into(), kind: TransportKind::Malformed, detail };
    let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    let is = |t: &str| essence.eq_ignore_ascii_case(t);
    let stream = match expect {
        Expect::Json => false,
        Expect::Events => true,
        Expect::Any => is("text/event-stream"),
    };
    if !stream {
        if expect == Expect::Json && (is("text/event-stream") || is("text/html")) {
            return Err(bad(format!("a {essence} answer where JSON was asked for")));
        }
        let body = read_all(&mut body, deadline, to.idle, MAX_WHOLE_BODY, label).await.map_err(|e| match e {
            GateError::Timeout { what: "first byte", .. } => first_byte_timeout(),
            e => e,
        })?;
        // A 2xx that is not a JSON object is not the API's answer: another target may do better.
        // Its first byte tells; the observer that reads the answer next parses the rest once.
        if expect == Expect::Json && body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
            return Err(bad(format!("the answer is not a JSON object: {shown:?}")));
        }
        return Ok(Answer::Whole { parts, body });
    }
    if !(essence.is_empty() || is("text/event-stream")) {
        return Err(bad(format!("a {essence} answer where an event stream was asked for")));
    }
    loop {
        match timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(first_byte_timeout()),
            Ok(None) => {
                return Err(GateError::Transport {
                    target: label.into(),
                    kind: TransportKind::Reset,
                    detail: "stream closed before its first byte".into(),
                })
            }
            Ok(Some(Err(e))) => return Err(transport(label, &e)),
            Ok(Some(Ok(f))) => {
                if let Ok(first) = f.into_data() {
                    if !first.is_empty() {
                        if !looks_like_sse(&first) {
                            let shown = String::from_utf8_lossy(&first[..first.len().min(80)]).into_owned();
                            return Err(bad(format!("the stream does not start with an event: {shown:?}")));
                        }
                        return Ok(Answer::Stream { parts, first, body });
                    }
                }
            }
        }
    }
}

/// An event stream starts with a field line (`data:`, `event:`, `id:`, `retry:`), a comment
/// (`:`) or a blank line; HTML, JSON and garbage do not.
fn looks_like_sse(first: &[u8]) -> bool {
    let t = first.strip_prefix(b"\xef\xbb\xbf").unwrap_or(first);
    let t = &t[t.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(t.len())..];
    match t.first() {
        None | Some(b':' | b'\n' | b'\r') => true,
        _ => {
            const FIELDS: [&[u8]; 4] = [b"data", b"event", b"id", b"retry"];
            match t.iter().position(|b| matches!(b, b':' | b'\n' | b'\r')) {
                Some(end) => FIELDS.contains(&&t[..end]),
                // The read ended inside the first field name.
                None => FIELDS.iter().any(|f| f.starts_with(t)),
            }
        }
    }
}

/// The connection's socket to a Responses provider, when this streamed turn can go over it.
fn api_socket<'a>(
    t: &Target,
    inb: &'a Inbound,
    plan: &Plan,
) -> Option<(&'a Arc<super::socket::TurnSocket>, &'a super::socket::WsTurn)> {
    let turn = inb.ws.as_ref()?;
    let on = t.provider.kind == crate::config::ProviderKind::Responses
        && t.provider.websocket
        && plan.upstream == Api::Responses
        && plan.streams(inb);
    Some((turn.api.as_ref().filter(|_| on)?, turn))
}

/// Serve `inb` over the targets of `resolved`.
pub async fn relay(app: &Arc<App>, mut tally: Tally, mut inb: Inbound, resolved: Arc<Resolved>) -> Response {
    tally.set_route(&resolved.route, &inb.head.model, inb.head.stream);
    let mut last: Option<GateError> = None;
    let n = resolved.targets.len();
    // A later request of a turn goes where the turn's first one was served, if the route has it.
    let pinned = inb.turn.as_ref().and_then(|s| resolved.targets.iter().position(|t| *t.label == *s.target));
    let order = pinned.into_iter().chain((0..n).filter(|j| Some(*j) != pinned));
    for (i, t) in order.map(|j| &resolved.targets[j]).enumerate() {
        tally.set_target(&t.label);
        tally.attempt(match (i, n, &last) {
            (0, _, _) if pinned.is_some() => "pinned by the turn state (x-codex-turn-state)".into(),
            (0, 1, _) => "the route's only target".into(),
            (0, _, _) => format!("first of the route's {n} targets").into(),
            (_, _, Some(e)) => format!("failover: the previous target failed before answering ({})", e.code()).into(),
            _ => "next target".into(),
        });
        let result = if t.provider.kind == crate::config::ProviderKind::Chatgpt {
            super::chatgpt::serve(app, &mut tally, &mut inb, t).await
        } else {
            let (mut req, plan) = match build_request(app, t, &mut inb) {
                Ok(r) => r,
                Err(e) => return fail(tally, e),
            };
            if let Some(tp) = tally.traceparent() {
                req.headers_mut().insert("traceparent", tp);
            }
            let sent = Instant::now();
            let over_ws = match api_socket(t, &inb, &plan) {
                Some((socket, turn)) => socket.send(app, t, &t.provider.name, &req, turn.incremental.as_ref()).await,
                None => None,
            };
            let r = match over_ws {
                Some(r) => r,
                None => attempt(app, t, req, Expect::stream(plan.streams(&inb))).await,
            };
            tally.upstream_wait += sent.elapsed();
            r.map(|answer| (answer, plan))
        };
        match result {
            Ok((answer, plan)) => {
                tally.attempt_done(None);
                return commit(app, tally, &inb, plan, t, answer);
            }
            Err(e) => {
                tally.attempt_done(Some(&e.code()));
                let failover = e.retryable() && resolved.fallback && i + 1 < n;
                tracing::warn!(id = %tally.id(), target = %t.label, error = %e, failover, "upstream attempt failed");
                if !failover {
                    return fail(tally, e);
                }
                tally.attempt_failed(&e.code());
                app.metrics.failovers.fetch_add(1, Relaxed);
                last = Some(e);
            }
        }
    }
    fail(tally, last.unwrap_or_else(|| GateError::Internal("route has no targets".into())))
}

/// Answer with `e` and close the tally.
pub fn fail(mut tally: Tally, e: GateError) -> Response {
    let overhead = tally.commit();
    let status = e.status();
    tally.close(status.as_u16(), Some(e.code()), None);
    let mut resp = e.into_response();
    let target = tally.target().map(str::to_owned);
    gate_headers(resp.headers_mut(), &tally, overhead, target.as_deref());
    resp
}

pub(super) fn gate_headers(h: &mut HeaderMap, tally: &Tally, overhead: Duration, target: Option<&str>) {
    static OVERHEAD: HeaderName = HeaderName::from_static("x-codex-gate-overhead-ms");
    static REQUEST_ID: HeaderName = HeaderName::from_static("x-codex-gate-request-id");
    static TARGET: HeaderName = HeaderName::from_static("x-codex-gate-target");
    // Milliseconds with three decimals from integer microseconds: float formatting cost more
    // than the rest of this function.
    let us = overhead.as_micros();
    let mut ms = (us / 1000).to_string();
    ms.push('.');
    let frac = us % 1000;
    for d in [frac / 100, frac / 10 % 10, frac % 10] {
        ms.push(char::from(b'0' + d as u8));
    }
    if let Ok(v) = HeaderValue::from_str(&ms) {
        h.insert(OVERHEAD.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(tally.id()) {
        h.insert(REQUEST_ID.clone(), v);
    }
    if let Some(v) = target.and_then(|t| HeaderValue::from_str(t).ok()) {
        h.insert(TARGET.clone(), v);
    }
}

fn now_secs() -> u64 {
    (crate::now_ms() / 1000) as u64
}

/// The client's bytes for a whole (non-streaming) upstream answer, with its outcome and usage.
fn whole_answer(tally: &Tally, inb: &Inbound, plan: Plan, t: &Target, body: Bytes) -> (Bytes, Outcome, Option<Usage>) {
    let (outcome, usage) = match plan.upstream {
        Api::Responses => {
            let mut o = ResponsesObserver::default();
            o.observe_body(&body);
            (o.outcome, o.usage)
        }
        Api::Chat => {
            let mut o = ChatObserver::default();
            o.observe_body(&body);
            (o.outcome, o.usage)
        }
    };
    if plan.upstream == inb.api {
        return (body, outcome, usage);
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let out = match inb.api {
        Api::Responses => completion_to_response(
            &v,
            &format!("resp_{}", tally.id()),
            &inb.head.model,
            now_secs(),
            plan.tools.unwrap_or_default(),
            t.provider.dialect.recover_leaked_tool_calls,
        ),
        Api::Chat => response_to_completion(&v, &format!("chatcmpl-{}", tally.id()), &inb.head.model, now_secs()),
    };
    (Bytes::from(out.to_string()), outcome, usage)
}

fn commit(app: &Arc<App>, mut tally: Tally, inb: &Inbound, plan: Plan, t: &Target, answer: Answer) -> Response {
    if let (Some(kind), Answer::Whole { parts, body }) = (plan.compact, &answer) {
        return commit_compaction(app, tally, inb, kind, t, parts, body);
    }
    // Codex echoes the turn state on the turn's later requests; other clients would not. A
    // client WebSocket keeps it for its turn's later frames (routes/ws.rs), whoever the client.
    let turn_account = ((inb.codex_client || inb.ws.is_some()) && inb.api == Api::Responses)
        .then(|| tally.account.as_ref().map(|a| a.0.id.clone()));
    let turn_state = |h: &mut HeaderMap| {
        if let Some(account) = &turn_account {
            super::turn_state::answer(app.pool.cipher(), h, &t.label, account.as_deref());
        }
    };
    let overhead = tally.commit();
    let translated = plan.upstream != inb.api;
    let (parts, body) = match answer {
        Answer::Whole { parts, body } => {
            let (body, outcome, usage) = whole_answer(&tally, inb, plan, t, body);
            let error = (outcome != Outcome::Completed).then(|| outcome.error_code()).flatten();
            tally.close(parts.status.as_u16(), error, usage);
            (parts, Body::from(body))
        }
        Answer::Stream { parts, first, body } => {
            let opts = RelayOptions {
                upstream: plan.upstream,
                client: inb.api,
                idle: t.provider.timeouts.idle,
                keepalive: app.config.server.keepalive,
            };
            let translate = match (plan.upstream, inb.api) {
                (Api::Chat, Api::Responses) => {
                    let rounds = match (&plan.search, &app.config.web_search) {
                        (Some(_), Some(cfg)) => cfg.max_rounds,
                        _ => 0,
                    };
                    Translate::ChatToResponses(Box::new(
                        ChatToResponses::new(
                            format!("resp_{}", tally.id()),
                            inb.head.model.clone(),
                            now_secs(),
                            plan.tools.clone().unwrap_or_default(),
                            t.provider.dialect.recover_leaked_tool_calls,
                        )
                        .with_search_rounds(rounds),
                    ))
                }
                (Api::Responses, Api::Chat) => Translate::ResponsesToChat(Box::new(ResponsesToChat::new(
                    format!("chatcmpl-{}", tally.id()),
                    inb.head.model.clone(),
                    now_secs(),
                    inb.head.include_usage,
                ))),
                (Api::Responses, Api::Responses) => Translate::Repair(Box::new(
                    ResponsesRepair::new(inb.codex_client, format!("resp_{}", tally.id()))
                        .with_model_names(&t.model, &inb.head.model),
                )),
                (Api::Chat, Api::Chat) if plan.strip_usage => Translate::StripUsage,
                (Api::Chat, Api::Chat) => Translate::None,
            };
            let mut headers = HeaderMap::new();
            copy_headers(&parts.headers, &mut headers);
            served_model_header(&mut headers, &t.model, &inb.head.model);
            turn_state(&mut headers);
            if translated {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            gate_headers(&mut headers, &tally, overhead, Some(&t.label));
            let status = parts.status;
            let mut relay = RelayBody::new(opts, translate, first, body, tally, app.lifecycle.cut.clone());
            if let Some(chat) = plan.search {
                let (app, target, headers) = (app.clone(), t.clone(), inb.headers.clone());
                relay = relay.with_search(super::websearch::Searching { app, target, chat, headers });
            }
            let body = Body::new(relay);
            let mut resp = Response::new(body);
            *resp.status_mut() = status;
            *resp.headers_mut() = headers;
            return resp;
        }
    };
    // `attempt` only answers 2xx as an answer. A whole answer is always one JSON object, even
    // when it was collected from a stream (the pool's backend only streams).
    let mut resp = Response::new(body);
    *resp.status_mut() = parts.status;
    copy_headers(&parts.headers, resp.headers_mut());
    served_model_header(resp.headers_mut(), &t.model, &inb.head.model);
    turn_state(resp.headers_mut());
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    gate_headers(resp.headers_mut(), &tally, overhead, Some(&t.label));
    resp
}

/// An emulated compaction answered: the summary sealed into the one item Codex wants.
fn commit_compaction(
    app: &App,
    mut tally: Tally,
    inb: &Inbound,
    kind: Compact,
    t: &Target,
    parts: &http::response::Parts,
    completion: &Bytes,
) -> Response {
    let mut o = ChatObserver::default();
    o.observe_body(completion);
    let answer = super::compaction::answer(app.pool.cipher(), inb, kind, tally.id(), &t.label, completion);
    let (body, sse) = match answer {
        Ok(a) => a,
        Err(e) => return fail(tally, e),
    };
    let overhead = tally.commit();
    tally.close(parts.status.as_u16(), None, o.usage);
    tracing::info!(id = %tally.id(), target = %t.label, ?kind, "compaction emulated with a summary");
    let mut resp = Response::new(Body::from(body));
    let ct = if sse { "text/event-stream" } else { "application/json" };
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    gate_headers(resp.headers_mut(), &tally, overhead, Some(&t.label));
    resp
}

/// The upstream's `openai-model` in the client's name when it served the model it was asked for
/// (`asked`): Codex reads any other name as a safety reroute ([`served_model`]).
fn served_model_header(h: &mut HeaderMap, asked: &str, client: &str) {
    if asked == client {
        return;
    }
    for name in served_model::HEADERS {
        let Some(served) = h.get(name).and_then(|v| v.to_str().ok()) else { continue };
        if served_model::reported(served, asked, client) != served {
            if let Ok(v) = HeaderValue::from_str(client) {
                h.insert(name, v);
            }
        }
    }
}

pub(super) fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    if let Some(ct) = from.get(header::CONTENT_TYPE) {
        to.insert(header::CONTENT_TYPE, ct.clone());
    }
    for (k, v) in from {
        if is_relayed_response_header(k.as_str()) {
            to.append(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_are_told_from_other_answers() {
        for ok in
            [&b"data: {}\n\n"[..], b"event: response.created\ndata: {}", b": ping\n\n", b"\n", b"retry: 10\n", b"data"]
        {
            assert!(looks_like_sse(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [&b"<!doctype html><html>"[..], b"{\"error\":{}}", b"garbage", b"Data: x", b"datum: y\n"] {
            assert!(!looks_like_sse(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_served_model_header_names_the_clients_model_unless_the_upstream_chose_another() {
        let mut h = HeaderMap::new();
        h.insert("openai-model", HeaderValue::from_static("gpt-5.5"));
        h.insert("x-openai-model", HeaderValue::from_static("gpt-5.2"));
        served_model_header(&mut h, "gpt-5.5", "fast");
        assert_eq!((h["openai-model"].to_str().unwrap(), h["x-openai-model"].to_str().unwrap()), ("fast", "gpt-5.2"));
        let mut same = HeaderMap::new();
        same.insert("openai-model", HeaderValue::from_static("gpt-5.5"));
        served_model_header(&mut same, "gpt-5.5", "gpt-5.5");
        assert_eq!(same["openai-model"], "gpt-5.5");
    }

    #[test]
    fn header_policies() {
        for h in
            ["session-id", "session_id", "thread-id", "x-client-request-id", "x-codex-turn-state", "x-codex-window-id"]
        {
            assert!(is_continuity_header(h, true), "{h}");
        }
        for h in ["x-codex-turn-metadata", "x-codex-turn-state", "x-openai-subagent"] {
            assert!(!is_continuity_header(h, false), "{h} must not reach third parties");
        }
        assert!(is_continuity_header("session_id", false));
        for h in ["authorization", "cookie", "host", "content-length", "openai-organization"] {
            assert!(!is_continuity_header(h, true), "{h}");
        }
        assert!(is_relayed_response_header("x-codex-primary-used-percent"));
        for served in served_model::HEADERS {
            assert!(is_relayed_response_header(served), "{served}: Codex reads the served model there");
        }
        assert!(!is_relayed_response_header("set-cookie"));
    }
}
