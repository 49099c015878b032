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

/// `GET /backend-api/wham/usage` (and `/api/codex/usage`): the pool as one account, in the
/// types Codex decodes (`account/rateLimits/read`, `/status`).
pub async fn usage(State(app): State<Arc<App>>) -> Json<crate::pool::usage::PooledUsage> {
    Json(app.pool.pooled_usage())
}

/// `GET /backend-api/wham/accounts/check`: the one account Codex sees behind the gateway — the
/// pool, with its plan.
pub async fn accounts_check(State(app): State<Arc<App>>) -> Json<Value> {
    let plan = app.pool.pooled_usage().plan_type;
    let id = "codex-gate-pool";
    Json(json!({
        "accounts": {id: {"account": {"account_id": id, "name": "codex-gate pool", "plan_type": plan,
                                      "structure": "personal", "is_default": true}}},
        "account_ordering": [id],
    }))
}

/// `GET /backend-api/wham/rate-limit-reset-credits`: the gateway spends no reset credits for
/// its clients, so there are none to offer.
pub async fn reset_credits(State(_app): State<Arc<App>>) -> Json<Value> {
    Json(json!({"available_count": 0, "credits": []}))
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
            if let Err(e) = app.reload_pool().await {
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
        Ok(true) => match app.reload_pool().await {
            Ok(_) => Json(json!({"id": id, "deleted": true})).into_response(),
            Err(e) => GateError::Internal(e.to_string()).into_response(),
        },
        Ok(false) => GateError::NotFound(format!("no account {id}")).into_response(),
        Err(e) => GateError::Internal(e.to_string()).into_response(),
    }
}

/// `POST /api/accounts/reload`: pick up accounts changed by the CLI.
pub async fn reload(State(app): State<Arc<App>>) -> Response {
    match app.reload_pool().await {
        Ok(n) => Json(json!({"accounts": n})).into_response(),
        Err(e) => GateError::Internal(e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    /// `browser` (default) or `device`.
    mode: Option<String>,
    port: Option<u16>,
}

/// `POST /api/accounts/login`: start a login; it completes in the background and the account
/// joins the pool. Browser logins fall back to the device code when the port is taken.
pub async fn login(State(app): State<Arc<App>>, body: Bytes) -> Response {
    use crate::pool::login::{BrowserLogin, DeviceLogin, LoginError};
    let req: LoginRequest = if body.is_empty() {
        LoginRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return GateError::bad_request(format!("invalid login request: {e}"), None).into_response(),
        }
    };
    let p = &app.config.pool;
    let oauth = crate::pool::refresh::OAuthConfig { issuer: p.issuer.clone(), client_id: p.client_id.clone() };
    let timeout = std::time::Duration::from_secs(15 * 60);
    if !matches!(req.mode.as_deref(), None | Some("browser" | "device")) {
        return GateError::bad_request("mode must be \"browser\" or \"device\"", Some("mode".into())).into_response();
    }
    let id = app.logins.begin();
    let finish = |app: Arc<App>, id: String, result: Result<crate::pool::auth::Tokens, LoginError>| async move {
        use crate::pool::login::LoginState;
        let state = match result {
            Ok(tokens) => match crate::pool::state::save_login(&app.store, app.pool.cipher(), &tokens).await {
                Ok((account, ident)) => {
                    let _ = app.reload_pool().await;
                    tracing::info!(account = %account, "login complete; account added to the pool");
                    LoginState::Done { account, email: ident.email }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "login tokens could not be saved");
                    LoginState::Failed { error: format!("the tokens could not be saved: {e}") }
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "login did not complete");
                LoginState::Failed { error: e.to_string() }
            }
        };
        app.logins.set(&id, state);
    };
    if req.mode.as_deref().unwrap_or("browser") == "browser" {
        match BrowserLogin::start(&oauth, req.port.unwrap_or(p.login_callback_port), &p.originator, true).await {
            Ok(l) => {
                let out =
                    json!({"id": id, "mode": "browser", "authorize_url": l.authorize_url, "callback_port": l.port()});
                let app2 = app.clone();
                tokio::spawn(async move {
                    let r = l.wait(&app2.client, &oauth, timeout).await;
                    finish(app2, id, r).await;
                });
                return Json(out).into_response();
            }
            Err(LoginError::PortBusy(_)) => {}
            Err(e) => {
                app.logins.set(&id, crate::pool::login::LoginState::Failed { error: e.to_string() });
                return GateError::Internal(e.to_string()).into_response();
            }
        }
    }
    match DeviceLogin::start(&app.client, &oauth).await {
        Ok(d) => {
            let out =
                json!({"id": id, "mode": "device", "verification_url": d.verification_url, "user_code": d.user_code});
            let app2 = app.clone();
            tokio::spawn(async move {
                let r = d.wait(&app2.client, &oauth, timeout).await;
                finish(app2, id, r).await;
            });
            Json(out).into_response()
        }
        Err(e) => {
            app.logins.set(&id, crate::pool::login::LoginState::Failed { error: e.to_string() });
            GateError::Unreachable { target: "the OAuth issuer".into(), detail: e.to_string() }.into_response()
        }
    }
}

/// `GET /api/accounts/login/{id}`: where a login started with `POST /api/accounts/login` stands.
pub async fn login_state(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.logins.get(&id) {
        Some(s) => Json(s).into_response(),
        None => GateError::NotFound(format!("no login {id} (logins are remembered until 32 newer ones start)"))
            .into_response(),
    }
}
