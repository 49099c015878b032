//! `POST /v1/responses` (also `/backend-api/codex/responses`) and `POST /v1/chat/completions`.

use super::input::read_body;
use crate::app::App;
use crate::error::GateError;
use crate::tally::Tally;
use crate::upstream::relay::{fail, relay, Inbound};
use axum::extract::{Request, State};
use axum::response::Response;
use codex_gate_protocol::body::inspect;
use codex_gate_protocol::Api;
use std::sync::Arc;

pub async fn responses(State(app): State<Arc<App>>, req: Request) -> Response {
    proxy(app, Api::Responses, req).await
}

pub async fn chat_completions(State(app): State<Arc<App>>, req: Request) -> Response {
    proxy(app, Api::Chat, req).await
}

/// Codex identifies itself by `originator` / `User-Agent` (codex-protocol §2.2), or calls the
/// ChatGPT-backend path.
fn is_codex(parts: &http::request::Parts) -> bool {
    let starts = |h: &str| parts.headers.get(h).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("codex"));
    starts("originator") || starts("user-agent") || parts.uri.path().starts_with("/backend-api/codex")
}

async fn proxy(app: Arc<App>, api: Api, req: Request) -> Response {
    let tally = Tally::open(&app, api);
    let (parts, body) = req.into_parts();
    let read = async {
        let body =
            read_body(body, &parts.headers, app.config.server.max_body_bytes, app.config.server.body_read_timeout)
                .await?;
        let head = inspect(&body).map_err(|e| GateError::bad_request(e.message, e.param))?;
        let resolved = app
            .router
            .resolve_or_pool(&head.model, |m| app.pool.catalog.offers(m))
            .ok_or_else(|| GateError::ModelNotFound(head.model.clone()))?;
        Ok::<_, GateError>((
            Inbound { api, head, body, codex_client: is_codex(&parts), headers: parts.headers, parsed: None },
            resolved,
        ))
    };
    match read.await {
        // Boxed: the relay's state machine is large, and axum and tower move the handler's
        // future by value a few times before polling it; a pointer is cheaper to move.
        Ok((inbound, resolved)) => Box::pin(relay(&app, tally, inbound, resolved)).await,
        Err(e) => fail(tally, e),
    }
}
