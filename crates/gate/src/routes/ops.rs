//! Operations surfaces: `/health`, `/metrics`, and the OpenAI-shaped answers
//! for unknown paths, wrong methods and WebSocket upgrades.

use crate::app::App;
use crate::error::GateError;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue};
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub async fn health(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "in_flight": app.metrics.in_flight.load(Relaxed)}),
    )
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut text = app.metrics.render();
    if let Some(c) = &app.cluster {
        use std::fmt::Write;
        let _ = write!(
            text,
            "# HELP codex_gate_redis_up Whether the cluster's Redis answered the last call (0: limits are counted locally).\n\
             # TYPE codex_gate_redis_up gauge\ncodex_gate_redis_up {}\n\
             # HELP codex_gate_redis_errors_total Failed or timed-out Redis calls.\n\
             # TYPE codex_gate_redis_errors_total counter\ncodex_gate_redis_errors_total {}\n",
            u8::from(c.is_up()),
            c.errors.load(Relaxed)
        );
    }
    let mut r = text.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// GET on a `/responses` path that is not a WebSocket upgrade (those go to `routes::ws`).
pub async fn responses_get() -> Response {
    GateError::MethodNotAllowed.into_response()
}

pub async fn not_found(req: Request) -> Response {
    GateError::NotFound(format!("no route for {} {}", req.method(), req.uri().path())).into_response()
}

pub async fn method_not_allowed() -> Response {
    GateError::MethodNotAllowed.into_response()
}
