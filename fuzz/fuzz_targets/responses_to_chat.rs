//! Whatever a Responses upstream streams, a chat client gets chunks that are JSON (or `[DONE]`)
//! and keep the chat grammar.
#![no_main]

use codex_gate_protocol::grammar::check_chat;
use codex_gate_protocol::sse::SseDecoder;
use codex_gate_protocol::translate::ResponsesToChat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut events = Vec::new();
    let mut d = SseDecoder::new(1 << 16);
    if d.push(data, &mut events).is_err() || d.finish(&mut events).is_err() {
        return;
    }
    let mut m = ResponsesToChat::new("chatcmpl-f", "m", 1, true);
    let mut out = Vec::new();
    for e in &events {
        m.push(&e.data, &mut out);
    }
    if !m.is_finished() {
        m.fail("server_error", "ended early", &mut out);
    }
    let mut decoded = Vec::new();
    let mut d = SseDecoder::default();
    d.push(&out, &mut decoded).unwrap();
    let values: Vec<serde_json::Value> = decoded
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap_or(serde_json::Value::String(e.data.clone())))
        .collect();
    assert!(values.iter().all(|v| v.is_object() || v == "[DONE]"), "{values:?}");
    check_chat(&values).unwrap();
});
