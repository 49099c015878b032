//! Turns of a client's Responses WebSocket go over a WebSocket of their own to the upstream, as
//! Codex's do against OpenAI: for the pool, one socket to the ChatGPT backend per client
//! connection, opened by the account that serves its first pool turn; for Responses API
//! providers, one socket per connection to the provider serving it. A later turn that the client
//! sent as `previous_response_id` + new items goes upstream the same way, so the upstream keeps
//! the conversation (and its prompt cache) instead of receiving the whole history again. The
//! owner (account or provider) changes only at a turn boundary (its socket is closed and the next
//! one opens its own); an upstream that refuses the upgrade gets the connection's turns over
//! HTTP. Each turn's events become an event-stream body, so the relay (repair, usage, the request
//! log, quota) is the one HTTP answers go through. The upgrade is sent with hyper (the answer's
//! status, headers and body are the backend's word on a refusal, and its headers carry the
//! account's quota), then the socket is [`yawc`]'s, offering permessage-deflate.

use super::client::UpstreamBody;
use super::relay::Answer;
use crate::app::App;
use crate::egress::{ProxyChoice, TransportKind};
use crate::error::GateError;
use crate::routing::Target;
use bytes::Bytes;
use codex_gate_protocol::observe::ResponsesHead;
use futures_util::SinkExt;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use yawc::close::CloseCode;
use yawc::frame::{Frame, OpCode};
use yawc::{HttpStream, Role};

type Socket = yawc::WebSocket<HttpStream>;

/// The beta header Codex sends with its upgrade (codex-protocol §4).
const BETA: &str = "responses_websockets=2026-02-06";
/// Events of one turn buffered between the socket and a slow client.
const CHANNEL: usize = 64;
/// Largest message read from an upstream socket, and largest refusal body read back.
const MAX_MESSAGE: usize = 64 << 20;
const MAX_REFUSAL_BODY: usize = 1 << 20;
/// How long an upstream that refused the upgrade gets HTTP without being asked again.
const REFUSAL_MEMO: Duration = Duration::from_secs(10 * 60);

/// Upstreams (by URL) that answered the upgrade with "no WebSocket here", and when: every
/// connection's turns to them go over HTTP for [`REFUSAL_MEMO`], and then one upgrade is tried
/// again (an upstream may gain WebSocket). Keyed by URL, so one provider's refusal leaves the
/// others on their sockets; the URLs come from the config, so the map stays small.
#[derive(Default, Debug)]
pub struct Refusals(parking_lot::Mutex<HashMap<String, Instant>>);

impl Refusals {
    /// Checked on every socket turn: with no refusal on record (the usual case) it builds no key.
    fn refused(&self, uri: &http::Uri) -> bool {
        self.refused_at(uri, Instant::now())
    }

    fn remember(&self, uri: &http::Uri) {
        self.remember_at(uri, Instant::now());
    }

    // The clock is a parameter so the memo's expiry is tested without waiting ten minutes.
    fn refused_at(&self, uri: &http::Uri, now: Instant) -> bool {
        let m = self.0.lock();
        !m.is_empty() && m.get(&endpoint(uri)).is_some_and(|at| now.saturating_duration_since(*at) < REFUSAL_MEMO)
    }

    fn remember_at(&self, uri: &http::Uri, now: Instant) {
        let mut m = self.0.lock();
        m.retain(|_, at| now.saturating_duration_since(*at) < REFUSAL_MEMO);
        m.insert(endpoint(uri), now);
    }
}

/// An upstream URL without its query: what [`Refusals`] is keyed by.
fn endpoint(uri: &http::Uri) -> String {
    format!("{}://{}{}", uri.scheme_str().unwrap_or("http"), uri.authority().map_or("", |a| a.as_str()), uri.path())
}

/// The upstream side of one client WebSocket, for one kind of upstream.
#[derive(Default)]
pub struct TurnSocket {
    slot: Arc<tokio::sync::Mutex<Option<Session>>>,
    /// The account (or provider) whose socket is open (selection prefers it while it can serve).
    owner: parking_lot::Mutex<Option<String>>,
}

struct Session {
    owner: String,
    ws: Socket,
    /// The backend's id of the last turn completed on this socket.
    last: Option<String>,
    /// The upgrade answer's headers (the account's quota), for the first turn.
    handshake: Option<HeaderMap>,
}

/// A client WebSocket's turn as the HTTP path sees it (in the request's extensions).
#[derive(Clone)]
pub struct WsTurn {
    /// The socket to the ChatGPT backend, for pool turns (`[pool] websocket`).
    pub pool: Option<Arc<TurnSocket>>,
    /// The socket to a Responses API provider (its `websocket` setting).
    pub api: Option<Arc<TurnSocket>>,
    /// The client named its previous response (this id) and sent only the last `n` items.
    pub incremental: Option<(String, usize)>,
}

/// Why no upstream WebSocket serves a turn.
enum Opened {
    Yes(Box<Session>),
    /// The backend has no WebSocket here: use HTTP.
    NotOffered,
    Refused(GateError),
}

impl std::fmt::Debug for WsTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsTurn").field("incremental", &self.incremental).finish_non_exhaustive()
    }
}

impl TurnSocket {
    /// The account to keep while it can serve.
    pub fn account(&self) -> Option<String> {
        self.owner.lock().clone()
    }

    /// Send the turn `req` (the streamed HTTP request built for `owner`, an account or a
    /// provider) over the socket; `None`: this connection uses HTTP.
    pub(super) async fn send(
        &self,
        app: &Arc<App>,
        t: &Target,
        owner: &str,
        req: &http::Request<Bytes>,
        incremental: Option<&(String, usize)>,
    ) -> Option<Result<Answer, GateError>> {
        if app.ws_refusals.refused(req.uri()) {
            return None;
        }
        let mut slot = self.slot.clone().lock_owned().await;
        if slot.as_ref().is_some_and(|s| s.owner != owner) {
            // Another account (or provider) serves from here on: its own socket.
            if let Some(mut old) = slot.take() {
                let _ = old.ws.send(Frame::close(CloseCode::Normal, "")).await;
            }
        }
        let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(req.body()) else { return None };
        let input = match body.remove("input") {
            Some(Value::Array(items)) => items,
            _ => return None,
        };
        body.insert("type".into(), json!("response.create"));
        let mut incremental = incremental.cloned();
        for _ in 0..2 {
            if slot.is_none() {
                match open(app, t, owner, req).await {
                    Opened::Yes(s) => {
                        *self.owner.lock() = Some(owner.to_owned());
                        *slot = Some(*s);
                    }
                    Opened::NotOffered => {
                        tracing::info!(target = %t.label, "the upstream refused the WebSocket upgrade; turns to it go over HTTP for 10 minutes");
                        app.ws_refusals.remember(req.uri());
                        return None;
                    }
                    Opened::Refused(e) => return Some(Err(e)),
                }
            }
            let session = slot.as_mut()?;
            let prev = match (&incremental, &session.last) {
                (Some((id, n)), Some(last)) if id == last && *n <= input.len() => Some((id.as_str(), *n)),
                _ => None,
            };
            let items = prev.map_or(&input[..], |(_, n)| &input[input.len() - n..]);
            let frame = frame_text(&body, items, prev.map(|(id, _)| id));
            session.last = None;
            if session.ws.send(Frame::text(frame)).await.is_err() {
                *slot = None; // a socket the backend closed between turns: a new one, once
                continue;
            }
            let first = tokio::time::timeout(t.provider.timeouts.first_byte, next_text(&mut session.ws)).await;
            let first = match first {
                Err(_) => {
                    *slot = None;
                    let ms = t.provider.timeouts.first_byte.as_millis();
                    return Some(Err(GateError::Timeout { target: t.label.to_string(), what: "first byte", ms }));
                }
                Ok(None) => {
                    *slot = None;
                    continue;
                }
                Ok(Some(text)) => text,
            };
            let v: Value = serde_json::from_str(&first).unwrap_or(Value::Null);
            if v["type"] == "error" {
                if v.pointer("/error/code").and_then(Value::as_str) == Some("previous_response_not_found")
                    && prev.is_some()
                {
                    incremental = None; // the backend forgot it: the whole history, on this socket
                    continue;
                }
                return Some(Err(error_frame(t, &v)));
            }
            let mut parts = http::Response::new(()).into_parts().0;
            parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            if let Some(h) = session.handshake.take() {
                parts.headers.extend(
                    h.into_iter()
                        .filter_map(|(k, v)| k.map(|k| (k, v)))
                        .filter(|(k, _)| k.as_str().starts_with("x-codex-")),
                );
            }
            let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL);
            let first_sse = sse(&first);
            if let Some(id) = completed_id(&first) {
                session.last = Some(id);
            } else if !is_terminal(&first) {
                let idle = t.provider.timeouts.idle;
                tokio::spawn(read_turn(slot, tx, idle));
            }
            return Some(Ok(Answer::Stream { parts, first: first_sse, body: UpstreamBody::from_channel(rx) }));
        }
        Some(Err(GateError::Transport {
            target: t.label.to_string(),
            kind: TransportKind::Reset,
            detail: "the backend's WebSocket closed before answering".into(),
        }))
    }
}

/// The `response.create` frame: the body's fields, `items` as its input, and the previous
/// response when the backend holds the rest of the history.
fn frame_text(body: &Map<String, Value>, items: &[Value], prev: Option<&str>) -> String {
    #[derive(serde::Serialize)]
    struct Frame<'a> {
        #[serde(flatten)]
        body: &'a Map<String, Value>,
        input: &'a [Value],
        #[serde(skip_serializing_if = "Option::is_none")]
        previous_response_id: Option<&'a str>,
    }
    serde_json::to_string(&Frame { body, input: items, previous_response_id: prev }).unwrap_or_default()
}

/// Open a socket for `owner` from its HTTP request: its headers (token, account id, Codex's
/// identity, continuity) plus the beta header, through the request's proxy.
async fn open(app: &Arc<App>, t: &Target, owner: &str, http_req: &http::Request<Bytes>) -> Opened {
    let timeout = t.provider.timeouts.first_byte;
    match tokio::time::timeout(timeout, handshake(app, t, http_req)).await {
        Err(_) => Opened::Refused(GateError::Timeout {
            target: t.label.to_string(),
            what: "first byte",
            ms: timeout.as_millis(),
        }),
        Ok(Err(e)) => e,
        Ok(Ok((ws, headers))) => {
            if headers.contains_key(header::SEC_WEBSOCKET_EXTENSIONS) {
                app.metrics.ws_upstream_deflate.fetch_add(1, Relaxed);
            }
            Opened::Yes(Box::new(Session { owner: owner.to_owned(), ws, last: None, handshake: Some(headers) }))
        }
    }
}

/// The upgrade (RFC 6455 §4.1) over a connection of the gateway's client; the socket and the
/// answer's headers, or why there is none.
async fn handshake(app: &Arc<App>, t: &Target, http_req: &http::Request<Bytes>) -> Result<(Socket, HeaderMap), Opened> {
    let transport =
        |kind, detail: String| Opened::Refused(GateError::Transport { target: t.label.to_string(), kind, detail });
    let url = http_req.uri().clone();
    let choice = http_req.extensions().get::<ProxyChoice>().cloned();
    let io = app.client.websocket_io(&url, choice.as_ref()).await.map_err(|e| transport(e.kind, e.to_string()))?;
    let key = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
    };
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let mut req = http::Request::get(path).body(http_body_util::Empty::<Bytes>::new()).expect("a GET with a path");
    let h = req.headers_mut();
    for (k, v) in http_req.headers() {
        if !matches!(
            k.as_str(),
            "content-type" | "accept" | "content-length" | "content-encoding" | "transfer-encoding"
        ) {
            h.append(k.clone(), v.clone());
        }
    }
    if !h.contains_key(header::HOST) {
        if let Some(Ok(host)) = url.authority().map(|a| HeaderValue::from_str(a.as_str())) {
            h.insert(header::HOST, host);
        }
    }
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    h.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_str(&key).expect("base64 is a header value"));
    h.insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(crate::ws_options::OFFER));
    h.insert("openai-beta", HeaderValue::from_static(BETA));
    let reset = |e: hyper::Error| transport(TransportKind::Reset, format!("WebSocket handshake: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(reset)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut resp = sender.send_request(req).await.map_err(reset)?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refusal(t, resp).await);
    }
    let accepted = resp.headers().get(header::SEC_WEBSOCKET_ACCEPT).map(|v| v.as_bytes());
    if accepted != Some(accept_key(&key).as_bytes()) {
        return Err(transport(TransportKind::Reset, "the upgrade answer's Sec-WebSocket-Accept is wrong".into()));
    }
    let upgraded = hyper::upgrade::on(&mut resp).await.map_err(reset)?;
    let headers = std::mem::take(resp.headers_mut());
    let agreed = headers.get(header::SEC_WEBSOCKET_EXTENSIONS).and_then(|v| v.to_str().ok());
    let io = HttpStream::from(TokioIo::new(upgraded));
    let ws =
        yawc::WebSocket::from_stream_with_extensions(io, Role::Client, agreed, crate::ws_options::options(MAX_MESSAGE))
            .map_err(|e| transport(TransportKind::Reset, format!("WebSocket extensions {agreed:?}: {e}")))?;
    Ok((ws, headers))
}

/// A non-101 answer to the upgrade: "no WebSocket here" (use HTTP) or the backend's error.
async fn refusal(t: &Target, resp: http::Response<hyper::body::Incoming>) -> Opened {
    let pool = t.provider.kind == crate::config::ProviderKind::Chatgpt;
    match resp.status().as_u16() {
        404 | 405 | 426 | 501 => Opened::NotOffered,
        // An API provider without WebSocket answers the upgrade the way it answers any
        // unknown request; only a refused key, a limit or an outage is an error of the turn.
        s if !pool && !matches!(s, 401 | 403 | 429 | 500..=599) => Opened::NotOffered,
        _ => {
            let (parts, body) = resp.into_parts();
            let body = http_body_util::Limited::new(body, MAX_REFUSAL_BODY).collect().await;
            Opened::Refused(GateError::Upstream {
                target: t.label.to_string(),
                status: parts.status,
                headers: Box::new(parts.headers),
                body: body.map(|b| b.to_bytes()).unwrap_or_default(),
            })
        }
    }
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2).
fn accept_key(key: &str) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The next text frame (pings are answered by the library); `None` when the socket ends.
async fn next_text(ws: &mut Socket) -> Option<String> {
    loop {
        let frame = ws.next_frame().await.ok()?;
        match frame.opcode() {
            OpCode::Text => return String::from_utf8(frame.into_payload().into()).ok(),
            OpCode::Close => return None,
            _ => continue,
        }
    }
}

/// A turn's error frame as the HTTP answer the backend would have given, so the pool treats it
/// the same way (a usage limit cools the account down, and so on).
fn error_frame(t: &Target, v: &Value) -> GateError {
    let status = v.get("status").or_else(|| v.get("status_code")).and_then(Value::as_u64).unwrap_or(500);
    let mut headers = HeaderMap::new();
    for (k, val) in v.get("headers").and_then(Value::as_object).into_iter().flatten() {
        if let (Ok(k), Some(Ok(val))) =
            (http::HeaderName::from_bytes(k.as_bytes()), val.as_str().map(HeaderValue::from_str))
        {
            headers.insert(k, val);
        }
    }
    GateError::Upstream {
        target: t.label.to_string(),
        status: StatusCode::from_u16(status as u16).unwrap_or(StatusCode::BAD_GATEWAY),
        headers: Box::new(headers),
        body: Bytes::from(json!({"error": v.get("error").cloned().unwrap_or(Value::Null)}).to_string()),
    }
}

fn sse(data: &str) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 64);
    let kind = ResponsesHead::parse(data).map(|h| h.kind.into_owned());
    codex_gate_protocol::sse::encode(kind.as_deref(), data, &mut out);
    Bytes::from(out)
}

fn is_terminal(data: &str) -> bool {
    ResponsesHead::parse(data).is_some_and(|h| {
        matches!(h.kind.as_ref(), "response.completed" | "response.failed" | "response.incomplete" | "error")
    })
}

fn completed_id(data: &str) -> Option<String> {
    if ResponsesHead::parse(data)?.kind != "response.completed" {
        return None;
    }
    let v: Value = serde_json::from_str(data).ok()?;
    v.pointer("/response/id").and_then(Value::as_str).map(str::to_owned)
}

/// Read the rest of a turn off the socket into the body's channel. The socket stays locked
/// until the turn's terminal event, so the next turn starts on a clean socket; a client that
/// went away does not stop the reading (the backend finishes the turn either way).
async fn read_turn(
    mut slot: tokio::sync::OwnedMutexGuard<Option<Session>>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    idle: std::time::Duration,
) {
    let mut tx = Some(tx);
    loop {
        let Some(session) = slot.as_mut() else { return };
        let text = match tokio::time::timeout(idle, next_text(&mut session.ws)).await {
            Ok(Some(t)) => t,
            // Closed, broken or silent too long: the socket is done; the body ends without
            // its terminal event and the relay says so to the client.
            _ => {
                *slot = None;
                return;
            }
        };
        if let Some(id) = completed_id(&text) {
            session.last = Some(id);
        }
        let end = is_terminal(&text);
        if let Some(t) = &tx {
            if t.send(sse(&text)).await.is_err() {
                tx = None;
            }
        }
        if end {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_body_and_only_what_the_backend_lacks() {
        let mut body = Map::new();
        body.insert("type".into(), json!("response.create"));
        body.insert("model".into(), json!("gpt-5.5"));
        let items = [json!({"type": "message", "role": "user", "content": "hi"})];
        let v: Value = serde_json::from_str(&frame_text(&body, &items, Some("resp_1"))).unwrap();
        assert_eq!(
            v,
            json!({"type": "response.create", "model": "gpt-5.5", "input": items, "previous_response_id": "resp_1"})
        );
        let v: Value = serde_json::from_str(&frame_text(&body, &[], None)).unwrap();
        assert!(v.get("previous_response_id").is_none() && v["input"] == json!([]));
    }

    #[test]
    fn a_refused_upgrade_is_remembered_for_ten_minutes_per_upstream_then_tried_again() {
        let r = Refusals::default();
        let a: http::Uri = "http://a.test/v1/responses?client=1".parse().unwrap();
        let a_other_query: http::Uri = "http://a.test/v1/responses".parse().unwrap();
        let b: http::Uri = "http://b.test/v1/responses".parse().unwrap();
        let t0 = Instant::now();
        r.remember_at(&a, t0);
        assert!(r.refused_at(&a_other_query, t0 + REFUSAL_MEMO - Duration::from_secs(1)), "keyed without the query");
        assert!(!r.refused_at(&b, t0), "another upstream keeps its socket");
        assert!(!r.refused_at(&a, t0 + REFUSAL_MEMO), "after the memo the upgrade is tried again");
        // An expired refusal is dropped when the next is remembered: the map does not grow.
        r.remember_at(&b, t0 + REFUSAL_MEMO);
        assert_eq!(r.0.lock().keys().cloned().collect::<Vec<_>>(), ["http://b.test/v1/responses"]);
    }

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // The worked example of RFC 6455 §1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn error_frames_become_the_backends_http_errors() {
        let t = Target {
            provider: Arc::new(crate::config::Config::from_toml_str("", None, &|_| None).unwrap().providers[0].clone()),
            model: "m".into(),
            label: "pool/m".into(),
        };
        let v = json!({"type": "error", "status": 429, "error": {"type": "usage_limit_reached", "resets_at": 5},
                       "headers": {"x-codex-primary-used-percent": "100.0"}});
        match error_frame(&t, &v) {
            GateError::Upstream { status, headers, body, .. } => {
                assert_eq!(status, 429);
                assert_eq!(headers["x-codex-primary-used-percent"], "100.0");
                assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["error"]["resets_at"], 5);
            }
            other => panic!("{other:?}"),
        }
        assert!(is_terminal(r#"{"type":"response.completed","response":{"id":"r"}}"#));
        assert_eq!(completed_id(r#"{"type":"response.completed","response":{"id":"r"}}"#).as_deref(), Some("r"));
        assert!(!is_terminal(r#"{"type":"response.output_text.delta","delta":"x"}"#));
    }
}
