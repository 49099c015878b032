//! The HTTP server: `router(app)` (tests drive it in-process) and `serve(listener, app, shutdown)`
//! (tests bind port 0), with a bounded graceful drain.

use crate::app::App;
use crate::routes::{models, ops, pool, proxy};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/v1/responses", post(proxy::responses).get(ops::responses_get))
        .route("/responses", post(proxy::responses).get(ops::responses_get))
        .route("/backend-api/codex/responses", post(proxy::responses).get(ops::responses_get))
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/chat/completions", post(proxy::chat_completions))
        .route("/v1/models", get(models::list))
        .route("/models", get(models::list))
        .route("/metrics", get(ops::metrics))
        .route("/api/pool", get(pool::pool))
        .route("/api/codex/usage", get(pool::usage))
        .route("/backend-api/wham/usage", get(pool::usage))
        .route("/api/accounts", get(pool::list))
        .route("/api/accounts/import", post(pool::import))
        .route("/api/accounts/reload", post(pool::reload))
        .route("/api/accounts/login", post(pool::login))
        .route("/api/accounts/{id}", axum::routing::delete(pool::remove))
        .route("/api/accounts/{id}/pause", post(pool::pause))
        .route("/api/accounts/{id}/resume", post(pool::resume))
        .route_layer(axum::middleware::from_fn(ops::loopback_only));
    Router::new()
        .merge(api)
        .route("/health", get(ops::health))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(app)
}

/// Serve until `shutdown` resolves, then give open streams `drain_timeout` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let drain = app.config.server.drain_timeout;
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = listener.tap_io(|tcp| {
        // SSE deltas are small writes; Nagle would hold them back.
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router(app).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = signalled_tx.send(());
        });
    let drained = async move {
        if signalled_rx.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = server => r,
        () = drained => {
            tracing::warn!(secs = drain.as_secs(), "drain timeout: closing the remaining connections");
            Ok(())
        }
    }
}
