//! Sticky turns: `x-codex-turn-state`. Codex sends back, on every later request of a turn
//! (tool follow-ups, retries), the value the first answer of the turn carried. codex-gate answers
//! Codex clients with its own value — `cgt1.` + (the target and pool account that served, and the
//! upstream's own turn state) sealed with the store's key — and a request carrying it tries that
//! target first and prefers that account, while the upstream gets its own value back. Sealed, it
//! is opaque and cannot be forged to name an account, and any instance holding the key reads it;
//! a pin is only a preference inside what the route and the caller's key allow.

use crate::secrets::Cipher;
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

pub const HEADER: &str = "x-codex-turn-state";
const PREFIX: &str = "cgt1.";
const PLACE: &str = "turn-state/v1";
/// Longest turn state accepted from a client or an upstream.
const MAX_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnState {
    /// The target label that served (`provider/model`).
    #[serde(rename = "t")]
    pub target: String,
    /// The pool account that served.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The upstream's own turn state, returned to it on the turn's later requests.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

impl TurnState {
    pub fn seal(&self, cipher: &Cipher) -> Option<HeaderValue> {
        let json = serde_json::to_string(self).ok()?;
        HeaderValue::from_str(&format!("{PREFIX}{}", cipher.seal(&json, PLACE))).ok()
    }

    pub fn open(cipher: &Cipher, value: &str) -> Option<TurnState> {
        let sealed = value.strip_prefix(PREFIX).filter(|_| value.len() <= MAX_LEN)?;
        let (json, _) = cipher.open(sealed, PLACE).ok()?;
        serde_json::from_str(&json).ok()
    }
}

/// Take the gateway's turn state out of a request's headers, putting the upstream's own value
/// (if it had one) in its place. A value the gateway did not make is left for the upstream.
pub fn take(cipher: &Cipher, headers: &mut HeaderMap) -> Option<TurnState> {
    let value = headers.get(HEADER)?.to_str().ok()?;
    if !value.starts_with(PREFIX) {
        return None;
    }
    let state = TurnState::open(cipher, value);
    headers.remove(HEADER);
    if let Some(u) = state.as_ref().and_then(|s| s.upstream.as_deref()).and_then(|u| HeaderValue::from_str(u).ok()) {
        headers.insert(HEADER, u);
    }
    state
}

/// Answer headers for a Codex client: the gateway's turn state for what served, wrapping the
/// upstream's own value.
pub fn answer(cipher: &Cipher, headers: &mut HeaderMap, target: &str, account: Option<&str>) {
    let upstream = headers.get(HEADER).and_then(|v| v.to_str().ok()).filter(|v| v.len() <= MAX_LEN).map(str::to_owned);
    let state = TurnState { target: target.to_owned(), account: account.map(str::to_owned), upstream };
    if let Some(v) = state.seal(cipher) {
        headers.insert(HEADER, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_round_trips_sealed_and_the_upstream_gets_its_own_back() {
        let c = Cipher::from_key([3; 32]);
        let mut answer_headers = HeaderMap::new();
        answer_headers.insert(HEADER, HeaderValue::from_static("backend-state"));
        answer(&c, &mut answer_headers, "pool/gpt-5.5", Some("acct_1"));
        let sealed = answer_headers[HEADER].to_str().unwrap().to_owned();
        assert!(sealed.starts_with("cgt1.") && !sealed.contains("acct_1"), "{sealed}");
        let mut req = HeaderMap::new();
        req.insert(HEADER, HeaderValue::from_str(&sealed).unwrap());
        let s = take(&c, &mut req).unwrap();
        assert_eq!((s.target.as_str(), s.account.as_deref()), ("pool/gpt-5.5", Some("acct_1")));
        assert_eq!(req[HEADER], "backend-state", "the upstream's value goes back to it");
        // Another key, a damaged value: no pin, and the gateway's value is not forwarded.
        let mut req = HeaderMap::new();
        req.insert(HEADER, HeaderValue::from_str(&sealed).unwrap());
        assert_eq!(take(&Cipher::from_key([4; 32]), &mut req), None);
        assert!(req.get(HEADER).is_none());
        // A value the gateway did not make is the upstream's.
        let mut req = HeaderMap::new();
        req.insert(HEADER, HeaderValue::from_static("upstream-made"));
        assert_eq!(take(&c, &mut req), None);
        assert_eq!(req[HEADER], "upstream-made");
    }
}
