//! Remote compaction for upstreams that have none (codex-protocol §9.1). Codex asks for it with a
//! `/responses` turn whose input ends in `{"type":"compaction_trigger"}` (v2) or with
//! `POST /responses/compact` (v1), and wants back exactly one `compaction` item whose
//! `encrypted_content` it sends again in later turns. A chat model is asked for a summary of the
//! history instead; the gateway seals the summary into the item (the sealing is the
//! application's: this crate has no keys), and [`expand`] turns such an item back into the
//! summary as a user message before any upstream sees it.

use crate::sse::encode;
use serde_json::{json, Map, Value};

/// The input item that asks for a compaction (v2).
pub const TRIGGER: &str = "compaction_trigger";

/// What the chat model is asked, after the whole history.
pub const SUMMARY_PROMPT: &str = "The conversation above is about to be replaced by a summary, because it no \
longer fits in the context window. Write that summary now, for yourself to continue from without the \
history. Include: the user's goal and every requirement or preference they stated; what has been done \
so far, with the files, commands and decisions that matter (exact paths and names); what was tried and \
failed, and why; the current state, including anything half-finished; and the next steps. Be complete \
but terse; plain text or short lists. Do not call tools; reply with the summary only.";

/// How an expanded summary is introduced to the model in later turns.
pub const SUMMARY_PREFIX: &str =
    "Summary of the earlier conversation (it was compacted to fit the context window):\n\n";

/// The input items of a Responses request (an empty slice when `input` is a string or absent).
fn items(req: &Value) -> &[Value] {
    req.get("input").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn is_type(item: &Value, ty: &str) -> bool {
    item.get("type").and_then(Value::as_str) == Some(ty)
}

/// The request asks for a compaction: its last input item is the trigger.
pub fn is_requested(req: &Value) -> bool {
    items(req).last().is_some_and(|i| is_type(i, TRIGGER))
}

/// The request that asks a model for the summary: the history without the trigger, then the
/// prompt; no tool may be called, nothing is streamed, and no earlier response is named.
pub fn summary_request(req: &Value) -> Value {
    let mut out: Map<String, Value> = req.as_object().cloned().unwrap_or_default();
    let mut input: Vec<Value> = items(req).iter().filter(|i| !is_type(i, TRIGGER)).cloned().collect();
    input.push(json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": SUMMARY_PROMPT}]}));
    out.insert("input".into(), Value::Array(input));
    out.insert("stream".into(), json!(false));
    out.insert("tool_choice".into(), json!("none"));
    for k in ["previous_response_id", "text", "max_output_tokens"] {
        out.remove(k);
    }
    Value::Object(out)
}

/// The compaction item carrying `encrypted_content`.
pub fn item(encrypted_content: &str) -> Value {
    json!({"type": "compaction", "encrypted_content": encrypted_content})
}

/// A Responses object (as `completion_to_response` made it from the summary's completion, with
/// its id, model and usage) turned into the compaction's answer: its only output is `item`.
pub fn response(mut summary_response: Value, item: Value) -> Value {
    if let Some(o) = summary_response.as_object_mut() {
        o.insert("output".into(), json!([item]));
        o.insert("status".into(), json!("completed"));
        o.remove("incomplete_details");
    }
    summary_response
}

/// The compaction's answer as the event stream Codex reads: created, the item added and done,
/// completed (with the item in `output` too).
pub fn stream(response: &Value) -> Vec<u8> {
    let mut created = response.clone();
    if let Some(o) = created.as_object_mut() {
        o.insert("status".into(), json!("in_progress"));
        o.insert("output".into(), json!([]));
        o.remove("usage");
    }
    let item = response.pointer("/output/0").cloned().unwrap_or(Value::Null);
    let mut out = Vec::new();
    let events = [
        ("response.created", json!({"type": "response.created", "sequence_number": 0, "response": created})),
        (
            "response.output_item.added",
            json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": item}),
        ),
        (
            "response.output_item.done",
            json!({"type": "response.output_item.done", "sequence_number": 2, "output_index": 0, "item": item}),
        ),
        ("response.completed", json!({"type": "response.completed", "sequence_number": 3, "response": response})),
    ];
    for (ty, v) in events {
        encode(Some(ty), &v.to_string(), &mut out);
    }
    out
}

/// The v1 endpoint's answer (`{"output": [...]}`): the user's own messages, newest first up to
/// `keep_chars` of text and then in their order, followed by the compaction item; what the
/// user asked stays verbatim while everything else is in the summary.
pub fn v1_output(req: &Value, item: Value, keep_chars: usize) -> Value {
    let mut kept = Vec::new();
    let mut budget = keep_chars;
    for i in items(req).iter().rev() {
        if i.get("role").and_then(Value::as_str) != Some("user") || !(is_type(i, "message") || i.get("type").is_none())
        {
            continue;
        }
        let len = text_len(i.get("content").unwrap_or(&Value::Null));
        if len > budget {
            break;
        }
        budget -= len;
        kept.push(i.clone());
    }
    kept.reverse();
    kept.push(item);
    json!({"output": kept})
}

fn text_len(content: &Value) -> usize {
    match content {
        Value::String(s) => s.len(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).map(str::len).sum(),
        _ => 0,
    }
}

/// Replace every compaction item that `open` can read (the gateway's own) by its summary as a
/// user message; items it cannot read (an OpenAI backend's) are left alone. Returns how many
/// were replaced.
pub fn expand(req: &mut Value, open: impl Fn(&str) -> Option<String>) -> usize {
    let Some(input) = req.get_mut("input").and_then(Value::as_array_mut) else { return 0 };
    let mut n = 0;
    for i in input.iter_mut() {
        if !is_type(i, "compaction") {
            continue;
        }
        let Some(summary) = i.get("encrypted_content").and_then(Value::as_str).and_then(&open) else { continue };
        *i = json!({"type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": format!("{SUMMARY_PREFIX}{summary}")}]});
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;

    fn history() -> Value {
        json!({"model": "m", "stream": true, "previous_response_id": "resp_1", "tools": [{"type": "function", "name": "f"}],
               "input": [
                   {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
                   {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first ask"}]},
                   {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                   {"type": "function_call_output", "call_id": "c", "output": "done"},
                   {"role": "user", "content": "second ask"},
                   {"type": "compaction_trigger"}]})
    }

    #[test]
    fn a_trigger_becomes_a_summary_request() {
        assert!(is_requested(&history()));
        assert!(!is_requested(&json!({"input": "hi"})));
        assert!(!is_requested(&json!({"input": [{"type": "compaction_trigger"}, {"role": "user", "content": "x"}]})));
        let r = summary_request(&history());
        let input = r["input"].as_array().unwrap();
        assert_eq!(input.len(), 6, "the trigger is gone and the prompt follows the history");
        assert_eq!(input[5]["content"][0]["text"], SUMMARY_PROMPT);
        assert_eq!((r["stream"].clone(), r["tool_choice"].clone()), (json!(false), json!("none")));
        assert!(r.get("previous_response_id").is_none());
        assert_eq!(r["tools"], history()["tools"], "tools stay defined for the calls in the history");
    }

    #[test]
    fn the_answer_has_exactly_one_compaction_item_in_stream_and_body() {
        let base = json!({"id": "resp_x", "object": "response", "model": "m", "status": "incomplete",
                          "incomplete_details": {"reason": "max_output_tokens"},
                          "output": [{"type": "message"}], "usage": {"input_tokens": 9, "output_tokens": 3, "total_tokens": 12}});
        let r = response(base, item("sealed"));
        assert_eq!(r["output"], json!([{"type": "compaction", "encrypted_content": "sealed"}]));
        assert_eq!(r["status"], "completed");
        let mut evs = Vec::new();
        SseDecoder::new(1 << 20).push(&stream(&r), &mut evs).unwrap();
        let events: Vec<Value> = evs.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["response.created", "response.output_item.added", "response.output_item.done", "response.completed"]
        );
        assert_eq!(events[0]["response"]["output"], json!([]));
        assert_eq!(events[2]["item"]["encrypted_content"], "sealed");
        assert_eq!(events[3]["response"]["usage"]["total_tokens"], 12);
    }

    #[test]
    fn v1_keeps_the_users_recent_messages_then_the_item() {
        let out = v1_output(&history(), item("s"), 1000);
        let o = out["output"].as_array().unwrap();
        assert_eq!(o.len(), 3);
        assert_eq!(o[0]["content"][0]["text"], "first ask");
        assert_eq!(o[1]["content"], "second ask");
        assert_eq!(o[2]["type"], "compaction");
        // A budget that fits only the newest message keeps only that one.
        let out = v1_output(&history(), item("s"), 12);
        assert_eq!(out["output"].as_array().unwrap().len(), 2);
        assert_eq!(out["output"][0]["content"], "second ask");
    }

    #[test]
    fn only_readable_items_expand() {
        let mut req = json!({"input": [
            {"type": "compaction", "encrypted_content": "ours"},
            {"type": "compaction", "encrypted_content": "openai-opaque"},
            {"role": "user", "content": "next"}]});
        let n = expand(&mut req, |s| (s == "ours").then(|| "did X, then Y".to_owned()));
        assert_eq!(n, 1);
        assert_eq!(req["input"][0]["role"], "user");
        assert_eq!(req["input"][0]["content"][0]["text"], format!("{SUMMARY_PREFIX}did X, then Y"));
        assert_eq!(req["input"][1]["encrypted_content"], "openai-opaque");
        assert_eq!(expand(&mut json!({"input": "text"}), |_| Some(String::new())), 0);
    }
}
