//! ChatGPT OAuth logins (codex-protocol §6): browser PKCE with a callback listener on
//! `localhost:1455` that exists only while a login is pending (closed on success, failure or
//! after 15 minutes — an abandoned listener would hijack Codex Desktop's own login), the
//! device-code flow, and pasting the callback URL on servers without a browser.

use super::refresh::OAuthConfig;
use crate::upstream::client::UpstreamClient;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const SCOPES: &str = "openid profile email offline_access api.connectors.read api.connectors.invoke";

/// Tokens from a finished login.
pub type LoginTokens = super::auth::Tokens;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the callback port {0} is taken")]
    PortBusy(u16),
    #[error("login timed out after {0} s")]
    Timeout(u64),
    #[error("the callback's state does not match this login (possible CSRF); nothing was saved")]
    StateMismatch,
    #[error("the authorization server said: {0}")]
    Denied(String),
    #[error("{0}")]
    Failed(String),
}

/// Logins started through the admin API, newest last, so the dashboard can follow one by id.
#[derive(Debug, Default)]
pub struct Logins(parking_lot::Mutex<std::collections::VecDeque<(String, LoginState)>>);

/// Where a login started through the admin API stands.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LoginState {
    Pending,
    Done { account: String, email: Option<String> },
    Failed { error: String },
}

/// Logins remembered at most (older ones are forgotten).
const LOGINS_KEPT: usize = 32;

impl Logins {
    /// A new pending login; returns its id.
    pub fn begin(&self) -> String {
        let id = format!("login_{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>()));
        let mut l = self.0.lock();
        if l.len() >= LOGINS_KEPT {
            l.pop_front();
        }
        l.push_back((id.clone(), LoginState::Pending));
        id
    }

    pub fn set(&self, id: &str, state: LoginState) {
        if let Some(e) = self.0.lock().iter_mut().find(|(i, _)| i == id) {
            e.1 = state;
        }
    }

    pub fn get(&self, id: &str) -> Option<LoginState> {
        self.0.lock().iter().find(|(i, _)| i == id).map(|(_, s)| s.clone())
    }
}

/// PKCE verifier and S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(
        rand::random::<[u8; 32]>().iter().chain(rand::random::<[u8; 32]>().iter()).copied().collect::<Vec<u8>>(),
    );
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Percent-encode a query/form value (everything but RFC 3986 unreserved characters).
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn dec(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query parameters of a URL or a bare query string.
pub fn query_params(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').map_or(url, |(_, q)| q);
    let q = q.split('#').next().unwrap_or("");
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

/// A browser login in progress.
#[derive(Debug)]
pub struct BrowserLogin {
    pub authorize_url: String,
    pub redirect_uri: String,
    state: String,
    verifier: String,
    listener: Option<TcpListener>,
}

impl BrowserLogin {
    /// Prepare a login whose callback is `http://localhost:{port}/auth/callback`. With
    /// `listen`, binds the port now (127.0.0.1); without, the callback URL is pasted instead.
    pub async fn start(
        oauth: &OAuthConfig,
        port: u16,
        originator: &str,
        listen: bool,
    ) -> Result<BrowserLogin, LoginError> {
        let listener = if listen {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => Some(l),
                Err(_) => return Err(LoginError::PortBusy(port)),
            }
        } else {
            None
        };
        let port = listener.as_ref().and_then(|l| l.local_addr().ok()).map_or(port, |a| a.port());
        let redirect_uri = format!("http://localhost:{port}/auth/callback");
        let (verifier, challenge) = pkce();
        let state = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let params = [
            ("response_type", "code"),
            ("client_id", oauth.client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", SCOPES),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("id_token_add_organizations", "true"),
            ("codex_cli_simplified_flow", "true"),
            ("state", state.as_str()),
            ("originator", originator),
        ];
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
        let authorize_url = format!("{}/oauth/authorize?{}", oauth.issuer, query.join("&"));
        Ok(BrowserLogin { authorize_url, redirect_uri, state, verifier, listener })
    }

    /// The port the callback listener is bound to.
    pub fn port(&self) -> Option<u16> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port())
    }

    /// Wait for the browser's callback (at most `timeout`), answer it, close the listener, and
    /// exchange the code. The listener is dropped on every path out of this function.
    pub async fn wait(
        mut self,
        client: &UpstreamClient,
        oauth: &OAuthConfig,
        timeout: Duration,
    ) -> Result<LoginTokens, LoginError> {
        let listener = self.listener.take().ok_or_else(|| LoginError::Failed("no callback listener".into()))?;
        let got = tokio::time::timeout(timeout, async {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { continue };
                // A browser sends the whole head at once; anything slower or larger is not one.
                let Some(head) = read_head(&mut sock).await else { continue };
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                if !target.starts_with("/auth/callback") {
                    let _ = sock.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                    continue;
                }
                let result = self.finish(client, oauth, &target).await;
                let (status, text) = match &result {
                    Ok(_) => ("200 OK", "Signed in. codex-gate has added this account to its pool; you can close this tab.".to_owned()),
                    Err(e) => ("400 Bad Request", format!("Sign-in failed: {e}")),
                };
                let page = format!("<!doctype html><title>codex-gate</title><p>{}</p>", html_escape(&text));
                let resp = format!("HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}", page.len());
                let _ = sock.write_all(resp.as_bytes()).await;
                return result;
            }
        })
        .await;
        drop(listener);
        got.unwrap_or(Err(LoginError::Timeout(timeout.as_secs())))
    }

    /// Finish with a pasted callback URL (or its query string).
    pub async fn finish(
        &self,
        client: &UpstreamClient,
        oauth: &OAuthConfig,
        callback: &str,
    ) -> Result<LoginTokens, LoginError> {
        let params = query_params(callback);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let Some(e) = get("error") {
            return Err(LoginError::Denied(format!(
                "{e}{}",
                get("error_description").map(|d| format!(": {d}")).unwrap_or_default()
            )));
        }
        if get("state").as_deref() != Some(self.state.as_str()) {
            return Err(LoginError::StateMismatch);
        }
        let code = get("code").ok_or_else(|| LoginError::Failed("the callback has no code".into()))?;
        exchange_code(client, oauth, &code, &self.redirect_uri, &self.verifier).await
    }
}

async fn post(
    client: &UpstreamClient,
    url: &str,
    content_type: &str,
    body: String,
) -> Result<(u16, Value), LoginError> {
    let req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::ACCEPT, "application/json")
        .body(Bytes::from(body))
        .map_err(|e| LoginError::Failed(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| LoginError::Failed(format!("{url} timed out")))?
        .map_err(|e| LoginError::Failed(format!("{url} unreachable: {e}")))?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// The authorization-code grant (form-encoded, §6.3).
pub async fn exchange_code(
    client: &UpstreamClient,
    oauth: &OAuthConfig,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<LoginTokens, LoginError> {
    let form = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&client_id={}&code_verifier={}",
        enc(code),
        enc(redirect_uri),
        enc(&oauth.client_id),
        enc(verifier)
    );
    let (status, v) =
        post(client, &format!("{}/oauth/token", oauth.issuer), "application/x-www-form-urlencoded", form).await?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    match (status, s("id_token"), s("access_token"), s("refresh_token")) {
        (200, Some(id_token), Some(access_token), Some(refresh_token)) => {
            Ok(LoginTokens { id_token, access_token, refresh_token, account_id: None })
        }
        (200, ..) => Err(LoginError::Failed("the token endpoint did not return id, access and refresh tokens".into())),
        (status, ..) => Err(LoginError::Denied(format!(
            "token exchange answered {status}: {}",
            v.get("error").map(Value::to_string).unwrap_or_default()
        ))),
    }
}

/// A device-code login: show `user_code` at `verification_url`, then [`DeviceLogin::wait`].
#[derive(Debug)]
pub struct DeviceLogin {
    pub verification_url: String,
    pub user_code: String,
    device_auth_id: String,
    interval: Duration,
}

impl DeviceLogin {
    pub async fn start(client: &UpstreamClient, oauth: &OAuthConfig) -> Result<DeviceLogin, LoginError> {
        let url = format!("{}/api/accounts/deviceauth/usercode", oauth.issuer);
        let (status, v) =
            post(client, &url, "application/json", json!({"client_id": oauth.client_id}).to_string()).await?;
        if status == 404 {
            return Err(LoginError::Failed("device-code login is not enabled on this issuer".into()));
        }
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let user_code = s("user_code")
            .or_else(|| s("usercode"))
            .ok_or_else(|| LoginError::Failed(format!("no user code in {v}")))?;
        let interval =
            v.get("interval").and_then(|i| i.as_str().and_then(|s| s.parse().ok()).or_else(|| i.as_u64())).unwrap_or(5);
        Ok(DeviceLogin {
            verification_url: format!("{}/codex/device", oauth.issuer),
            user_code,
            device_auth_id: s("device_auth_id").unwrap_or_default(),
            interval: Duration::from_secs(interval),
        })
    }

    /// Poll until the user approved (or `timeout`), then exchange the code.
    pub async fn wait(
        self,
        client: &UpstreamClient,
        oauth: &OAuthConfig,
        timeout: Duration,
    ) -> Result<LoginTokens, LoginError> {
        let url = format!("{}/api/accounts/deviceauth/token", oauth.issuer);
        let body = json!({"device_auth_id": self.device_auth_id, "user_code": self.user_code}).to_string();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (status, v) = post(client, &url, "application/json", body.clone()).await?;
            match status {
                200 => {
                    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                    let redirect = format!("{}/deviceauth/callback", oauth.issuer);
                    return exchange_code(client, oauth, &s("authorization_code"), &redirect, &s("code_verifier"))
                        .await;
                }
                403 | 404 => {}
                other => return Err(LoginError::Denied(format!("device login answered {other}"))),
            }
            if tokio::time::Instant::now() + self.interval > deadline {
                return Err(LoginError::Timeout(timeout.as_secs()));
            }
            tokio::time::sleep(self.interval.max(Duration::from_millis(50))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_and_encoding() {
        let (v, c) = pkce();
        assert_eq!(v.len(), 86, "64 random bytes, base64url without padding");
        assert_eq!(c, URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())));
        assert_eq!(enc("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        let p = query_params("http://localhost:1455/auth/callback?code=ab%2Fc&state=x+y&empty=");
        assert_eq!(
            p,
            [("code".into(), "ab/c".into()), ("state".into(), "x y".into()), ("empty".into(), String::new())]
        );
    }
}

/// Longest callback request head read, and how long it may take.
const CALLBACK_HEAD_MAX: usize = 8 << 10;
const CALLBACK_HEAD_TIME: Duration = Duration::from_secs(5);

/// The callback's request head: at most [`CALLBACK_HEAD_MAX`] bytes within [`CALLBACK_HEAD_TIME`].
async fn read_head(sock: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < CALLBACK_HEAD_MAX {
            let n = sock.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n.min(CALLBACK_HEAD_MAX - buf.len())]);
        }
        Some(())
    };
    tokio::time::timeout(CALLBACK_HEAD_TIME, read).await.ok()??;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Text for an HTML page: the OAuth error text comes from the URL, i.e. from whoever made it.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod page_tests {
    use super::html_escape;

    #[test]
    fn callback_text_is_escaped() {
        assert_eq!(
            html_escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
