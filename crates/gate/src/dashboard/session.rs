//! Dashboard sign-in: sessions in memory behind an `HttpOnly; SameSite=Strict` cookie, each with
//! its own CSRF token that every state-changing request must echo in `x-csrf-token`. A session
//! starts from an admin key or from the `[dashboard] password_hash` password (argon2, checked off
//! the async threads); failed sign-ins are limited per client address. Loopback without any admin
//! key needs no sign-in, and then the page gets a process-wide CSRF token instead.

use crate::app::App;
use crate::error::GateError;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue};
use parking_lot::Mutex;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub const COOKIE: &str = "cg_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 1024;
/// Failed sign-ins per address per window before refusing.
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW_MS: i64 = 5 * 60_000;

#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    created_ms: i64,
    expires_ms: i64,
    /// Signed in with this admin key: the session ends when the key is revoked or expires.
    key_id: Option<String>,
}

#[derive(Debug)]
pub struct Sessions {
    /// By SHA-256 of the cookie value.
    map: Mutex<HashMap<[u8; 32], Session>>,
    /// The CSRF token of loopback pages while no sign-in is needed.
    pub anon_csrf: String,
    failures: Mutex<HashMap<IpAddr, (u32, i64)>>,
}

fn token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions { map: Mutex::default(), anon_csrf: token(), failures: Mutex::default() }
    }
}

/// The session cookie's value in a request, if it sent one.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').find_map(|c| c.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('='))))
}

/// Requests a browser made carry `Origin` or `Sec-Fetch-*`; the CLI's and SDKs' do not.
pub fn from_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN)
        || headers.contains_key("sec-fetch-site")
        || headers.contains_key("sec-fetch-mode")
}

/// The request echoes `expected` in `x-csrf-token` (compared in constant time).
pub fn csrf_ok(headers: &HeaderMap, expected: &str) -> bool {
    let Some(got) = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes) else { return false };
    got.len() == expected.len() && got.iter().zip(expected.as_bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

pub fn csrf_refusal() -> GateError {
    GateError::Forbidden {
        code: "csrf_failed",
        message: "this request changes state and needs the page's CSRF token in x-csrf-token; reload the dashboard"
            .into(),
    }
}

impl Sessions {
    fn create(&self, ttl_ms: i64, key_id: Option<String>) -> (String, Session) {
        let value = token();
        let now = crate::now_ms();
        let s = Session { csrf: token(), created_ms: now, expires_ms: now + ttl_ms, key_id };
        let mut map = self.map.lock();
        map.retain(|_, s| s.expires_ms > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created_ms).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(Sha256::digest(value.as_bytes()).into(), s.clone());
        (value, s)
    }

    /// The live session a request's cookie names.
    pub fn find(&self, app: &App, headers: &HeaderMap) -> Option<Session> {
        let value = cookie(headers)?;
        let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        let now = crate::now_ms();
        let mut map = self.map.lock();
        let s = map.get(&digest)?.clone();
        let key_gone = s.key_id.as_deref().is_some_and(|id| {
            app.keys.current().get(id).is_none_or(|k| !k.admin || k.revoked || k.expires_ms.is_some_and(|e| e <= now))
        });
        if s.expires_ms <= now || key_gone {
            map.remove(&digest);
            return None;
        }
        Some(s)
    }

    fn end(&self, headers: &HeaderMap) {
        if let Some(v) = cookie(headers) {
            let digest: [u8; 32] = Sha256::digest(v.as_bytes()).into();
            self.map.lock().remove(&digest);
        }
    }

    /// May `ip` try to sign in now? Counts nothing.
    fn may_try(&self, ip: IpAddr) -> bool {
        let now = crate::now_ms();
        let mut f = self.failures.lock();
        f.retain(|_, (_, since)| now - *since < FAILURE_WINDOW_MS);
        f.get(&ip).is_none_or(|(n, _)| *n < MAX_FAILURES)
    }

    fn failed(&self, ip: IpAddr) {
        let now = crate::now_ms();
        let mut f = self.failures.lock();
        // Bounded: an address flood resets the table rather than growing it.
        if f.len() >= 10_000 {
            f.clear();
        }
        f.entry(ip).or_insert((0, now)).0 += 1;
    }
}

/// The client's address, when the server recorded one (tests that drive the router in-process
/// have none).
pub struct Peer(Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Peer, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip().to_canonical())))
    }
}

/// `GET /dashboard/api/session`: is this browser signed in (or on loopback with no admin key),
/// its CSRF token, and which sign-ins exist. Same-origin only: another site cannot read it.
pub async fn status(State(app): State<Arc<App>>, Peer(peer): Peer, headers: HeaderMap) -> Json<serde_json::Value> {
    let keys = app.keys.current();
    let open = !keys.admin_exists && peer.is_some_and(|ip| ip.is_loopback());
    let (signed_in, via, csrf) = match app.sessions.find(&app, &headers) {
        Some(s) => (true, Some("session"), Some(s.csrf)),
        None if open => (true, Some("loopback"), Some(app.sessions.anon_csrf.clone())),
        None => (false, None, None),
    };
    Json(json!({
        "signed_in": signed_in, "via": via, "csrf": csrf,
        "password_login": app.config.dashboard.password_hash.is_some(),
        "admin_key_exists": keys.admin_exists, "keys_exist": keys.any,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    key: Option<String>,
    password: Option<String>,
}

/// `POST /dashboard/api/login` with `{"key": "cg-…"}` (an admin key) or `{"password": "…"}`.
pub async fn login(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    crate::routes::admin::JsonBody(body): crate::routes::admin::JsonBody<Login>,
) -> Response {
    let ip = peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if !app.sessions.may_try(ip) {
        let e = GateError::Forbidden {
            code: "too_many_sign_ins",
            message: "too many failed sign-ins from this address; wait five minutes".into(),
        };
        let mut resp = e.into_response();
        *resp.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("300"));
        return resp;
    }
    let key_id = match (body.key.filter(|k| !k.is_empty()), body.password.filter(|p| !p.is_empty())) {
        (Some(k), _) => match app.keys.current().check(Some(k.trim()), crate::now_ms()) {
            Ok(k) if k.admin => Some(Some(k.id.clone())),
            _ => None,
        },
        (None, Some(p)) => match app.config.dashboard.password_hash.clone() {
            Some(hash) => {
                // argon2 is deliberately slow (tens of ms): not on the async threads.
                let ok = tokio::task::spawn_blocking(move || {
                    use argon2::PasswordVerifier;
                    argon2::PasswordHash::new(&hash)
                        .is_ok_and(|h| argon2::Argon2::default().verify_password(p.as_bytes(), &h).is_ok())
                })
                .await
                .unwrap_or(false);
                ok.then_some(None)
            }
            None => None,
        },
        (None, None) => return GateError::bad_request("send {\"key\": …} or {\"password\": …}", None).into_response(),
    };
    let Some(key_id) = key_id else {
        app.sessions.failed(ip);
        app.metrics.auth_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return GateError::Forbidden {
            code: "sign_in_failed",
            message: "that is not an admin key or the dashboard password".into(),
        }
        .into_response();
    };
    let ttl = app.config.dashboard.session_ttl;
    let (value, s) = app.sessions.create(ttl.as_millis() as i64, key_id);
    let secure = headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let mut resp = Json(json!({"signed_in": true, "csrf": s.csrf})).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /dashboard/api/logout`.
pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(s) = app.sessions.find(&app, &headers) {
        if !csrf_ok(&headers, &s.csrf) {
            return csrf_refusal().into_response();
        }
    }
    app.sessions.end(&headers);
    let mut resp = Json(json!({"signed_in": false})).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("cg_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; cg_session=abc; cg_session_x=no".parse().unwrap());
        assert_eq!(cookie(&h), Some("abc"));
        h.insert(header::COOKIE, "cg_sessionx=1".parse().unwrap());
        assert_eq!(cookie(&h), None);
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!csrf_ok(&h, "tok"));
        h.insert(CSRF_HEADER, "tok".parse().unwrap());
        assert!(csrf_ok(&h, "tok"));
        assert!(!csrf_ok(&h, "tok2"));
        assert!(!csrf_ok(&h, "to"));
    }

    #[test]
    fn failed_sign_ins_are_limited_per_address() {
        let s = Sessions::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(s.may_try(ip));
            s.failed(ip);
        }
        assert!(!s.may_try(ip));
        assert!(s.may_try("10.0.0.2".parse().unwrap()));
    }
}
