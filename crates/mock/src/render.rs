//! Rendering of the mock's answers: Responses events, Chat chunks and whole JSON bodies.

use crate::Scenario;
use serde_json::{json, Value};

/// One delta's text: `size` bytes of a repeated word, distinct per index so tests can check order.
pub fn delta_text(i: usize, size: usize) -> String {
    let head = format!("d{i} ");
    if size <= head.len() {
        return head;
    }
    let mut s = head;
    while s.len() < size {
        s.push('x');
    }
    s
}

pub fn full_text(sc: &Scenario) -> String {
    (0..sc.deltas).map(|i| delta_text(i, sc.size)).collect()
}

pub fn usage_responses() -> Value {
    json!({"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100},
           "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 8}, "total_tokens": 150})
}

pub fn usage_chat() -> Value {
    json!({"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
           "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 8}})
}

pub fn sse(v: &Value) -> String {
    format!("event: {}\ndata: {}\n\n", v["type"].as_str().unwrap_or("message"), v)
}

pub fn sse_data(v: &str) -> String {
    format!("data: {v}\n\n")
}

/// The tool call the `tool` scenario asks for (`view-image`: Codex's `view_image` on
/// `pixel.png` in the workspace).
pub fn tool_call(sc: &Scenario) -> (&'static str, &'static str, String) {
    if sc.name == "view-image" {
        return ("call_mock_1", "view_image", json!({"path": "pixel.png"}).to_string());
    }
    ("call_mock_1", "exec_command", json!({"cmd": "echo mock-tool-ran"}).to_string())
}

pub fn message_item(id: &str, text: &str) -> Value {
    json!({"type": "message", "id": id, "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

pub fn function_item(sc: &Scenario) -> Value {
    let (call_id, name, args) = tool_call(sc);
    json!({"type": "function_call", "id": "fc_mock_1", "status": "completed", "call_id": call_id,
           "name": name, "arguments": args})
}

pub fn response_obj(id: &str, model: &str, status: &str, output: Vec<Value>, usage: Option<Value>) -> Value {
    json!({"id": id, "object": "response", "created_at": 1_755_000_000, "status": status,
           "model": model, "output": output, "usage": usage})
}

pub fn chat_chunk(model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_755_000_000, "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

pub fn chat_completion(model: &str, message: Value, finish: &str) -> Value {
    json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 1_755_000_000, "model": model,
           "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage_chat()})
}

pub fn error_body(kind: &str, code: &str, message: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "code": code, "param": null}})
}

/// The ChatGPT backend's model catalog (`GET …/codex/models`), in Codex's `ModelInfo` shape:
/// one model for every paid plan, one for all plans, one for Pro only.
pub fn codex_catalog() -> Value {
    let model = |slug: &str, priority: u32, plans: &[&str]| {
        json!({
            "slug": slug, "display_name": slug.to_uppercase(), "description": format!("mock {slug}"),
            "default_reasoning_level": "medium",
            "supported_reasoning_levels": [{"effort": "low", "description": "l"}, {"effort": "medium", "description": "m"},
                                           {"effort": "high", "description": "h"}],
            "shell_type": "shell_command", "visibility": "list", "supported_in_api": true, "priority": priority,
            "availability_nux": null, "upgrade": null, "base_instructions": "You are the mock's Codex model.",
            "supports_reasoning_summaries": true, "support_verbosity": false, "default_verbosity": null,
            "apply_patch_tool_type": "freeform", "truncation_policy": {"mode": "tokens", "limit": 10000},
            "supports_parallel_tool_calls": true, "context_window": 272000, "experimental_supported_tools": [],
            "input_modalities": ["text", "image"], "available_in_plans": plans,
        })
    };
    json!({"models": [
        model("gpt-5.5", 1, &["plus", "pro", "team", "business", "enterprise"]),
        model("gpt-5.4-mini", 2, &["free", "plus", "pro", "team", "business", "enterprise"]),
        model("gpt-5.5-pro", 3, &["pro"]),
    ]})
}

/// A compaction turn as the ChatGPT backend streams it: the `compaction` item only in
/// `output_item.done`, and `completed.output` empty (the gateway must backfill it).
pub fn compaction_events(n: usize, model: &str) -> (Value, Vec<Value>) {
    let item = json!({"type": "compaction", "encrypted_content": format!("mock-compaction-{n}")});
    let created = response_obj("resp_cmp", model, "in_progress", vec![], None);
    let done = response_obj("resp_cmp", model, "completed", vec![], Some(usage_responses()));
    let events = vec![
        json!({"type": "response.created", "response": created}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.completed", "response": done}),
    ];
    (item, events)
}
