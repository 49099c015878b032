//! What a client WebSocket remembers between its frames: the last response (what
//! `previous_response_id` names, kept as the JSON it was sent as) and the sticky state of the
//! Codex turn it served last ([`Pin`]), with the pure helpers that build a turn from them.

use http::HeaderValue;
use serde_json::{Map, Value};

/// Longest `turn_id` a frame may name; a longer one names no turn.
const MAX_TURN_ID: usize = 256;

/// The last response on the connection: what `previous_response_id` refers to. Its input is
/// kept as the JSON it was sent as, so a long history costs its bytes in memory (not a tree of
/// values) and the next turn copies it instead of serializing it again.
pub(super) struct Last {
    pub(super) id: String,
    pub(super) input: String,
    pub(super) output: Vec<Value>,
}

/// Serialized JSON arrays joined into one, without parsing them again.
pub(super) fn join_arrays(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 2);
    out.push('[');
    for p in parts {
        let inner = p.trim().strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or_default().trim();
        if inner.is_empty() {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(inner);
    }
    out.push(']');
    out
}

/// The request body: `obj`'s fields and then `"input": INPUT` (already serialized).
pub(super) fn body_with_input(obj: &Map<String, Value>, input: &str) -> Vec<u8> {
    let mut b = serde_json::to_vec(obj).unwrap_or_else(|_| b"{}".to_vec());
    b.pop(); // the closing brace
    if b.len() > 1 {
        b.push(b',');
    }
    b.extend_from_slice(b"\"input\":");
    b.extend_from_slice(input.as_bytes());
    b.push(b'}');
    b
}

/// The sticky state of the turn the connection served last. Over HTTP, Codex echoes the
/// `x-codex-turn-state` of a turn's first answer on the turn's later requests, and the relay
/// sends them to the same target and pool account. Over a WebSocket Codex reads that header only
/// from the upgrade's answer, before any turn, so the connection keeps the sealed value of its
/// last served turn and puts it on the frames of the same turn.
pub(super) struct Pin {
    /// The Codex turn it belongs to (`client_metadata.turn_id`), when the frame named one.
    pub(super) turn_id: Option<String>,
    /// The gateway's sealed turn state ([`crate::upstream::turn_state`]).
    pub(super) state: HeaderValue,
}

/// What the connection remembers between frames.
#[derive(Default)]
pub(super) struct Session {
    pub(super) last: Option<Last>,
    pub(super) pin: Option<Pin>,
}

/// The Codex turn a frame belongs to: `client_metadata.turn_id`, or the `turn_id` inside the
/// `x-codex-turn-metadata` JSON it also carries there (codex-protocol §2.3).
pub(super) fn frame_turn_id(obj: &Map<String, Value>) -> Option<String> {
    let meta = obj.get("client_metadata")?;
    let id = match meta.get("turn_id").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => {
            let inner: Value = serde_json::from_str(meta.get("x-codex-turn-metadata")?.as_str()?).ok()?;
            inner.get("turn_id")?.as_str()?.to_owned()
        }
    };
    (!id.is_empty() && id.len() <= MAX_TURN_ID).then_some(id)
}

pub(super) fn is_user_message(item: &Value) -> bool {
    item.get("type").and_then(Value::as_str) == Some("message")
        && item.get("role").and_then(Value::as_str) == Some("user")
}

impl Pin {
    /// Whether a frame belongs to this pin's turn. Without turn ids (a client other than Codex),
    /// a frame that builds on the last response and brings no new user message goes on its turn.
    pub(super) fn holds(&self, turn_id: Option<&str>, follow_up: bool) -> bool {
        match (self.turn_id.as_deref(), turn_id) {
            (Some(a), Some(b)) => a == b,
            (None, None) => follow_up,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn histories_are_joined_and_spliced_as_json() {
        assert_eq!(join_arrays(&["[1,2]", "[]", "[ {\"a\":[3]} ]"]), r#"[1,2,{"a":[3]}]"#);
        assert_eq!(join_arrays(&["[]", "[]"]), "[]");
        let mut obj = Map::new();
        obj.insert("model".into(), json!("m"));
        let b = body_with_input(&obj, "[1]");
        assert_eq!(serde_json::from_slice::<Value>(&b).unwrap(), json!({"model": "m", "input": [1]}));
        assert_eq!(serde_json::from_slice::<Value>(&body_with_input(&Map::new(), "[]")).unwrap(), json!({"input": []}));
    }

    #[test]
    fn a_frame_names_its_turn_and_a_pin_holds_only_within_it() {
        let obj = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(frame_turn_id(&obj(json!({"client_metadata": {"turn_id": "t1"}}))).as_deref(), Some("t1"));
        let meta = json!({"client_metadata": {"x-codex-turn-metadata": "{\"turn_id\":\"t2\",\"sandbox\":\"none\"}"}});
        assert_eq!(frame_turn_id(&obj(meta)).as_deref(), Some("t2"), "the turn metadata's own turn_id");
        for none in [
            json!({}),
            json!({"client_metadata": {}}),
            json!({"client_metadata": {"turn_id": ""}}),
            json!({"client_metadata": {"turn_id": 7}}),
            json!({"client_metadata": {"turn_id": "x".repeat(MAX_TURN_ID + 1)}}),
            json!({"client_metadata": {"x-codex-turn-metadata": "not json"}}),
        ] {
            assert_eq!(frame_turn_id(&obj(none.clone())), None, "{none}");
        }
        let pin =
            |turn_id: Option<&str>| Pin { turn_id: turn_id.map(str::to_owned), state: HeaderValue::from_static("s") };
        assert!(pin(Some("t1")).holds(Some("t1"), false));
        assert!(!pin(Some("t1")).holds(Some("t2"), true), "another turn, even building on the last response");
        assert!(!pin(Some("t1")).holds(None, true));
        assert!(!pin(None).holds(Some("t1"), true));
        // Without turn ids: a follow-up (the last response and no new user message) only.
        assert!(pin(None).holds(None, true));
        assert!(!pin(None).holds(None, false));
        assert!(is_user_message(&json!({"type": "message", "role": "user", "content": []})));
        assert!(!is_user_message(&json!({"type": "function_call_output", "call_id": "c", "output": "x"})));
        assert!(!is_user_message(&json!({"type": "message", "role": "developer", "content": []})));
    }
}
