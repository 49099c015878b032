//! Whatever a chat upstream streams, a Responses client gets events that are JSON and keep the
//! Responses grammar (created first, items opened before their deltas, one terminal event).
#![no_main]

use codex_gate_protocol::grammar::check_responses;
use codex_gate_protocol::sse::SseDecoder;
use codex_gate_protocol::translate::request::ToolOrigin;
use codex_gate_protocol::translate::{ChatToResponses, ToolMap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut events = Vec::new();
    let mut d = SseDecoder::new(1 << 16);
    if d.push(data, &mut events).is_err() || d.finish(&mut events).is_err() {
        return;
    }
    let mut tools = ToolMap::default();
    tools.names.insert("exec_command".into(), ToolOrigin::Function);
    tools.names.insert("apply_patch".into(), ToolOrigin::Custom { name: "apply_patch".into() });
    let mut m = ChatToResponses::new("resp_f", "m", 1, tools, true);
    let mut out = Vec::new();
    for e in &events {
        m.push(&e.data, &mut out);
    }
    m.finish(&mut out);
    let mut decoded = Vec::new();
    let mut d = SseDecoder::default();
    d.push(&out, &mut decoded).unwrap();
    let values: Vec<serde_json::Value> =
        decoded.iter().map(|e| serde_json::from_str(&e.data).expect("every event is JSON")).collect();
    check_responses(&values).unwrap();
});
