//! The OpenAI error envelope, `{"error":{"message","type","code","param"}}`, which every error
//! codex-gate produces uses, and which clients such as Codex parse to decide whether to retry.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorObject,
}

/// The inner error object. Extra fields (`plan_type`, `resets_at`, …) are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub code: Option<String>,
    pub param: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ErrorEnvelope {
    /// A new envelope with no `param` and no extra fields.
    pub fn new(kind: &str, code: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorObject {
                message: message.into(),
                kind: kind.to_owned(),
                code: code.map(str::to_owned),
                param: None,
                extra: Map::new(),
            },
        }
    }

    /// Serialize to JSON bytes (infallible for this type).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Best-effort read of an upstream error body: an OpenAI envelope, a bare `{"message"}` /
/// `{"detail"}` object (the ChatGPT backend answers `{"detail":"..."}`), or plain text.
/// Returns (type, code, message).
pub fn read_upstream_error(body: &[u8]) -> (Option<String>, Option<String>, String) {
    let text = || String::from_utf8_lossy(body).trim().chars().take(2000).collect::<String>();
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (None, None, text());
    };
    let obj = v.get("error").unwrap_or(&v);
    if let Some(s) = obj.as_str() {
        return (None, None, s.to_owned());
    }
    let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    let code = s("code").or_else(|| obj.get("code").filter(|c| c.is_number()).map(|c| c.to_string()));
    let message = s("message").or_else(|| s("detail")).unwrap_or_else(text);
    (s("type"), code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape() {
        let e = ErrorEnvelope::new("invalid_request_error", Some("model_not_found"), "nope");
        let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error":{"message":"nope","type":"invalid_request_error","code":"model_not_found","param":null}})
        );
    }

    #[test]
    fn reads_various_upstream_bodies() {
        let (t, c, m) =
            read_upstream_error(br#"{"error":{"type":"usage_limit_reached","message":"limit","plan_type":"plus"}}"#);
        assert_eq!((t.as_deref(), c, m.as_str()), (Some("usage_limit_reached"), None, "limit"));
        let (_, _, m) = read_upstream_error(br#"{"detail":"Unsupported parameter: max_output_tokens"}"#);
        assert_eq!(m, "Unsupported parameter: max_output_tokens");
        let (_, _, m) = read_upstream_error(b"  Bad Gateway \n");
        assert_eq!(m, "Bad Gateway");
        let (_, c, _) = read_upstream_error(br#"{"error":{"message":"x","code":1234}}"#);
        assert_eq!(c.as_deref(), Some("1234"));
    }
}
