//! Request inspection never panics; what it accepts can be translated both ways without a
//! panic, and a model rewrite leaves valid JSON that names the new model.
#![no_main]

use codex_gate_protocol::body::{inspect, rewrite_model};
use codex_gate_protocol::translate::{chat_to_responses_request, responses_to_chat_request, ChatDialect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(head) = inspect(data) else { return };
    let out = rewrite_model(data, head.model_span.clone(), "gate/\"model\"");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("the rewrite is valid JSON");
    assert_eq!(v["model"], "gate/\"model\"");
    let v: serde_json::Value = serde_json::from_slice(data).expect("inspect accepted valid JSON");
    let _ = responses_to_chat_request(&v, "m", &ChatDialect::default());
    let _ = chat_to_responses_request(&v, "m");
});
