//! The ChatGPT backend's Responses WebSocket (`GET …/codex/responses` with `Upgrade: websocket`)
//! and, when offered, the API's (`GET /v1/responses`, any bearer key):
//! the account's token at the handshake, then one `response.create` frame per turn and the
//! turn's events back as text frames. `previous_response_id` must name the connection's last
//! response (the backend keeps it, so the frame carries only new items); an account whose
//! behaviour is `usage-limit` gets the error frame the backend sends; a turn ending in
//! `compaction_trigger` gets the compaction item the way the HTTP backend streams it. Each frame
//! is recorded as a request with method `WS`, with the upgrade's headers plus
//! `x-mock-websocket-extensions`: the permessage-deflate terms agreed, when any (the mock
//! compresses as a server that supports it does).

use crate::render::compaction_events;
use crate::server::{full, memfind, responses_steps, MockBody, RecordedRequest, Shared, Step};
use crate::Scenario;
use futures_util::SinkExt;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use yawc::frame::{Frame, OpCode};
use yawc::{HttpStream, Options, WebSocket};

const MAX_MESSAGE: usize = 64 << 20;

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
    let mut headers = req.headers().clone();
    let path = req.uri().path().to_owned();
    let options = Options::default()
        .with_balanced_compression()
        .with_max_payload_read(MAX_MESSAGE)
        .with_max_read_buffer(MAX_MESSAGE);
    let (answer, on) = match WebSocket::upgrade_with_options(&mut req, options) {
        Ok(up) => up,
        Err(e) => return full(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
    };
    if let Some(agreed) = answer.headers().get(header::SEC_WEBSOCKET_EXTENSIONS) {
        headers.insert("x-mock-websocket-extensions", agreed.clone());
    }
    let shared = s.clone();
    let who = account.clone();
    tokio::spawn(async move {
        let Ok(ws) = on.await else { return };
        serve(shared, who, path, headers, ws).await;
    });
    let used = s.chatgpt.accounts.lock().get(&account).map_or(0.0, |a| a.usage_primary);
    let (mut parts, _) = answer.into_parts();
    for (k, v) in [
        ("x-codex-primary-used-percent", used.to_string()),
        ("x-codex-primary-window-minutes", "300".into()),
        ("x-codex-primary-reset-at", "1900000000".into()),
    ] {
        parts.headers.insert(k, v.parse().unwrap());
    }
    Response::from_parts(parts, http_body_util::Empty::new().map_err(|e| match e {}).boxed())
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

async fn serve(s: Arc<Shared>, account: String, path: String, headers: HeaderMap, mut ws: WebSocket<HttpStream>) {
    let mut last: Option<String> = None;
    let mut n = 0usize;
    while let Ok(msg) = ws.next_frame().await {
        match msg.opcode() {
            OpCode::Text => {}
            OpCode::Close => return,
            _ => continue,
        }
        s.hits.fetch_add(1, Ordering::Relaxed);
        let body = msg.into_payload();
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
        let behavior = match s.chatgpt.take_turn(&account) {
            true => s.chatgpt.accounts.lock().get(&account).and_then(|a| a.behavior.clone()),
            false => Some("usage-limit".to_owned()),
        };
        let error = |status: u16, error: Value, headers: Value| {
            Frame::text(json!({"type": "error", "status": status, "error": error, "headers": headers}).to_string())
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
        // The backend names the model that served in a `response.metadata` event after the
        // first one (over a socket there are no response headers).
        let served = crate::server::served_model(&Scenario::parse(&model, &s.opts), &model);
        let meta = json!({"type": "response.metadata", "headers": {"openai-model": served}});
        for (i, mut ev) in evs.into_iter().enumerate() {
            if let Some(r) = ev.get_mut("response").and_then(Value::as_object_mut) {
                r.insert("id".into(), json!(id));
            }
            if ws.feed(Frame::text(ev.to_string())).await.is_err() {
                return;
            }
            if i == 0 && ws.feed(Frame::text(meta.to_string())).await.is_err() {
                return;
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
        last = Some(id);
    }
}
