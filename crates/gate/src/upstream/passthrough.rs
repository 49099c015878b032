//! Requests relayed as they are, without translation: Codex's image tool
//! (`images/generations`, `images/edits` below its base URL, codex-api `endpoint/images.rs`),
//! `/v1/images/*` for SDK clients, and every other `/backend-api/codex/*` path Codex calls with
//! a ChatGPT login. They go to a pool account (or, for images, to a route's API provider) with
//! the same account failover, cooldowns, limits and request log as `/responses`.

use super::chatgpt::{with_accounts, Outgoing};
use super::relay::{attempt, copy_headers, fail, for_provider, gate_headers, Answer, Expect};
use crate::access::admit::admit_relayed;
use crate::access::Caller;
use crate::app::App;
use crate::config::ProviderKind;
use crate::error::GateError;
use crate::routes::input::read_body;
use crate::routing::{Resolved, Target};
use crate::tally::Tally;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use codex_gate_protocol::usage::Usage;
use codex_gate_protocol::Api;
use http::{header, HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Instant;

/// Longest relayed path (with its query) the gateway accepts.
const MAX_PATH: usize = 1024;

/// Which surface a relayed request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// `…/images/generations` or `…/images/edits`: to the pool or a route's API provider.
    Images,
    /// Any other `/backend-api/codex/*` path: to the pool only.
    Backend,
}

impl Relayed {
    /// The request log's `api` for these requests.
    fn api(self) -> &'static str {
        match self {
            Relayed::Images => "images",
            Relayed::Backend => "backend",
        }
    }
}

/// The path below a provider's base URL that a client path maps to: `/images/…` for images
/// (the pool adds `/codex`), `/codex/…` for other backend paths. The query goes along.
/// Dot segments and encoded slashes or dots are refused: the pool's tokens must reach only
/// the backend's Codex paths, whatever the backend does with `..`.
fn upstream_path(kind: Relayed, uri: &http::Uri) -> Result<String, GateError> {
    let path = uri.path();
    let tail = match kind {
        Relayed::Images => path.find("/images/").map(|i| &path[i..]),
        Relayed::Backend => path.strip_prefix("/backend-api"),
    }
    .ok_or_else(|| GateError::NotFound(path.to_owned()))?;
    let hostile = tail.split('/').skip(1).any(|seg| {
        let lower = seg.to_ascii_lowercase();
        seg.is_empty()
            || seg == "."
            || seg == ".."
            || lower.contains("%2e")
            || lower.contains("%2f")
            || lower.contains("%5c")
    });
    if hostile || tail.contains('\\') {
        return Err(GateError::bad_request(format!("the path {path:?} cannot be relayed"), None));
    }
    let mut out = tail.to_owned();
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(q);
    }
    if out.len() > MAX_PATH {
        return Err(GateError::bad_request(format!("the path is longer than {MAX_PATH} bytes"), None));
    }
    Ok(out)
}

/// The model a JSON body names, if any (multipart image edits name it in a form field the
/// gateway does not read: they go to the pool, or to the first images route).
fn named_model(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.trim_start().to_ascii_lowercase().starts_with("application/json"));
    if !json || body.is_empty() {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Head {
        model: Option<String>,
    }
    serde_json::from_slice::<Head>(body).ok()?.model.filter(|m| !m.is_empty())
}

/// Who serves a relayed request: images by the route of the model they name, else the pool;
/// backend paths by the pool.
fn targets(app: &App, kind: Relayed, model: Option<&str>) -> Result<Arc<Resolved>, GateError> {
    if kind == Relayed::Images {
        if let Some(r) = model.and_then(|m| app.router.resolve(m)) {
            return Ok(r);
        }
    }
    app.router.pool_route(model.unwrap_or("-")).ok_or_else(|| match (kind, model) {
        (Relayed::Images, Some(m)) => GateError::ModelNotFound(m.to_owned()),
        _ => GateError::NotFound("this path is served by ChatGPT pool accounts, and none is configured".into()),
    })
}

pub async fn serve(app: Arc<App>, kind: Relayed, req: Request) -> Response {
    let mut tally = Tally::open(&app, Api::Responses);
    tally.record.api = kind.api().into();
    let (parts, body) = req.into_parts();
    let caller = parts.extensions.get::<Caller>().cloned();
    tally.trace(&parts.headers, caller.as_ref().and_then(Caller::key).map(|k| k.name.as_str()));
    tally.record.key_id = caller.as_ref().and_then(Caller::key).map(|k| k.id.clone());
    let read = async {
        let path = upstream_path(kind, &parts.uri)?;
        let body =
            read_body(body, &parts.headers, app.config.server.max_body_bytes, app.config.server.body_read_timeout)
                .await?;
        let model = named_model(&parts.headers, &body);
        let resolved = targets(&app, kind, model.as_deref())?;
        let admitted = admit_relayed(&app, caller.as_ref(), model.as_deref(), body.len(), resolved).await?;
        Ok::<_, GateError>((path, body, model, admitted))
    };
    let (path, body, model, admitted) = match read.await {
        Ok(r) => r,
        Err(e) => return fail(tally, e),
    };
    tally.reservation = admitted.reservation;
    let resolved = admitted.resolved;
    tally.set_route(&resolved.route, model.as_deref().unwrap_or(""), false);
    let out = Outgoing {
        method: parts.method.clone(),
        path: &path,
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/json")),
        accept: parts.headers.get(header::ACCEPT).cloned().unwrap_or(HeaderValue::from_static("application/json")),
        body: &body,
        headers: &parts.headers,
        codex_client: crate::access::auth::is_codex(&parts.headers, parts.uri.path()),
        ws: None,
    };
    let pool_path = if kind == Relayed::Images { format!("/codex{path}") } else { path.clone() };
    let n = resolved.targets.len();
    let mut last = None;
    for (i, t) in resolved.targets.iter().enumerate() {
        tally.set_target(&t.label);
        tally.attempt(if i == 0 { "first of the route's targets".into() } else { "next target".into() });
        let result = if t.provider.kind == ProviderKind::Chatgpt {
            let out = Outgoing { path: &pool_path, ..out.clone() };
            let session = parts.headers.get("session-id").and_then(|v| v.to_str().ok());
            with_accounts(&app, &mut tally, t, session, &admitted.pool_rules, &out, Expect::Any).await
        } else {
            match provider_request(t, &out) {
                Ok(req) => {
                    let sent = Instant::now();
                    let r = attempt(&app, t, req, Expect::Any).await;
                    tally.upstream_wait += sent.elapsed();
                    r
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(answer) => {
                tally.attempt_done(None);
                return commit(tally, t, answer);
            }
            Err(e) => {
                tally.attempt_done(Some(&e.code()));
                if !(e.retryable() && i + 1 < n) {
                    return fail(tally, e);
                }
                tally.attempt_failed(&e.code());
                last = Some(e);
            }
        }
    }
    fail(tally, last.unwrap_or_else(|| GateError::Internal("route has no targets".into())))
}

/// The request for an API provider: the same path below its `base_url`, with its own key.
fn provider_request(t: &Target, out: &Outgoing) -> Result<http::Request<Bytes>, GateError> {
    let mut req = http::Request::builder()
        .method(out.method.clone())
        .uri(format!("{}{}", t.provider.base_url, out.path))
        .header(header::CONTENT_TYPE, out.content_type.clone())
        .header(header::ACCEPT, out.accept.clone())
        .body(out.body.clone())
        .map_err(|e| GateError::Internal(format!("bad upstream request for {}: {e}", t.label)))?;
    for_provider(t, out.headers, &mut req)?;
    Ok(req)
}

/// The upstream's answer, as it came: a whole body with its usage counted when it names one
/// (image answers do), or an event stream piped through.
fn commit(mut tally: Tally, t: &Target, answer: Answer) -> Response {
    let overhead = tally.commit();
    let (parts, body, usage) = match answer {
        Answer::Whole { parts, body } => {
            let usage = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("usage").and_then(Usage::from_responses));
            (parts, Body::from(body), usage)
        }
        Answer::Stream { parts, first, body } => {
            // The stream is not read by the gateway: the request is logged when it starts.
            use futures_util::StreamExt;
            let head = futures_util::stream::once(std::future::ready(Ok(first)));
            (parts, Body::from_stream(head.chain(body.into_data_stream())), None)
        }
    };
    tally.close(parts.status.as_u16(), None, usage);
    let mut resp = Response::new(body);
    *resp.status_mut() = parts.status;
    let h = resp.headers_mut();
    copy_headers(&parts.headers, h);
    if let Some(v) = parts.headers.get(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, v.clone());
    }
    gate_headers(h, &tally, overhead, Some(&t.label));
    resp
}
