//! The mock ChatGPT side: `POST …/codex/responses` checks `Authorization` and
//! `ChatGPT-Account-Id` against known accounts, and `POST /oauth/token` rotates single-use
//! refresh tokens like the real issuer (reuse is refused with `refresh_token_reused`); open
//! accounts take any token, for pools built outside the process.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

/// An unsigned JWT with these claims.
pub fn jwt(claims: &Value) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.mock", enc(&json!({"alg": "none", "typ": "JWT"})), enc(claims))
}

/// An id_token naming (user, account).
pub fn id_token(user: &str, account: &str, email: &str, plan: &str) -> String {
    jwt(&json!({"email": email, "exp": 4_000_000_000u64, "https://api.openai.com/auth":
        {"chatgpt_account_id": account, "chatgpt_user_id": user, "chatgpt_plan_type": plan}}))
}

/// An access token for `account` expiring at `exp` (unix s).
pub fn access_token(account: &str, serial: usize, exp: i64) -> String {
    jwt(&json!({"exp": exp, "serial": serial, "https://api.openai.com/auth": {"chatgpt_account_id": account}}))
}

#[derive(Debug, Clone)]
pub struct MockAccount {
    pub access_token: String,
    pub refresh_token: String,
    /// A scenario forced for every request of this account (e.g. `usage-limit`), else the model's.
    pub behavior: Option<String>,
    /// The next refresh fails permanently with this code.
    pub refresh_error: Option<String>,
    pub serial: usize,
    /// Used percent of the 5-hour window reported by `wham/usage`.
    pub usage_primary: f64,
    /// Turns the account still answers before its usage limit is reached (`None`: no limit).
    pub turns_left: Option<usize>,
}

#[derive(Debug, Default)]
pub struct ChatgptState {
    pub accounts: Mutex<HashMap<String, MockAccount>>,
    /// Authorization codes waiting to be exchanged: code → (account, plan).
    pub codes: Mutex<HashMap<String, (String, String)>>,
    /// The code the device flow hands out, and how many polls stay pending first.
    pub device: Mutex<Option<(String, usize)>>,
    pub token_calls: AtomicUsize,
    /// Delay of the token endpoint, to widen refresh races.
    pub token_delay_ms: AtomicUsize,
    /// Behaviours for accounts that do not exist yet (a login still to come), applied when the
    /// account's code is exchanged.
    pub behavior_at_login: Mutex<HashMap<String, String>>,
    /// Accounts that take any bearer token and any `rt-<account>-<n>` refresh token: a pool
    /// built outside this process (another gateway's, in the benchmark) can use them.
    pub open: RwLock<HashSet<String>>,
}

pub enum Auth {
    Ok { account: String, behavior: Option<String>, usage_primary: f64 },
    Unauthorized,
}

impl ChatgptState {
    pub fn check(&self, authorization: Option<&str>, account_id: Option<&str>) -> Auth {
        let accounts = self.accounts.lock();
        let (Some(auth), Some(id)) = (authorization, account_id) else { return Auth::Unauthorized };
        match accounts.get(id) {
            Some(a) if auth == format!("Bearer {}", a.access_token) => {
                Auth::Ok { account: id.to_owned(), behavior: a.behavior.clone(), usage_primary: a.usage_primary }
            }
            None if auth.len() > "Bearer ".len() && auth.starts_with("Bearer ") && self.open.read().contains(id) => {
                Auth::Ok { account: id.to_owned(), behavior: None, usage_primary: 0.0 }
            }
            _ => Auth::Unauthorized,
        }
    }

    /// Count a turn against the account's `turns_left`: false when it has none left (the turn
    /// gets `usage-limit`).
    pub fn take_turn(&self, account: &str) -> bool {
        match self.accounts.lock().get_mut(account).and_then(|a| a.turns_left.as_mut()) {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }

    /// The authorization-code grant (form-encoded): (status, body).
    pub fn exchange(&self, form: &HashMap<String, String>) -> (u16, Value) {
        self.token_calls.fetch_add(1, Ordering::SeqCst);
        let code = form.get("code").cloned().unwrap_or_default();
        let Some((account, plan)) = self.codes.lock().remove(&code) else {
            return (400, json!({"error": "invalid_grant", "error_description": "unknown or used code"}));
        };
        if form.get("code_verifier").is_none_or(|v| v.is_empty()) || form.get("redirect_uri").is_none() {
            return (400, json!({"error": "invalid_request"}));
        }
        let a = MockAccount {
            access_token: access_token(&account, 0, 4_000_000_000),
            refresh_token: format!("rt-{account}-0"),
            behavior: self.behavior_at_login.lock().remove(&account),
            refresh_error: None,
            serial: 0,
            usage_primary: 0.0,
            turns_left: None,
        };
        let out = json!({"id_token": id_token(&format!("user-{account}"), &account, &format!("{account}@example.com"), &plan),
                         "access_token": a.access_token, "refresh_token": a.refresh_token});
        self.accounts.lock().insert(account, a);
        (200, out)
    }

    /// (account, serial) of an open account's refresh token `rt-<account>-<serial>`.
    fn open_refresh(&self, rt: &str) -> Option<(String, usize)> {
        let (id, serial) = rt.strip_prefix("rt-")?.rsplit_once('-')?;
        let serial = serial.parse().ok()?;
        self.open.read().contains(id).then(|| (id.to_owned(), serial))
    }

    /// Device-code polling: pending (403) until the configured number of polls has passed.
    pub fn device_poll(&self) -> (u16, Value) {
        let mut d = self.device.lock();
        match d.as_mut() {
            Some((_, pending)) if *pending > 0 => {
                *pending -= 1;
                (403, json!({"error": "authorization_pending"}))
            }
            Some((code, _)) => {
                (200, json!({"authorization_code": code, "code_challenge": "c", "code_verifier": "device-verifier"}))
            }
            None => (404, json!({"error": "not_found"})),
        }
    }

    /// The refresh grant: (status, body).
    pub fn refresh(&self, body: &Value) -> (u16, Value) {
        self.token_calls.fetch_add(1, Ordering::SeqCst);
        let rt = body["refresh_token"].as_str().unwrap_or_default();
        if body["grant_type"] != "refresh_token" {
            return (400, json!({"error": {"code": "unsupported_grant_type"}}));
        }
        let mut accounts = self.accounts.lock();
        let Some((id, a)) = accounts.iter_mut().find(|(_, a)| a.refresh_token == rt) else {
            if let Some((id, serial)) = self.open_refresh(rt) {
                return (
                    200,
                    json!({"access_token": access_token(&id, serial + 1, 4_000_000_000),
                                    "refresh_token": format!("rt-{id}-{}", serial + 1), "id_token": null}),
                );
            }
            return (
                401,
                json!({"error": {"code": "refresh_token_reused", "message": "refresh token was already used"}}),
            );
        };
        if let Some(code) = a.refresh_error.clone() {
            // A numeric code is an HTTP status (a transient outage); anything else a 401 with that code.
            let status = code.parse::<u16>().unwrap_or(401);
            return (status, json!({"error": {"code": code, "message": "refresh failed"}}));
        }
        a.serial += 1;
        a.access_token = access_token(id, a.serial, 4_000_000_000);
        a.refresh_token = format!("rt-{id}-{}", a.serial);
        (200, json!({"access_token": a.access_token, "refresh_token": a.refresh_token, "id_token": null}))
    }
}
