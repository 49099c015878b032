//! The two gates after the Host/Origin guard. API routes (`/v1/*`, `/backend-api/*`): once any
//! client key exists (or `[server] require_keys`), a valid key; before that, loopback clients
//! only. Admin routes (`/api/*`, `/metrics`): an admin key from anywhere, a dashboard session, or
//! loopback without a key while no admin key exists. The two ambient credentials — the session
//! cookie and being on loopback — need the page's CSRF token on every state-changing request
//! a browser sends; a bearer key cannot be sent by a foreign page, so it needs none.

use super::keys::{presented, ClientKey, Refusal};
use crate::app::App;
use crate::error::GateError;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// Who is asking, as the API routes see it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A loopback client of a gateway without keys.
    Local,
    Key(Arc<ClientKey>),
}

impl Caller {
    pub fn key(&self) -> Option<&Arc<ClientKey>> {
        match self {
            Caller::Local => None,
            Caller::Key(k) => Some(k),
        }
    }
}

fn from_loopback(req: &Request) -> bool {
    req.extensions().get::<ConnectInfo<SocketAddr>>().is_some_and(|ConnectInfo(a)| a.ip().to_canonical().is_loopback())
}

fn refuse(app: &App, e: GateError, path: &str) -> Response {
    app.metrics.auth_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(code = %e.code(), path, "request refused: no usable key");
    e.into_response()
}

/// Codex identifies itself by `originator` / `User-Agent` (codex-protocol §2.2), or calls the
/// ChatGPT-backend paths.
pub fn is_codex(headers: &http::HeaderMap, path: &str) -> bool {
    let starts = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("codex"));
    starts("originator") || starts("user-agent") || path.starts_with("/backend-api/codex")
}

/// A refused key as the client should see it: 401 in OpenAI's shape, except for Codex, which
/// re-sends a 401 five times (its turn retry treats it as a passing failure) but stops at once,
/// showing the message, on a 400 — the same body, so it says "Incorrect API key provided".
fn unauthorized(app: &App, r: Refusal, req: &Request) -> Response {
    let mut resp = refuse(app, GateError::Unauthorized(r), req.uri().path());
    if is_codex(req.headers(), req.uri().path()) {
        *resp.status_mut() = http::StatusCode::BAD_REQUEST;
    }
    resp
}

/// The API routes' gate; puts a [`Caller`] in the request's extensions.
pub async fn client(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let keys = app.keys.current();
    let caller = if keys.any || app.config.server.require_keys {
        match keys.check(presented(req.headers()), crate::now_ms()) {
            Ok(k) => Caller::Key(k),
            Err(r) => return unauthorized(&app, r, &req),
        }
    } else if from_loopback(&req) {
        Caller::Local
    } else {
        let e = GateError::Forbidden {
            code: "forbidden",
            message: "codex-gate serves only loopback clients until client keys exist; create one with `codex-gate keys create --name NAME`".into(),
        };
        return refuse(&app, e, req.uri().path());
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The admin routes' gate.
pub async fn admin(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    use crate::dashboard::session::{csrf_ok, csrf_refusal, from_browser};
    let keys = app.keys.current();
    let path = req.uri().path().to_owned();
    let changes_state = !matches!(*req.method(), http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
    if presented(req.headers()).is_none() {
        if let Some(s) = app.sessions.find(&app, req.headers()) {
            if changes_state && !csrf_ok(req.headers(), &s.csrf) {
                return refuse(&app, csrf_refusal(), &path);
            }
            return next.run(req).await;
        }
    }
    match keys.check(presented(req.headers()), crate::now_ms()) {
        Ok(k) if k.admin => {}
        Ok(_) => {
            let e = GateError::Forbidden {
                code: "admin_key_required",
                message:
                    "this key is a client key; the admin API needs a key made with `codex-gate keys create --admin`"
                        .into(),
            };
            return refuse(&app, e, &path);
        }
        Err(Refusal::Missing) if !keys.admin_exists && from_loopback(&req) => {
            if changes_state && from_browser(req.headers()) && !csrf_ok(req.headers(), &app.sessions.anon_csrf) {
                return refuse(&app, csrf_refusal(), &path);
            }
        }
        Err(Refusal::Missing) if !keys.admin_exists => {
            let e = GateError::Forbidden {
                code: "forbidden",
                message: "the admin API serves only loopback clients until an admin key exists (`codex-gate keys create --admin`)".into(),
            };
            return refuse(&app, e, &path);
        }
        Err(r) => return refuse(&app, GateError::Unauthorized(r), &path),
    }
    next.run(req).await
}
