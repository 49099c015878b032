//! ChatGPT OAuth token facts: JWT claims (read, not verified — as Codex does, codex-protocol
//! §6.4), the account identity they carry, and Codex's `auth.json` (§6.8).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The payload of a JWT, unverified.
pub fn jwt_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `exp` of a JWT, in unix milliseconds.
pub fn jwt_expiry_ms(token: &str) -> Option<i64> {
    jwt_claims(token)?.get("exp")?.as_i64().map(|s| s * 1000)
}

/// Who an account is: several workspace seats of one email are different accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub chatgpt_user_id: String,
    pub chatgpt_account_id: String,
    pub email: Option<String>,
    pub plan_type: Option<String>,
}

impl Identity {
    /// From an id_token's claims.
    pub fn from_id_token(id_token: &str) -> Result<Identity, String> {
        let c = jwt_claims(id_token).ok_or("the id_token is not a readable JWT")?;
        let auth = c.get("https://api.openai.com/auth").cloned().unwrap_or(Value::Null);
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let account = s(&auth, "chatgpt_account_id").ok_or("the id_token has no chatgpt_account_id claim")?;
        let user = s(&auth, "chatgpt_user_id")
            .or_else(|| s(&auth, "user_id"))
            .or_else(|| s(&c, "sub"))
            .ok_or("the id_token names no user")?;
        let email = s(&c, "email").or_else(|| c.get("https://api.openai.com/profile").and_then(|p| s(p, "email")));
        Ok(Identity {
            chatgpt_user_id: user,
            chatgpt_account_id: account,
            email,
            plan_type: s(&auth, "chatgpt_plan_type"),
        })
    }

    /// Stable account id derived from the identity pair.
    pub fn account_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.chatgpt_user_id.as_bytes());
        h.update([0]);
        h.update(self.chatgpt_account_id.as_bytes());
        format!("acct_{}", h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect::<String>())
    }
}

/// The three tokens of a ChatGPT login.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(***)")
    }
}

/// Codex's `auth.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthDotJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<String>,
    #[serde(rename = "OPENAI_API_KEY", default)]
    pub openai_api_key: Option<String>,
    pub tokens: Option<Tokens>,
    #[serde(default)]
    pub last_refresh: Option<String>,
}

#[cfg(test)]
pub mod test_jwt {
    //! Unsigned JWTs for tests.
    use super::*;
    use serde_json::json;

    pub fn jwt(claims: &Value) -> String {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.sig", enc(&json!({"alg": "none"})), enc(claims))
    }

    pub fn id_token(user: &str, account: &str, email: &str, plan: &str) -> String {
        jwt(&json!({"email": email, "exp": 4_000_000_000u64, "https://api.openai.com/auth":
            {"chatgpt_account_id": account, "chatgpt_user_id": user, "chatgpt_plan_type": plan}}))
    }
}

#[cfg(test)]
mod tests {
    use super::test_jwt::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_and_expiry_from_claims() {
        let t = id_token("user-1", "acc-1", "a@x.com", "plus");
        let id = Identity::from_id_token(&t).unwrap();
        assert_eq!((id.chatgpt_user_id.as_str(), id.chatgpt_account_id.as_str()), ("user-1", "acc-1"));
        assert_eq!((id.email.as_deref(), id.plan_type.as_deref()), (Some("a@x.com"), Some("plus")));
        let seat2 = Identity::from_id_token(&id_token("user-1", "acc-2", "a@x.com", "team")).unwrap();
        assert_ne!(id.account_key(), seat2.account_key(), "two seats of one email are two accounts");
        assert_eq!(jwt_expiry_ms(&jwt(&json!({"exp": 10}))), Some(10_000));
        assert!(Identity::from_id_token("not.a.jwt").is_err());
        assert!(Identity::from_id_token(&jwt(&json!({"email": "x"}))).is_err());
    }

    #[test]
    fn auth_json_round_trip() {
        let text = r#"{"auth_mode":"chatgpt","OPENAI_API_KEY":null,"tokens":{"id_token":"i","access_token":"a","refresh_token":"r","account_id":"acc"},"last_refresh":"2026-08-18T12:34:56Z"}"#;
        let a: AuthDotJson = serde_json::from_str(text).unwrap();
        assert_eq!(a.tokens.as_ref().unwrap().refresh_token, "r");
        let back = serde_json::to_value(&a).unwrap();
        assert_eq!(back["OPENAI_API_KEY"], Value::Null);
        assert_eq!(back["tokens"]["account_id"], "acc");
        assert!(!format!("{a:?}").contains("\"r\""));
    }
}
