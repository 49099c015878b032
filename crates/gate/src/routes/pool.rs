//! Pool surfaces: `GET /api/pool` (accounts, windows, cooldowns, in-flight, recent routing
//! decisions), the pooled usage Codex's `/status` reads (`GET /api/codex/usage`,
//! `GET /backend-api/wham/usage`), and account administration under `/api/accounts`.

use crate::app::App;
use crate::error::GateError;
use crate::pool::auth::AuthDotJson;
use crate::pool::Status;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn pool(State(app): State<Arc<App>>) -> Json<Value> {
    Json(app.pool.snapshot())
}

pub async fn usage(State(app): State<Arc<App>>) -> Json<Value> {
    Json(app.pool.usage())
}

/// `GET /api/accounts`: what `accounts list` shows; never a token.
pub async fn list(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({"accounts": app.pool.snapshot()["accounts"].clone()}))
}

/// `POST /api/accounts/import`: one Codex `auth.json` as the body.
pub async fn import(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let auth: AuthDotJson = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return GateError::bad_request(format!("body is not a Codex auth.json: {e}"), None).into_response(),
    };
    let Some(tokens) = auth.tokens else {
        return GateError::bad_request(
            "this auth.json holds no ChatGPT tokens (API-key logins cannot join the pool)",
            None,
        )
        .into_response();
    };
    match crate::pool::state::save_login(&app.store, app.pool.cipher(), &tokens).await {
        Ok((id, ident)) => {
            if let Err(e) = app.pool.load().await {
                return GateError::Internal(e.to_string()).into_response();
            }
            Json(json!({"id": id, "email": ident.email, "plan_type": ident.plan_type})).into_response()
        }
        Err(e) => GateError::bad_request(e, None).into_response(),
    }
}

async fn set_status(app: &App, id: &str, status: Status) -> Response {
    let Some(a) = app.pool.find(id) else { return GateError::NotFound(format!("no account {id}")).into_response() };
    app.pool.set_status(&a, status).await;
    Json(json!({"id": id, "status": a.status.read().as_str()})).into_response()
}

pub async fn pause(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    set_status(&app, &id, Status::Paused).await
}

pub async fn resume(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    set_status(&app, &id, Status::Active).await
}

pub async fn remove(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.store.delete_account(&id).await {
        Ok(true) => match app.pool.load().await {
            Ok(_) => Json(json!({"id": id, "deleted": true})).into_response(),
            Err(e) => GateError::Internal(e.to_string()).into_response(),
        },
        Ok(false) => GateError::NotFound(format!("no account {id}")).into_response(),
        Err(e) => GateError::Internal(e.to_string()).into_response(),
    }
}
