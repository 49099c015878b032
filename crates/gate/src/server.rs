//! The HTTP server: `router(app)` (tests drive it in-process) and `serve(listener, app, shutdown)`
//! (tests bind port 0), with a bounded graceful drain.

use crate::app::App;
use crate::routes::{models, ops, pool, proxy};
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

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

/// Largest read buffer per client connection, which is also the limit on a request's head
/// (larger heads get 431). hyper's default lets the buffer grow to ~400 KB while a big request
/// body arrives and keeps it for the life of the connection; while a response streams, hyper
/// keeps a buffer of this size to notice the client hanging up (which cancels the upstream).
/// hyper's minimum, 8 KB, halves what an open stream holds compared with 16 KB; client heads
/// (Codex, SDKs) are 1–2 KB.
const CONN_READ_BUF: usize = 8 << 10;

/// Serve until `shutdown` resolves, then give open streams `drain_timeout` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let drain = app.config.server.drain_timeout;
    let router = router(app);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(CONN_READ_BUF);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // SSE deltas are small writes; Nagle would hold them back.
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc).into_owned();
        tokio::spawn(graceful.watch(conn));
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => {
            tracing::warn!(secs = drain.as_secs(), "drain timeout: closing the remaining connections");
        }
    }
    Ok(())
}
