//! `POST /v1/responses` (also `/backend-api/codex/responses`), `POST /v1/responses/compact`
//! (compaction v1) and `POST /v1/chat/completions`.

use super::input::read_body;
use crate::access::admit::admit;
use crate::access::Caller;
use crate::app::App;
use crate::error::GateError;
use crate::tally::Tally;
use crate::upstream::relay::{fail, relay, Inbound};
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use codex_gate_protocol::body::{inspect, without_field};
use codex_gate_protocol::Api;
use std::sync::Arc;

pub async fn responses(State(app): State<Arc<App>>, req: Request) -> Response {
    proxy(app, Api::Responses, false, req).await
}

pub async fn compact(State(app): State<Arc<App>>, req: Request) -> Response {
    proxy(app, Api::Responses, true, req).await
}

pub async fn chat_completions(State(app): State<Arc<App>>, req: Request) -> Response {
    proxy(app, Api::Chat, false, req).await
}

pub(crate) async fn proxy(app: Arc<App>, api: Api, compact_endpoint: bool, req: Request) -> Response {
    let mut tally = Tally::open(&app, api);
    let (parts, body) = req.into_parts();
    let caller = parts.extensions.get::<Caller>().cloned();
    tally.trace(&parts.headers, caller.as_ref().and_then(Caller::key).map(|k| k.name.as_str()));
    let read = async {
        let mut body =
            read_body(body, &parts.headers, app.config.server.max_body_bytes, app.config.server.body_read_timeout)
                .await?;
        // The gateway's own compaction items become their summaries again: no upstream can
        // read them, whichever kind serves this request.
        if let Some(expanded) = crate::upstream::compaction::expand_body(app.pool.cipher(), &body) {
            body = expanded;
        }
        let mut head = inspect(&body).map_err(|e| GateError::bad_request(e.message, e.param))?;
        let resolved = app
            .router
            .resolve_or_pool(&head.model, |m| app.pool.catalog.offers(m))
            .ok_or_else(|| GateError::ModelNotFound(head.model.clone()))?;
        let admitted = admit(&app, caller.as_ref(), &head, body.len(), resolved).await?;
        if admitted.strip_tier {
            body = without_field(&body, "service_tier").map(Bytes::from).unwrap_or(body);
            head = inspect(&body).map_err(|e| GateError::bad_request(e.message, e.param))?;
        }
        Ok::<_, GateError>((body, head, admitted))
    };
    let (body, head, admitted) = match read.await {
        Ok(r) => r,
        Err(e) => {
            tally.record.key_id = caller.as_ref().and_then(Caller::key).map(|k| k.id.clone());
            return fail(tally, e);
        }
    };
    tally.record.key_id = admitted.key_id;
    tally.reservation = admitted.reservation;
    let mut headers = parts.headers;
    let turn =
        if api == Api::Responses { crate::upstream::turn_state::take(app.pool.cipher(), &mut headers) } else { None };
    let mut pool_rules = admitted.pool_rules;
    pool_rules.prefer = turn.as_ref().and_then(|s| s.account.clone());
    let inbound = Inbound {
        api,
        head,
        body,
        codex_client: crate::access::auth::is_codex(&headers, parts.uri.path()),
        headers,
        parsed: None,
        pool_rules,
        compact_endpoint,
        turn,
        ws: parts.extensions.get::<crate::upstream::socket::WsTurn>().cloned(),
    };
    // Boxed: the relay's state machine is large, and axum and tower move the handler's
    // future by value a few times before polling it; a pointer is cheaper to move.
    Box::pin(relay(&app, tally, inbound, admitted.resolved)).await
}
