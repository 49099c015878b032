//! `GET /v1/models`: what clients can ask for, in OpenAI's list shape.

use crate::app::App;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn list(State(app): State<Arc<App>>) -> Json<Value> {
    let data: Vec<Value> = app
        .router
        .listed()
        .iter()
        .map(|m| json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}
