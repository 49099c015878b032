//! The ChatGPT backend's Responses WebSocket (`GET …/codex/responses` with `Upgrade: websocket`)
//! and, when offered, the API's (`GET /v1/responses`, any bearer key):
//! the account's token at the handshake, then one `response.create` frame per turn and the
//! turn's events back as text frames. `previous_response_id` must name the connection's last
//! response (the backend keeps it, so the frame carries only new items); an account whose
//! behaviour is `usage-limit` gets the error frame the backend sends; a turn ending in
//! `compaction_trigger` gets the compaction item the way the HTTP backend streams it. Each frame
//! is recorded as a request with method `WS`.

use crate::render::compaction_events;
use crate::server::{full, memfind, responses_steps, MockBody, RecordedRequest, Shared, Step};
use crate::Scenario;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub(crate) fn upgrade(s: Arc<Shared>, mut req: Request<Incoming>, api: bool) -> Response<MockBody> {
    let h = |k: &str| req.headers().get(k).and_then(|v| v.to_str().ok());
    let account = match s.chatgpt.check(h("authorization"), h("chatgpt-account-id")) {
        _ if api && h("authorization").is_some_and(|a| a.starts_with("Bearer ")) => "api".to_owned(),
        crate::chatgpt::Auth::Ok { account, .. } if !api => account,
        _ => {
            return full(
                StatusCode::UNAUTHORIZED,
                &crate::render::error_body("invalid_request_error", "token_invalidated", "bad token"),
            )
        }
    };
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| derive_accept_key(k.as_bytes())) else {
        return full(StatusCode::BAD_REQUEST, &json!({"error": "no sec-websocket-key"}));
    };
    let headers = req.headers().clone();
    let path = req.uri().path().to_owned();
    let on = hyper::upgrade::on(&mut req);
    let shared = s.clone();
    let who = account.clone();
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await;
        serve(shared, who, path, headers, ws).await;
    });
    let used = s.chatgpt.accounts.lock().get(&account).map_or(0.0, |a| a.usage_primary);
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header("sec-websocket-accept", key)
        .header("x-codex-primary-used-percent", used.to_string())
        .header("x-codex-primary-window-minutes", "300")
        .header("x-codex-primary-reset-at", "1900000000")
        .body(http_body_util::Empty::new().map_err(|e| match e {}).boxed())
        .unwrap()
}

/// The `data` of each event in a rendered SSE answer.
fn events(steps: &[Step]) -> Vec<Value> {
    let mut out = Vec::new();
    for st in steps {
        if let Step::Send(b) = st {
            for line in String::from_utf8_lossy(b).lines() {
                if let Some(d) = line.strip_prefix("data: ") {
                    if let Ok(v) = serde_json::from_str::<Value>(d) {
                        out.push(v);
                    }
                }
            }
        }
    }
    out
}

async fn serve<S>(s: Arc<Shared>, account: String, path: String, headers: HeaderMap, mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut last: Option<String> = None;
    let mut n = 0usize;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        s.hits.fetch_add(1, Ordering::Relaxed);
        let body = bytes::Bytes::from(text.as_str().to_owned());
        s.record(RecordedRequest {
            method: "WS".into(),
            path: path.clone(),
            headers: headers.clone(),
            body: body.clone(),
        });
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if v["type"] != "response.create" {
            continue;
        }
        let behavior = s.chatgpt.accounts.lock().get(&account).and_then(|a| a.behavior.clone());
        let error = |status: u16, error: Value, headers: Value| {
            Message::Text(
                json!({"type": "error", "status": status, "error": error, "headers": headers}).to_string().into(),
            )
        };
        if behavior.as_deref() == Some("usage-limit") {
            let e = json!({"type": "usage_limit_reached", "message": "The usage limit has been reached",
                           "plan_type": "plus", "resets_at": 1_900_000_000});
            let h = json!({"x-codex-primary-used-percent": "100.0", "x-codex-primary-window-minutes": "300",
                           "x-codex-primary-reset-at": "1900000000"});
            if ws.send(error(429, e, h)).await.is_err() {
                return;
            }
            continue;
        }
        if let Some(prev) = v["previous_response_id"].as_str() {
            if last.as_deref() != Some(prev) {
                let e = json!({"type": "invalid_request_error", "code": "previous_response_not_found",
                               "message": format!("Previous response with id '{prev}' not found.")});
                last = None;
                if ws.send(error(400, e, json!({}))).await.is_err() {
                    return;
                }
                continue;
            }
        }
        n += 1;
        let id = format!("resp_ws_{account}_{n}");
        let model = v["model"].as_str().unwrap_or("ok").to_owned();
        let evs = if memfind(&body, b"\"compaction_trigger\"") {
            compaction_events(s.hits.load(Ordering::SeqCst), &model).1
        } else {
            let sc = Scenario::parse(behavior.as_deref().unwrap_or(&model), &s.opts);
            let tool = sc.name == "tool" && !memfind(&body, b"function_call_output");
            events(&responses_steps(&sc, &model, tool))
        };
        for mut ev in evs {
            if let Some(r) = ev.get_mut("response").and_then(Value::as_object_mut) {
                r.insert("id".into(), json!(id));
            }
            if ws.feed(Message::Text(ev.to_string().into())).await.is_err() {
                return;
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
        last = Some(id);
    }
}
