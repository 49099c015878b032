//! Talking to the OAuth issuer's token endpoint: the JSON refresh grant (codex-protocol §6.5),
//! with permanent failures (the user must log in again) told apart from transient ones.

use crate::upstream::client::UpstreamClient;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// Codex's public OAuth client.
pub const CODEX_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// Where the OAuth issuer is.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// e.g. `https://auth.openai.com`
    pub issuer: String,
    pub client_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshError {
    /// The refresh token is dead: expired, reused, revoked, or the account is deactivated.
    Permanent(String),
    /// Try again later.
    Transient(String),
}

/// The answer of the token endpoint; absent fields keep their old values.
#[derive(Debug, Default, Deserialize)]
pub struct TokenAnswer {
    pub id_token: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
}

const PERMANENT: &[&str] = &[
    "refresh_token_expired",
    "refresh_token_reused",
    "refresh_token_invalidated",
    "invalid_grant",
    "token_invalidated",
    "account_deactivated",
    "user_deactivated",
];

fn error_code(body: &Value) -> Option<String> {
    let e = body.get("error");
    e.and_then(|e| e.get("code")).or_else(|| body.get("code")).or(e).and_then(Value::as_str).map(str::to_owned)
}

/// POST `{issuer}/oauth/token` with a refresh grant.
pub async fn refresh(
    client: &UpstreamClient,
    oauth: &OAuthConfig,
    refresh_token: &str,
) -> Result<TokenAnswer, RefreshError> {
    let body = json!({"client_id": oauth.client_id, "grant_type": "refresh_token", "refresh_token": refresh_token})
        .to_string();
    let req = http::Request::post(format!("{}/oauth/token", oauth.issuer.trim_end_matches('/')))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Bytes::from(body))
        .map_err(|e| RefreshError::Transient(e.to_string()))?;
    let send = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| RefreshError::Transient(format!("token endpoint unreachable: {e}")))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        Ok::<_, RefreshError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(Duration::from_secs(30), send)
        .await
        .map_err(|_| RefreshError::Transient("token endpoint timed out".into()))??;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| RefreshError::Transient(format!("bad token answer: {e}")));
    }
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let code = error_code(&v);
    match code {
        Some(c) if PERMANENT.contains(&c.as_str()) => Err(RefreshError::Permanent(c)),
        _ if status == http::StatusCode::UNAUTHORIZED => {
            Err(RefreshError::Permanent(code.unwrap_or_else(|| "unauthorized".into())))
        }
        _ => Err(RefreshError::Transient(format!(
            "token endpoint answered {status}{}",
            code.map(|c| format!(" ({c})")).unwrap_or_default()
        ))),
    }
}
