//! `/api/keys`: list, create, show, change, revoke and rotate client keys. A created or
//! rotated key is in the answer once; every other answer shows only its prefix. Changes apply
//! to this gateway at once and to other instances on the same store within a second.

use super::JsonBody;
use crate::access::manage;
use crate::app::App;
use crate::error::GateError;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Map, Value};
use std::sync::Arc;

type Answer = Result<Json<Value>, GateError>;

/// The key's view plus this instance's live counters.
fn with_usage(app: &App, row: &crate::store::KeyRow) -> Value {
    let now = crate::now_ms();
    let mut v = manage::view(row, now);
    if let Some(k) = app.keys.current().get(&row.id) {
        v["usage"] = k.limits.snapshot(now);
    }
    v
}

/// Apply a change here at once (the poller would within 500 ms).
async fn resync(app: &App) {
    if let Err(e) = app.keys.sync(&app.store, false).await {
        tracing::warn!(error = %e, "client keys not reloaded after a change");
    }
}

pub async fn list(State(app): State<Arc<App>>) -> Answer {
    let rows = app.store.list_keys().await.map_err(|e| GateError::Internal(e.to_string()))?;
    Ok(Json(json!({"keys": rows.iter().map(|r| with_usage(&app, r)).collect::<Vec<_>>()})))
}

pub async fn create(State(app): State<Arc<App>>, JsonBody(spec): JsonBody<Map<String, Value>>) -> Answer {
    let (key, row) = manage::create(&app.store, &spec).await?;
    resync(&app).await;
    let mut v = manage::view(&row, crate::now_ms());
    v["key"] = key.into();
    Ok(Json(v))
}

pub async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    let row = manage::find(&app.store, &id).await?;
    Ok(Json(with_usage(&app, &row)))
}

pub async fn update(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<Map<String, Value>>,
) -> Answer {
    let row = manage::update(&app.store, &id, &patch).await?;
    resync(&app).await;
    Ok(Json(with_usage(&app, &row)))
}

pub async fn revoke(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    let row = manage::revoke(&app.store, &id).await?;
    resync(&app).await;
    Ok(Json(manage::view(&row, crate::now_ms())))
}

pub async fn rotate(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    let (key, row) = manage::rotate(&app.store, &id).await?;
    resync(&app).await;
    let mut v = manage::view(&row, crate::now_ms());
    v["key"] = key.into();
    Ok(Json(v))
}
