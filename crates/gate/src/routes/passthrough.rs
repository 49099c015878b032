//! Paths relayed as they are: Codex's image tool and `/v1/images/*` (`images`), and every other
//! `/backend-api/codex/*` path (`backend`); see [`crate::upstream::passthrough`].

use crate::app::App;
use crate::upstream::passthrough::{serve, Relayed};
use axum::extract::{Request, State};
use axum::response::Response;
use std::sync::Arc;

pub async fn images(State(app): State<Arc<App>>, req: Request) -> Response {
    serve(app, Relayed::Images, req).await
}

pub async fn backend(State(app): State<Arc<App>>, req: Request) -> Response {
    serve(app, Relayed::Backend, req).await
}
