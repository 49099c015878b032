//! `GET /v1/models`: what clients can ask for. Plain OpenAI clients get OpenAI's list; Codex,
//! which asks with `?client_version=…`, gets its own catalog shape with an `ETag` (and a 304
//! for a matching `If-None-Match`), as the ChatGPT backend answers it.

use crate::access::admit::may_use;
use crate::access::keys::ClientKey;
use crate::access::Caller;
use crate::app::App;
use axum::extract::{Extension, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn list(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
) -> Response {
    let codex = query.as_deref().is_some_and(|q| q.split('&').any(|kv| kv.split('=').next() == Some("client_version")));
    let pool = app.pool.catalog.get();
    // A key sees only the models it may use.
    let key = caller.as_ref().and_then(|Extension(c)| c.key().cloned());
    let usable = |id: &str| usable(&app, key.as_ref(), id);
    if codex {
        let catalog = codex_catalog(&app, key.as_ref());
        let etag = HeaderValue::from_str(&catalog.etag).unwrap_or(HeaderValue::from_static("\"0\""));
        if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
        }
        return ([(header::ETAG, etag)], Json(catalog.body)).into_response();
    }
    let mut data: Vec<Value> = app
        .router
        .listed()
        .iter()
        .map(|m| json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by}))
        .collect();
    if let (Some(p), Some(pool)) = (app.router.pool_provider(), pool) {
        for slug in pool.slugs() {
            if !app.router.listed().iter().any(|m| m.id == slug) {
                data.push(json!({"id": slug, "object": "model", "created": 0, "owned_by": p.name}));
            }
        }
    }
    if key.is_some() {
        data.retain(|m| m["id"].as_str().is_some_and(usable));
    }
    Json(json!({"object": "list", "data": data})).into_response()
}

/// Whether `key` (no key: anyone) may use model `id`.
fn usable(app: &App, key: Option<&Arc<ClientKey>>, id: &str) -> bool {
    key.is_none_or(|k| {
        app.router.resolve_or_pool(id, |m| app.pool.catalog.offers(m)).is_some_and(|r| may_use(k, id, &r))
    })
}

/// The catalog Codex gets from `/models` for `key`; its ETag also goes on the Responses
/// WebSocket's upgrade answer (`x-models-etag`), where Codex checks it.
pub fn codex_catalog(app: &App, key: Option<&Arc<ClientKey>>) -> crate::codex_catalog::CodexCatalog {
    let pool = app.pool.catalog.get();
    let mut catalog = crate::codex_catalog::build(&app.router, pool.as_deref());
    if key.is_some() {
        catalog.retain(|id| usable(app, key, id));
    }
    catalog
}
