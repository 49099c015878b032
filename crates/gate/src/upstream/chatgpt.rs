//! Upstream kind `chatgpt`: Responses requests to `{base_url}/codex/responses` on behalf of one
//! pool account at a time, with failover across accounts (bounded by `pool.max_attempts`).
//!
//! Per account: a fresh access token (proactive refresh, single-flight), `Authorization`,
//! `ChatGPT-Account-Id`, the `originator`/`User-Agent` policy, the continuity headers; on 401 one
//! forced refresh and one retry; on a usage limit, 429, 5xx or a dead connection a cooldown
//! (until the reset the upstream names, else exponential backoff) and the next account. When
//! no account can serve, the pool answers like the ChatGPT backend does for one exhausted
//! account, so Codex shows its usage-limit message and does not retry.
//!
//! `originator`/`User-Agent` policy: a Codex client's own values pass through unchanged (they
//! are what the backend expects and keep each client's traffic shape); every other client is
//! sent as `pool.originator` / `pool.user_agent` (default `codex_cli_rs`), a fixed identity, so
//! an account's traffic looks the same whichever API client drove it.

use super::relay::{attempt, is_continuity_header, read_all, Answer, Expect, Inbound, Plan};
use crate::app::App;
use crate::error::GateError;
use crate::pool::quota::Quota;
use crate::pool::refresh::RefreshError;
use crate::pool::NoAccount;
use crate::routing::Target;
use crate::tally::Tally;
use bytes::Bytes;
use codex_gate_protocol::repair::ResponsesRepair;
use codex_gate_protocol::sse::SseDecoder;
use codex_gate_protocol::translate::chat_to_responses_request;
use codex_gate_protocol::Api;
use http::{header, HeaderValue, Request};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;

/// Fields the ChatGPT backend refuses (codex-protocol §2.3); Codex itself never sends them.
const STRIPPED: &[&str] = &[
    "max_output_tokens",
    "max_tokens",
    "temperature",
    "top_p",
    "metadata",
    "user",
    "truncation",
    "previous_response_id",
    "background",
    "top_logprobs",
    "max_tool_calls",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
];

/// The Responses body for the backend, and the session key used for affinity.
fn backend_body(inb: &mut Inbound, model: &str) -> Result<(Bytes, Option<String>), GateError> {
    let invalid = |e: serde_json::Error| GateError::bad_request(format!("invalid JSON: {e}"), None);
    let mut v = match (inb.api, &inb.parsed) {
        // Parse into an owned value: no deep copy of a 400 KB body per pool request.
        (Api::Responses, None) => serde_json::from_slice(&inb.body).map_err(invalid)?,
        (Api::Responses, Some(parsed)) => parsed.clone(),
        (Api::Chat, _) => {
            let parsed: Value = match &inb.parsed {
                Some(p) => p.clone(),
                None => serde_json::from_slice(&inb.body).map_err(invalid)?,
            };
            chat_to_responses_request(&parsed, model).map_err(|e| GateError::bad_request(e.message, e.param))?
        }
    };
    let Some(obj) = v.as_object_mut() else {
        return Err(GateError::bad_request("request body must be a JSON object", None));
    };
    for k in STRIPPED {
        obj.remove(*k);
    }
    obj.insert("model".into(), json!(model));
    obj.insert("store".into(), json!(false));
    if inb.compact_endpoint {
        obj.remove("stream"); // the v1 compaction endpoint answers one JSON object
    } else {
        obj.insert("stream".into(), json!(true));
    }
    if let Some(Value::String(s)) = obj.get("input") {
        let text = s.clone();
        obj.insert(
            "input".into(),
            json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]),
        );
    }
    // Without a prompt_cache_key the backend's prompt cache misses on every turn; derive a
    // stable one from what identifies a conversation (its instructions and first item).
    if !obj.get("prompt_cache_key").is_some_and(Value::is_string) {
        let mut h = Sha256::new();
        h.update(b"codex-gate/pck/v1");
        h.update(obj.get("instructions").map(Value::to_string).unwrap_or_default());
        h.update(obj.get("input").and_then(|i| i.get(0)).map(Value::to_string).unwrap_or_default());
        let key = format!("cg-{}", h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect::<String>());
        obj.insert("prompt_cache_key".into(), json!(key));
    }
    let header = |k: &str| inb.headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let session = obj
        .get("prompt_cache_key")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| header("session-id"))
        .or_else(|| header("session_id"))
        .or_else(|| header("thread-id"));
    Ok((Bytes::from(v.to_string()), session))
}

/// What one relayed request sends, whichever account (or provider) sends it.
#[derive(Clone)]
pub(super) struct Outgoing<'a> {
    pub method: http::Method,
    /// Below the provider's `base_url`, with the query: `/codex/responses`.
    pub path: &'a str,
    pub content_type: HeaderValue,
    pub accept: HeaderValue,
    pub body: &'a Bytes,
    /// The client's headers (the continuity ones and Codex's identity are passed on).
    pub headers: &'a http::HeaderMap,
    pub codex_client: bool,
    /// A client WebSocket's turn: sent over the connection's own socket to the backend.
    pub ws: Option<super::socket::WsTurn>,
}

pub(super) fn request_for(
    app: &App,
    t: &Target,
    out: &Outgoing,
    token: &str,
    account_id: &str,
) -> Result<Request<Bytes>, GateError> {
    let mut req = Request::builder()
        .method(out.method.clone())
        .uri(format!("{}{}", t.provider.base_url, out.path))
        .header(header::CONTENT_TYPE, out.content_type.clone())
        .header(header::ACCEPT, out.accept.clone())
        .body(out.body.clone())
        .map_err(|e| GateError::Internal(format!("bad pool request: {e}")))?;
    let h = req.headers_mut();
    for (k, v) in out.headers {
        if is_continuity_header(k.as_str(), true) {
            h.append(k.clone(), v.clone());
        }
    }
    let (originator, ua) = if out.codex_client {
        (out.headers.get("originator").cloned(), out.headers.get(header::USER_AGENT).cloned())
    } else {
        (None, None)
    };
    let fallback = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("codex_cli_rs"));
    h.insert("originator", originator.unwrap_or_else(|| fallback(&app.config.pool.originator)));
    h.insert(header::USER_AGENT, ua.unwrap_or_else(|| fallback(&app.config.pool.user_agent)));
    let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| GateError::Internal("unusable access token".into()))?;
    auth.set_sensitive(true);
    h.insert(header::AUTHORIZATION, auth);
    if let Ok(v) = HeaderValue::from_str(account_id) {
        h.insert("chatgpt-account-id", v);
    }
    if let Some(route) = &t.provider.proxy {
        req.extensions_mut().insert(crate::egress::ProxyChoice(route.clone()));
    }
    Ok(req)
}

/// Replace the serving account's rate-limit headers with the pool's (after this answer's own
/// numbers were learned), so Codex's status line shows what the gateway can still serve.
fn pooled_headers(app: &App, headers: &mut http::HeaderMap) {
    let names: Vec<_> =
        headers.keys().filter(|k| crate::pool::usage::is_rate_limit_header(k.as_str())).cloned().collect();
    for n in names {
        headers.remove(n);
    }
    headers.extend(app.pool.pooled_usage().headers());
}

/// When an upstream limit ends (unix s): the body's `resets_at`/`resets_in_seconds`, the
/// `x-codex-primary-reset-at` header, or `retry-after`.
fn limit_reset(headers: &http::HeaderMap, body: &Bytes) -> Option<i64> {
    let now = crate::now_ms() / 1000;
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = v.get("error").unwrap_or(&v);
    e.get("resets_at")
        .and_then(Value::as_i64)
        .or_else(|| e.get("resets_in_seconds").and_then(Value::as_i64).map(|s| now + s))
        .or_else(|| headers.get("x-codex-primary-reset-at").and_then(|v| v.to_str().ok()?.parse().ok()))
        .or_else(|| {
            headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()?.trim().parse::<i64>().ok()).map(|s| now + s)
        })
}

/// A whole Responses object from a complete backend SSE body (the backend only streams).
fn sse_to_response(sse: &[u8]) -> Option<Value> {
    let mut d = SseDecoder::default();
    let mut evs = Vec::new();
    d.push(sse, &mut evs).ok()?;
    d.finish(&mut evs).ok()?;
    let mut repair = ResponsesRepair::new(false, "resp_pool");
    let mut out = Vec::new();
    for e in &evs {
        repair.push(e, &mut out);
    }
    let mut fixed = Vec::new();
    SseDecoder::default().push(&out, &mut fixed).ok()?;
    fixed.iter().rev().find_map(|e| {
        let v: Value = serde_json::from_str(&e.data).ok()?;
        matches!(v["type"].as_str(), Some("response.completed" | "response.incomplete" | "response.failed"))
            .then(|| v["response"].clone())
    })
}

/// Serve one request from the pool.
pub(super) async fn serve(
    app: &Arc<App>,
    tally: &mut Tally,
    inb: &mut Inbound,
    t: &Target,
) -> Result<(Answer, Plan), GateError> {
    let (body, session) = backend_body(inb, &t.model)?;
    let (path, accept, expect) = if inb.compact_endpoint {
        ("/codex/responses/compact", "application/json", Expect::Json)
    } else {
        ("/codex/responses", "text/event-stream", Expect::Events)
    };
    let out = Outgoing {
        method: http::Method::POST,
        path,
        content_type: HeaderValue::from_static("application/json"),
        accept: HeaderValue::from_static(accept),
        body: &body,
        headers: &inb.headers,
        codex_client: inb.codex_client,
        ws: inb.ws.clone().filter(|w| w.pool.is_some() && !inb.compact_endpoint),
    };
    // A WebSocket's turns stay with the account whose socket is open while it can serve.
    let mut rules = inb.pool_rules.clone();
    if rules.prefer.is_none() {
        rules.prefer = out.ws.as_ref().and_then(|w| w.pool.as_ref()?.account());
    }
    let answer = with_accounts(app, tally, t, session.as_deref(), &rules, &out, expect).await?;
    match answer {
        Answer::Stream { parts, first, body: rest } if !inb.head.stream => {
            // A non-streaming client: collect the stream into one Responses object.
            let mut rest = rest;
            let idle = t.provider.timeouts.idle;
            let reading = Instant::now();
            let more = read_all(&mut rest, tokio::time::Instant::now() + idle, idle, 64 << 20, &t.label).await?;
            tally.upstream_wait += reading.elapsed();
            let mut all = first.to_vec();
            all.extend_from_slice(&more);
            let resp = sse_to_response(&all).ok_or_else(|| GateError::Transport {
                target: t.label.to_string(),
                kind: crate::egress::TransportKind::Malformed,
                detail: "the backend stream ended without a response".into(),
            })?;
            Ok((Answer::Whole { parts, body: Bytes::from(resp.to_string()) }, Plan::responses()))
        }
        answer => Ok((answer, Plan::responses())),
    }
}

/// Send `out` on behalf of one account after another until one answers (2xx and its first
/// byte), at most `pool.max_attempts`: each failure cools its account down or marks it for a
/// new login, and a request the backend refuses as such (400, 413, 422) is not sent again.
/// The serving account's slot is left in `tally.account`.
pub(super) async fn with_accounts(
    app: &Arc<App>,
    tally: &mut Tally,
    t: &Target,
    session: Option<&str>,
    rules: &crate::pool::PickRules,
    out: &Outgoing<'_>,
    expect: Expect,
) -> Result<Answer, GateError> {
    let mut tried: Vec<String> = Vec::new();
    let mut last: Option<GateError> = None;
    while (tried.len() as u32) < app.pool.settings.max_attempts {
        let slot = match app.pool.pick(session, &tried, rules) {
            Ok(s) => s,
            Err(none) => {
                // Accounts that failed for other reasons than their limits: say what happened.
                if let Some(e) =
                    last.take().filter(|e| !matches!(e, GateError::Upstream { status, .. } if status.as_u16() == 429))
                {
                    return Err(e);
                }
                return Err(match none {
                    NoAccount::Exhausted { resets_at, plan_type, accounts } => {
                        GateError::PoolExhausted { resets_at, plan_type, accounts }
                    }
                    NoAccount::ReauthRequired { .. } => GateError::PoolReauth,
                    NoAccount::Empty => GateError::PoolEmpty,
                });
            }
        };
        let a = slot.0.clone();
        if !tried.is_empty() {
            tally.record.attempts += 1; // every account tried is an attempt in the request log
        }
        tally.attempt_account(&a.id, slot.1);
        tried.push(a.id.clone());
        let mut rejected: Option<String> = None;
        // One account: at most two sends (the second after a forced refresh on 401). A refresh
        // failure has already been dealt with by the pool (reauth_required, or a backoff).
        let (outcome, refresh_failed) = loop {
            let token = match app.pool.access_token(&a, rejected.as_deref()).await {
                Ok(t) => t,
                Err(RefreshError::Permanent(r)) => {
                    let detail = format!("account {} needs a new login ({r})", a.id);
                    break (Err(GateError::Unreachable { target: t.label.to_string(), detail }), true);
                }
                Err(RefreshError::Transient(e)) => {
                    let detail = format!("token refresh failed: {e}");
                    break (Err(GateError::Unreachable { target: t.label.to_string(), detail }), true);
                }
            };
            let mut req = request_for(app, t, out, &token, &a.chatgpt_account_id)?;
            // An account's own proxy wins over its provider's: one egress identity per account.
            if let Some(route) = a.proxy.read().clone() {
                req.extensions_mut().insert(crate::egress::ProxyChoice(route));
            }
            req.extensions_mut().insert(super::client::Identity(a.id.as_str().into()));
            if let Some(tp) = tally.traceparent() {
                req.headers_mut().insert("traceparent", tp);
            }
            let sent = Instant::now();
            let over_ws = match out.ws.as_ref().and_then(|w| Some((w.pool.as_ref()?, w))) {
                Some((socket, turn)) if expect == Expect::Events => {
                    socket.send(app, t, &a.id, &req, turn.incremental.as_ref()).await
                }
                _ => None,
            };
            let r = match over_ws {
                Some(r) => r,
                None => attempt(app, t, req, expect).await,
            };
            tally.upstream_wait += sent.elapsed();
            match r {
                Err(GateError::Upstream { status, .. }) if status == 401 && rejected.is_none() => {
                    rejected = Some(token)
                }
                other => break (other, false),
            }
        };
        match outcome {
            Ok(mut answer) => {
                let parts = match &mut answer {
                    Answer::Stream { parts, .. } | Answer::Whole { parts, .. } => parts,
                };
                if let Some(q) = Quota::from_headers(&parts.headers, crate::now_ms()) {
                    tally.pool_used(app.pool.update_quota(&a, q));
                }
                if app.config.pool.pooled_rate_limit_headers {
                    pooled_headers(app, &mut parts.headers);
                }
                app.pool.succeeded(&a);
                tally.account = Some(slot);
                return Ok(answer);
            }
            Err(e) => {
                match &e {
                    GateError::Upstream { status, headers, body, .. } => {
                        if let Some(q) = Quota::from_headers(headers, crate::now_ms()) {
                            let _ = app.pool.update_quota(&a, q);
                        }
                        if matches!(status.as_u16(), 400 | 404 | 405 | 413 | 422) {
                            // The request itself is refused; another account would refuse it too.
                            app.pool.succeeded(&a);
                            return Err(e);
                        }
                        let until = (status.as_u16() == 429).then(|| limit_reset(headers, body)).flatten();
                        app.pool.cool_down(&a, until);
                    }
                    _ if refresh_failed => {}
                    _ => app.pool.cool_down(&a, None),
                }
                tracing::warn!(id = %tally.id(), account = %a.id, error = %e, "pool account failed; trying another");
                let code = e.code();
                app.pool.failed(&a, &code);
                tally.attempt_done(Some(&code));
                tally.attempt_failed(&code);
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(GateError::PoolEmpty))
}
