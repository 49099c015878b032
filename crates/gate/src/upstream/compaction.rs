//! Compaction for chat upstreams, emulated (the pure part is `codex_gate_protocol::compaction`):
//! the chat model writes a summary of the history, and Codex gets exactly one `compaction` item
//! whose `encrypted_content` is the gateway's own envelope — `cgc1.` + the summary sealed with
//! the store's key (ChaCha20-Poly1305, bound to `compaction/v1`), so only a gateway holding that
//! key can read it and a client cannot forge one. Later requests carrying the item have it
//! expanded back into the summary before any upstream sees them, whichever kind serves them.

use super::relay::Inbound;
use crate::error::GateError;
use crate::secrets::Cipher;
use bytes::Bytes;
use codex_gate_protocol::compaction;
use codex_gate_protocol::translate::chat_stream::completion_to_response;
use codex_gate_protocol::translate::ToolMap;
use serde_json::{json, Value};

/// The envelope's version prefix; a new format gets a new prefix and the old one stays readable.
const PREFIX: &str = "cgc1.";
const PLACE: &str = "compaction/v1";
/// Text of the user's own messages the v1 endpoint keeps verbatim beside the summary.
const V1_KEEP_CHARS: usize = 20_000;

/// Which compaction a chat upstream is emulating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compact {
    /// v2: a `/responses` turn ending in `compaction_trigger` (answered as a response).
    Trigger,
    /// v1: `POST /responses/compact` (answered as `{"output": [...]}`).
    Endpoint,
}

pub fn seal(cipher: &Cipher, summary: &str, model: &str) -> String {
    let inner = json!({"summary": summary, "model": model, "at_ms": crate::now_ms()}).to_string();
    format!("{PREFIX}{}", cipher.seal(&inner, PLACE))
}

/// The summary in an envelope this gateway sealed; `None` for anything else (an OpenAI
/// backend's opaque item, a forged or damaged one).
pub fn open(cipher: &Cipher, envelope: &str) -> Option<String> {
    let sealed = envelope.strip_prefix(PREFIX)?;
    let (inner, _) = cipher.open(sealed, PLACE).ok()?;
    let v: Value = serde_json::from_str(&inner).ok()?;
    v.get("summary").and_then(Value::as_str).map(str::to_owned)
}

/// The request body with the gateway's compaction items expanded into their summaries, or
/// `None` when it has none (found by a byte search, so other requests are not parsed).
pub fn expand_body(cipher: &Cipher, body: &[u8]) -> Option<Bytes> {
    // Built once: this search runs on every Responses request.
    static NEEDLE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"cgc1."));
    NEEDLE.find(body)?;
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let n = compaction::expand(&mut v, |s| open(cipher, s));
    (n > 0).then(|| {
        tracing::debug!(items = n, "compacted history expanded");
        Bytes::from(v.to_string())
    })
}

/// The client's answer to an emulated compaction, from the summary's chat completion: the body
/// and whether it is an event stream.
pub(super) fn answer(
    cipher: &Cipher,
    inb: &Inbound,
    kind: Compact,
    id: &str,
    target: &str,
    completion: &[u8],
) -> Result<(Bytes, bool), GateError> {
    let v: Value = serde_json::from_slice(completion).unwrap_or(Value::Null);
    let summary = v.pointer("/choices/0/message/content").and_then(Value::as_str).map(str::trim).unwrap_or_default();
    if summary.is_empty() {
        // An empty summary would replace the whole history with nothing.
        return Err(GateError::Transport {
            target: target.into(),
            kind: crate::egress::TransportKind::Malformed,
            detail: "the model wrote no summary for the compaction".into(),
        });
    }
    let item = compaction::item(&seal(cipher, summary, target));
    if kind == Compact::Endpoint {
        let req: Value = inb.parsed.clone().unwrap_or_else(|| serde_json::from_slice(&inb.body).unwrap_or(Value::Null));
        return Ok((Bytes::from(compaction::v1_output(&req, item, V1_KEEP_CHARS).to_string()), false));
    }
    let now = (crate::now_ms() / 1000) as u64;
    let base = completion_to_response(&v, &format!("resp_{id}"), &inb.head.model, now, ToolMap::default(), false);
    let resp = compaction::response(base, item);
    Ok(if inb.head.stream {
        (Bytes::from(compaction::stream(&resp)), true)
    } else {
        (Bytes::from(resp.to_string()), false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_open_only_with_the_key_that_sealed_them() {
        let a = Cipher::from_key([7; 32]);
        let b = Cipher::from_key([8; 32]);
        let e = seal(&a, "did X", "chat/m");
        assert!(e.starts_with("cgc1.v2."), "{e}");
        assert!(!e.contains("did X"), "the summary is not readable in the item");
        assert_eq!(open(&a, &e).as_deref(), Some("did X"));
        assert_eq!(open(&b, &e), None, "another gateway's key");
        assert_eq!(open(&a, "gAAAAB-openai-opaque"), None);
        assert_eq!(open(&a, &e.replace("cgc1.v2.", "cgc1.v2.A")), None, "damaged");
        let body = format!(r#"{{"input":[{{"type":"compaction","encrypted_content":"{e}"}}]}}"#);
        let out: Value = serde_json::from_slice(&expand_body(&a, body.as_bytes()).unwrap()).unwrap();
        assert!(out["input"][0]["content"][0]["text"].as_str().unwrap().ends_with("did X"));
        assert!(expand_body(&b, body.as_bytes()).is_none(), "unreadable items are left alone");
        assert!(expand_body(&a, br#"{"input":"no items"}"#).is_none());
    }
}
