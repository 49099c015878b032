//! The HTTP server: `router(app)` (tests drive it in-process) and `serve(listener, app, shutdown)`
//! (tests bind port 0): per-connection timeouts and a connection cap ([`conns`]), accept-error
//! backoff, and a drain that ends on time.

pub mod conns;

use crate::app::App;
use crate::dashboard;
use crate::routes::{admin, models, ops, passthrough, pool, proxy, ws};
use axum::extract::ConnectInfo;
use axum::routing::{any, get, post};
use axum::Router;
use conns::{Admit, Conns, Tracked};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

pub fn router(app: Arc<App>) -> Router {
    // What clients call with their client key (Codex, OpenClaw, SDKs; Codex's ChatGPT-backend
    // reads when `chatgpt_base_url` points here).
    let api = Router::new()
        .route("/v1/responses", post(proxy::responses).get(ws::responses))
        .route("/responses", post(proxy::responses).get(ws::responses))
        .route("/backend-api/codex/responses", post(proxy::responses).get(ws::responses))
        .route("/v1/responses/compact", post(proxy::compact))
        .route("/responses/compact", post(proxy::compact))
        .route("/backend-api/codex/responses/compact", post(proxy::compact))
        .route("/v1/images/generations", post(passthrough::images))
        .route("/v1/images/edits", post(passthrough::images))
        .route("/images/generations", post(passthrough::images))
        .route("/images/edits", post(passthrough::images))
        .route("/backend-api/codex/images/generations", post(passthrough::images))
        .route("/backend-api/codex/images/edits", post(passthrough::images))
        // Codex's other calls to the ChatGPT backend (web search, memories, …): to a pool account.
        .route("/backend-api/codex/{*rest}", any(passthrough::backend))
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/chat/completions", post(proxy::chat_completions))
        .route("/v1/models", get(models::list))
        .route("/models", get(models::list))
        .route("/backend-api/codex/models", get(models::list))
        .route("/api/codex/usage", get(pool::usage))
        .route("/backend-api/wham/usage", get(pool::usage))
        .route("/backend-api/wham/accounts/check", get(pool::accounts_check))
        .route("/backend-api/wham/rate-limit-reset-credits", get(pool::reset_credits))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), crate::access::client));
    // The operator's.
    let admin = Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/api/pool", get(pool::pool))
        .route("/api/accounts", get(pool::list))
        .route("/api/accounts/import", post(pool::import))
        .route("/api/accounts/reload", post(pool::reload))
        .route("/api/accounts/login", post(pool::login))
        .route("/api/accounts/{id}", axum::routing::delete(pool::remove))
        .route("/api/accounts/{id}/pause", post(pool::pause))
        .route("/api/accounts/{id}/resume", post(pool::resume))
        .route("/api/keys", get(admin::keys::list).post(admin::keys::create))
        .route("/api/keys/{id}", get(admin::keys::show).patch(admin::keys::update).delete(admin::keys::revoke))
        .route("/api/keys/{id}/rotate", post(admin::keys::rotate))
        .route("/api/usage", get(admin::usage::report))
        .route("/api/accounts/login/{id}", get(pool::login_state))
        .route("/api/overview", get(dashboard::api::overview))
        .route("/api/requests", get(dashboard::api::requests))
        .route("/api/requests/{id}", get(dashboard::api::request))
        .route("/api/routes", get(dashboard::api::routes))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), crate::access::admin));
    Router::new()
        .merge(api)
        .merge(admin)
        .route("/health", get(ops::health))
        // The dashboard's page and sign-in (its data comes from the admin routes above).
        .route("/", get(dashboard::page))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/", get(dashboard::page))
        .route("/dashboard/assets/{name}", get(dashboard::asset))
        .route("/dashboard/api/session", get(dashboard::session::status))
        .route("/dashboard/api/login", post(dashboard::session::login))
        .route("/dashboard/api/logout", post(dashboard::session::logout))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(app.clone(), crate::access::guard))
        .with_state(app)
}

/// Largest read buffer per client connection, which is also the limit on a request's head
/// (larger heads get 431). hyper's default lets the buffer grow to ~400 KB while a big request
/// body arrives and keeps it for the life of the connection; while a response streams, hyper
/// keeps a buffer of this size to notice the client hanging up (which cancels the upstream).
/// hyper's minimum, 8 KB, halves what an open stream holds compared with 16 KB; client heads
/// (Codex, SDKs) are 1–2 KB.
const CONN_READ_BUF: usize = 8 << 10;
/// After the drain deadline, how long streams get to write their final event and row.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// Serve until `shutdown` resolves, then drain: idle connections close at once, open requests get
/// `drain_timeout` to finish, and at the deadline open streams end with their final failure event
/// (and their request-log row) before the last connections are closed.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Keys first: the first request may carry one.
    app.watch_keys().await.map_err(std::io::Error::other)?;
    app.start_cluster();
    let s = &app.config.server;
    let drain = s.drain_timeout;
    let conns = Arc::new(Conns::new(connection_cap(s.max_connections)));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // The header timeout runs from the moment a connection waits for a request head: from
    // connect, and again after each answer, so it also closes idle keep-alive connections.
    builder.http1().max_buf_size(CONN_READ_BUF).timer(TokioTimer::new()).header_read_timeout(s.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let router = router(app.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut backoff = Duration::from_millis(5);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(5);
                    a
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off (up to 1 s) instead of spinning.
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "accept failed");
                    app.metrics.accept_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let (id, state) = match conns.admit() {
            Admit::Yes(id, state) => (id, state),
            Admit::Full => {
                app.metrics.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                drop(tcp);
                continue;
            }
        };
        // SSE deltas are small writes; Nagle would hold them back.
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let st = state.clone();
        let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let active = st.begin();
            let fut = router.clone().oneshot(req.map(axum::body::Body::new));
            async move { fut.await.map(|r| r.map(|inner| Tracked { inner, active: Some(active) })) }
        });
        let conn = graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc).into_owned());
        let conns = conns.clone();
        let head_timeout = s.header_read_timeout;
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                () = state.kill.notified() => {}
                () = state.first_request_deadline(head_timeout) => {}
            }
            conns.remove(id);
        });
    }
    drop(listener);
    drain_connections(&app, &conns, graceful, drain).await;
    Ok(())
}

/// The connection cap that fits the process's file descriptors: the soft limit is raised to the
/// hard one first (as Go's runtime does), and each client connection may need a second
/// descriptor for its upstream, with a reserve for the store, logs and listeners.
fn connection_cap(configured: usize) -> usize {
    #[cfg(unix)]
    if let Ok(limit) = rlimit::increase_nofile_limit(u64::MAX) {
        let fit = (limit.saturating_sub(64) / 2).max(8) as usize;
        if fit < configured {
            tracing::warn!(
                configured,
                cap = fit,
                nofile = limit,
                "server.max_connections lowered to what the open-file limit allows (raise `ulimit -n`)"
            );
        }
        return configured.min(fit);
    }
    configured
}

async fn drain_connections(
    app: &App,
    conns: &Conns,
    graceful: hyper_util::server::graceful::GracefulShutdown,
    drain: Duration,
) {
    app.lifecycle.stopping.cancel();
    // Idle and half-open connections have nothing to finish.
    conns.close_idle(false);
    let deadline = tokio::time::Instant::now() + drain;
    tokio::select! {
        () = graceful.shutdown() => return,
        () = tokio::time::sleep_until(deadline) => {}
    }
    tracing::warn!(
        secs = drain.as_secs(),
        busy = conns.busy(),
        "drain timeout: ending the open streams with a final failure event"
    );
    app.lifecycle.cut.cancel();
    let grace = tokio::time::Instant::now() + CUT_GRACE;
    while !conns.is_empty() && tokio::time::Instant::now() < grace {
        let closed = conns.closed.notified();
        let _ = tokio::time::timeout_at(grace, closed).await;
    }
    conns.close_idle(true);
}
