//! `GET /v1/responses` (and its aliases) with `Upgrade: websocket`: Codex's Responses WebSocket
//! transport (codex-protocol §4), terminated here. Each `response.create` frame is one turn,
//! served by the same path as `POST /v1/responses` — keys, limits, routing, failover, the request
//! log, metrics — and its events go back as text frames, one JSON event each. The connection keeps
//! the last response's full input and output, so `previous_response_id` plus only the new items
//! becomes the whole history for whatever upstream serves the turn. Pool accounts and Responses
//! API providers that offer it are reached over a WebSocket of the connection's own
//! ([`crate::upstream::socket`]), which sends the upstream only the new items; chat providers
//! and providers without WebSocket get one HTTP request per turn. permessage-deflate is
//! negotiated when the client offers it (Codex does), with the settings of [`crate::ws_options`].
//! A Codex turn's later frames (tool follow-ups, retries) carry the turn state its first answer
//! made, as Codex's HTTP requests echo `x-codex-turn-state`: the connection keeps it ([`Pin`]).
//! What a connection remembers between frames lives in [`super::ws_session`].

use super::ws_session::{body_with_input, frame_turn_id, is_user_message, join_arrays, Last, Pin, Session};
use crate::access::Caller;
use crate::app::App;
use crate::error::GateError;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use codex_gate_protocol::observe::ResponsesHead;
use codex_gate_protocol::sse::SseDecoder;
use codex_gate_protocol::Api;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use yawc::close::CloseCode;
use yawc::frame::{Frame, OpCode};
use yawc::{HttpStream, IncomingUpgrade};

type WebSocket = yawc::WebSocket<HttpStream>;

/// Codex's backend closes a connection after 60 minutes with this code, and Codex reconnects.
const MAX_AGE: Duration = Duration::from_secs(60 * 60);
const LIMIT_REACHED: &str = "websocket_connection_limit_reached";
/// A connection with no frame from the client for this long is closed.
const IDLE: Duration = Duration::from_secs(30 * 60);
/// Pings between turns keep NATs and proxies from dropping a quiet connection.
const PING_EVERY: Duration = Duration::from_secs(30);
/// Largest error body read back from a refused turn.
const MAX_ERROR_BODY: usize = 1 << 20;

fn is_upgrade(h: &HeaderMap) -> bool {
    h.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Headers a turn is sent with: the upgrade request's, less the handshake's own.
fn turn_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in h {
        let n = k.as_str();
        if n.starts_with("sec-websocket-")
            || matches!(n, "connection" | "upgrade" | "content-length" | "transfer-encoding" | "content-encoding")
        {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out.insert(header::ACCEPT, HeaderValue::from_static("text/event-stream"));
    out
}

pub async fn responses(State(app): State<Arc<App>>, req: Request) -> Response {
    if !is_upgrade(req.headers()) {
        return super::ops::responses_get().await;
    }
    let (mut parts, _) = req.into_parts();
    // Only an offer the gateway can honour reaches the library (which would accept any).
    let offer = parts.headers.get(header::SEC_WEBSOCKET_EXTENSIONS).and_then(|v| v.to_str().ok());
    match offer.and_then(crate::ws_options::acceptable_offer).map(HeaderValue::from_str) {
        Some(Ok(one)) => drop(parts.headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, one)),
        _ => drop(parts.headers.remove(header::SEC_WEBSOCKET_EXTENSIONS)),
    }
    let limit = app.config.server.max_body_bytes;
    let upgraded = match IncomingUpgrade::from_request_parts(&mut parts, &app).await {
        Ok(ws) => ws.upgrade(crate::ws_options::options(limit)),
        Err(_) => {
            let e = "bad WebSocket handshake: it needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13 over HTTP/1.1";
            return GateError::bad_request(e, None).into_response();
        }
    };
    let (answer, socket) = match upgraded {
        Ok(up) => up,
        Err(e) => return GateError::bad_request(format!("bad WebSocket handshake: {e}"), None).into_response(),
    };
    if answer.headers().contains_key(header::SEC_WEBSOCKET_EXTENSIONS) {
        app.metrics.ws_deflate.fetch_add(1, Relaxed);
    }
    // Codex compares this with the ETag of the `/models` it stored and refetches on a change
    // (codex-protocol §4); the other headers it reads here name an upstream, and there is none yet.
    let (mut answer_parts, _) = answer.into_parts();
    let key = parts.extensions.get::<Caller>().and_then(|c| c.key().cloned());
    if let Ok(etag) = HeaderValue::from_str(&super::models::codex_catalog(&app, key.as_ref()).etag) {
        answer_parts.headers.insert("x-models-etag", etag);
    }
    let pool_ws = (app.config.pool.websocket && app.router.pool_provider().is_some()).then(Arc::default);
    let api_ws = app
        .config
        .providers
        .iter()
        .any(|p| p.websocket && p.kind == crate::config::ProviderKind::Responses)
        .then(Arc::default);
    let conn = Conn {
        pool_ws,
        api_ws,
        path: parts.uri.path().to_owned(),
        headers: turn_headers(&parts.headers),
        caller: parts.extensions.get::<Caller>().cloned(),
        limit,
        app,
    };
    tokio::spawn(async move {
        match socket.await {
            Ok(ws) => conn.run(ws).await,
            Err(e) => tracing::debug!(error = %e, "the WebSocket upgrade did not complete"),
        }
    });
    Response::from_parts(answer_parts, Body::empty())
}

struct Conn {
    app: Arc<App>,
    /// The connection's own socket to the ChatGPT backend, for its pool turns.
    pool_ws: Option<Arc<crate::upstream::socket::TurnSocket>>,
    /// The connection's own socket to the Responses API provider serving its turns.
    api_ws: Option<Arc<crate::upstream::socket::TurnSocket>>,
    path: String,
    headers: HeaderMap,
    caller: Option<Caller>,
    limit: usize,
}

/// The client went away (or the socket failed): stop serving the connection.
struct Gone;

async fn send(socket: &mut WebSocket, v: &Value) -> Result<(), Gone> {
    socket.send(Frame::text(v.to_string())).await.map_err(|_| Gone)
}

/// An error as Codex reads it on this transport: `{"type":"error","status",…,"error",…,"headers"}`.
async fn send_error(
    socket: &mut WebSocket,
    status: u16,
    error: Value,
    headers: Map<String, Value>,
) -> Result<(), Gone> {
    send(socket, &json!({"type": "error", "status": status, "error": error, "headers": headers})).await
}

fn invalid(code: &str, message: &str) -> Value {
    json!({"type": "invalid_request_error", "code": code, "message": message})
}

impl Conn {
    async fn run(self, mut socket: WebSocket) {
        let metrics = self.app.metrics.clone();
        metrics.ws_open.fetch_add(1, Relaxed);
        let opened = Instant::now();
        let stopping = self.app.lifecycle.stopping.clone();
        let mut session = Session::default();
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut idle_at = Instant::now() + IDLE;
        loop {
            let msg = tokio::select! {
                m = socket.next_frame() => m,
                _ = ping.tick() => {
                    if socket.send(Frame::ping(Bytes::new())).await.is_err() { break }
                    continue;
                }
                () = tokio::time::sleep_until(idle_at) => {
                    let _ = socket.send(Frame::close(CloseCode::Normal, "idle")).await;
                    break;
                }
                () = stopping.cancelled() => {
                    let _ = socket.send(Frame::close(CloseCode::Away, "the gateway is shutting down")).await;
                    break;
                }
            };
            // A broken or closed socket ends the connection (the library answers a close).
            let Ok(msg) = msg else { break };
            // Only the client's own frames count as activity: its pongs answer our pings.
            if matches!(msg.opcode(), OpCode::Text | OpCode::Binary) {
                idle_at = Instant::now() + IDLE;
            }
            let served = match msg.opcode() {
                OpCode::Text => {
                    // The library checked the text is UTF-8 (`with_utf8`); a frame that is not
                    // never reaches here.
                    let Ok(text) = std::str::from_utf8(msg.payload()) else { break };
                    if opened.elapsed() >= MAX_AGE {
                        // What Codex's backend does at 60 minutes; Codex reconnects and resends.
                        let e = invalid(LIMIT_REACHED, "Responses websocket connection limit reached (60 minutes). Create a new websocket connection to continue.");
                        let _ = send_error(&mut socket, 400, e, Map::new()).await;
                        let _ = socket.send(Frame::close(CloseCode::Normal, "connection limit reached")).await;
                        break;
                    }
                    self.frame(&mut socket, text, &mut session).await
                }
                OpCode::Binary => {
                    send_error(
                        &mut socket,
                        400,
                        invalid("binary_frame", "send response.create as a text frame"),
                        Map::new(),
                    )
                    .await
                }
                OpCode::Close => break,
                OpCode::Ping | OpCode::Pong | OpCode::Continuation => Ok(()),
            };
            if served.is_err() {
                break;
            }
        }
        metrics.ws_open.fetch_sub(1, Relaxed);
    }

    /// One client frame: a `response.create` is a turn; other frames (`response.processed`) need
    /// no answer.
    async fn frame(&self, socket: &mut WebSocket, text: &str, session: &mut Session) -> Result<(), Gone> {
        let mut v: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return send_error(socket, 400, invalid("invalid_json", "a frame must be a JSON object"), Map::new())
                    .await
            }
            Err(e) => {
                return send_error(socket, 400, invalid("invalid_json", &format!("invalid JSON: {e}")), Map::new())
                    .await
            }
        };
        let obj = v.as_object_mut().expect("checked above");
        if obj.get("type").and_then(Value::as_str) != Some("response.create") {
            tracing::debug!(kind = ?obj.get("type"), "WebSocket frame that needs no answer");
            return Ok(());
        }
        obj.remove("type");
        // Whatever this frame comes to, the connection's last response is used up: a later
        // frame can build only on this one's.
        let prior = session.last.take();
        let turn_id = frame_turn_id(obj);
        let new_items = match obj.remove("input") {
            Some(Value::Array(items)) => items,
            Some(Value::String(s)) => {
                vec![json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": s}]})]
            }
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return send_error(
                    socket,
                    400,
                    invalid("invalid_type", "'input' must be a string or an array of items"),
                    Map::new(),
                )
                .await;
            }
        };
        // `previous_response_id` names the last response on this connection: its input and
        // output come first, then the new items (what an HTTP request would have carried).
        let new_json = serde_json::to_string(&new_items).unwrap_or_else(|_| "[]".into());
        let new_user_message = new_items.iter().any(is_user_message);
        let mut incremental = None;
        let input = match obj.remove("previous_response_id") {
            Some(Value::String(prev)) => match prior {
                Some(l) if l.id == prev => {
                    self.app.metrics.ws_incremental.fetch_add(1, Relaxed);
                    incremental = Some((prev, new_items.len()));
                    let output = serde_json::to_string(&l.output).unwrap_or_else(|_| "[]".into());
                    join_arrays(&[&l.input, &output, &new_json])
                }
                _ => {
                    let e = invalid(
                        "previous_response_not_found",
                        &format!("no response {prev} on this connection; send the whole input"),
                    );
                    return send_error(socket, 400, e, Map::new()).await;
                }
            },
            _ => new_json,
        };
        if obj.remove("generate") == Some(Value::Bool(false)) {
            // A prewarm: nothing to generate, so no upstream is asked; the next request builds on it.
            // Codex sends it as a turn starts, so the last turn's pin ends here.
            self.app.metrics.ws_prewarms.fetch_add(1, Relaxed);
            session.pin = None;
            let id = format!("resp_{}", crate::tally::request_id().trim_start_matches("req_"));
            let model = obj.get("model").cloned().unwrap_or(Value::Null);
            let r = json!({"id": id, "object": "response", "created_at": crate::now_ms() / 1000, "model": model, "output": []});
            send(socket, &json!({"type": "response.created", "response": r_with(&r, "in_progress")})).await?;
            let mut done = r_with(&r, "completed");
            done["usage"] = json!({"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
                                   "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0});
            send(socket, &json!({"type": "response.completed", "response": done})).await?;
            session.last = Some(Last { id, input, output: Vec::new() });
            return Ok(());
        }
        obj.insert("stream".into(), Value::Bool(true));
        let body = body_with_input(obj, &input);
        self.app.metrics.ws_turns.fetch_add(1, Relaxed);
        let follow_up = incremental.is_some() && !new_user_message;
        let pinned = session.pin.as_ref().filter(|p| p.holds(turn_id.as_deref(), follow_up)).map(|p| p.state.clone());
        let Some(served) = self.turn(socket, body, incremental, pinned).await? else {
            // A failed request leaves the turn's pin as it was: its retry goes where the turn went.
            return Ok(());
        };
        if let Some(state) = served.state {
            session.pin = Some(Pin { turn_id, state });
        }
        session.last = Some(Last { id: served.id, input, output: served.output });
        Ok(())
    }

    /// Serve one turn through the HTTP path (with the turn state `pinned`, if it goes on a
    /// served turn) and relay its events; what it served when it completed.
    async fn turn(
        &self,
        socket: &mut WebSocket,
        body: Vec<u8>,
        incremental: Option<(String, usize)>,
        pinned: Option<HeaderValue>,
    ) -> Result<Option<Served>, Gone> {
        let mut req = Request::new(Body::from(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.path.parse().unwrap_or_else(|_| http::Uri::from_static("/v1/responses"));
        *req.headers_mut() = self.headers.clone();
        if let Some(state) = pinned {
            req.headers_mut().insert(TURN_STATE, state);
        }
        if let Some(c) = &self.caller {
            req.extensions_mut().insert(c.clone());
        }
        let (pool, api) = (self.pool_ws.clone(), self.api_ws.clone());
        req.extensions_mut().insert(crate::upstream::socket::WsTurn { pool, api, incremental });
        let resp = super::proxy::proxy(self.app.clone(), Api::Responses, false, req).await;
        let (parts, body) = resp.into_parts();
        if !parts.status.is_success() {
            let bytes = http_body_util::Limited::new(body, MAX_ERROR_BODY).collect().await.map(|b| b.to_bytes());
            let v: Value = bytes.ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
            let error =
                v.get("error").cloned().unwrap_or_else(|| json!({"message": "the upstream refused the request"}));
            let mut headers = Map::new();
            for (k, val) in &parts.headers {
                let n = k.as_str();
                if n == "retry-after" || n.starts_with("x-codex-") || n.starts_with("x-ratelimit-") {
                    if let Ok(s) = val.to_str() {
                        headers.insert(n.to_owned(), json!(s));
                    }
                }
            }
            send_error(socket, parts.status.as_u16(), error, headers).await?;
            return Ok(None);
        }
        // Over HTTP Codex learns the served model from `openai-model`; on a WebSocket it reads
        // it from an event's `headers`, so an answer that came with the header (an upstream
        // reached over HTTP) passes it on in a `response.metadata` event after the first one.
        let mut served_model = served_model_event(&parts.headers);
        let mut decoder = SseDecoder::new(self.limit);
        let mut events = Vec::new();
        let mut stream = body.into_data_stream();
        let (mut id, mut output, mut completed) = (String::new(), Vec::new(), false);
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            if decoder.push(&chunk, &mut events).is_err() {
                break;
            }
            for ev in events.drain(..) {
                if let Some(head) = ResponsesHead::parse(&ev.data) {
                    match head.kind.as_ref() {
                        "response.output_item.done" => {
                            if let Some(item) = serde_json::from_str::<Value>(&ev.data)
                                .ok()
                                .and_then(|mut v| v.get_mut("item").map(Value::take))
                            {
                                output.push(item);
                            }
                        }
                        "response.completed" => {
                            completed = true;
                            id = serde_json::from_str::<Value>(&ev.data)
                                .ok()
                                .and_then(|v| v.pointer("/response/id").and_then(Value::as_str).map(str::to_owned))
                                .unwrap_or_default();
                        }
                        _ => {}
                    }
                } else if ev.data.trim() == "[DONE]" {
                    continue;
                }
                // Queued, and written once per upstream chunk: one write for the events that
                // arrived together, as the HTTP relay does.
                socket.feed(Frame::text(ev.data)).await.map_err(|_| Gone)?;
                if let Some(meta) = served_model.take() {
                    socket.feed(Frame::text(meta)).await.map_err(|_| Gone)?;
                }
            }
            socket.flush().await.map_err(|_| Gone)?;
        }
        let state = parts.headers.get(TURN_STATE).cloned();
        Ok(completed.then_some(Served { id, output, state }))
    }
}

const TURN_STATE: &str = crate::upstream::turn_state::HEADER;

/// `{"type":"response.metadata","headers":{…}}` with the answer's served-model headers, if any.
fn served_model_event(h: &HeaderMap) -> Option<String> {
    let headers: Map<String, Value> = codex_gate_protocol::served_model::HEADERS
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), json!(h.get(*name)?.to_str().ok()?))))
        .collect();
    (!headers.is_empty()).then(|| json!({"type": "response.metadata", "headers": headers}).to_string())
}

/// A completed turn: its response id and output items, and the turn state its answer made.
struct Served {
    id: String,
    output: Vec<Value>,
    state: Option<HeaderValue>,
}

fn r_with(r: &Value, status: &str) -> Value {
    let mut r = r.clone();
    r["status"] = json!(status);
    r
}
