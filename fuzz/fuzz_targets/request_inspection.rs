//! Request inspection never panics; what it accepts can be translated both ways without a
//! panic, and a model rewrite leaves valid JSON that names the new model.
#![no_main]

use codex_gate_protocol::body::{inspect, rewrite_model};
use codex_gate_protocol::translate::{chat_to_responses_request, responses_to_chat_request, ChatDialect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(head) = inspect(data) else { return };
    // JSON the grammar allows but a `Value` cannot hold (a number like 1e888888) is the
    // upstream's to refuse; the properties below are about bodies a `Value` can hold.
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let out = rewrite_model(data, head.model_span.clone(), "gate/\"model\"");
    let rewritten: serde_json::Value = serde_json::from_slice(&out).expect("the rewrite is valid JSON");
    assert_eq!(rewritten["model"], "gate/\"model\"");
    let _ = responses_to_chat_request(&v, "m", &ChatDialect::default());
    let _ = chat_to_responses_request(&v, "m");
});
