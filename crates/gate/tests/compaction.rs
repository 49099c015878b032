//! Compaction on every upstream kind (codex-protocol §9.1): v2 (`compaction_trigger` in
//! `/responses`) and v1 (`POST /responses/compact`). Chat upstreams are emulated — one sealed
//! `compaction` item carrying the chat model's summary, expanded back into the history of later
//! requests, whichever kind serves them; Responses and pool upstreams answer for themselves.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::{post, sse_data};
use common::Gate;
use serde_json::{json, Value};

async fn setup() -> (MockUpstream, Gate) {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = common::every_kind(&mock).await;
    (mock, gate)
}

/// A Codex-shaped history with a tool call, ending in the trigger when `trigger`.
fn history(model: &str, stream: bool, trigger: bool) -> Value {
    let mut input = vec![
        json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix the parser"}]}),
        json!({"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"}),
        json!({"type": "function_call_output", "call_id": "c1", "output": "parser.rs"}),
        json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Fixed."}]}),
    ];
    if trigger {
        input.push(json!({"type": "compaction_trigger"}));
    }
    json!({"model": model, "stream": stream, "input": input, "parallel_tool_calls": true,
           "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]})
}

/// The `compaction` items of a streamed answer: in `output_item.done`, and in `completed.output`.
fn streamed_items(body: &[u8]) -> (Vec<Value>, Vec<Value>) {
    let events: Vec<Value> = sse_data(body).iter().filter_map(|d| serde_json::from_str(d).ok()).collect();
    let done = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| e["item"].clone())
        .filter(|i| i["type"] == "compaction")
        .collect();
    let completed = events.iter().find(|e| e["type"] == "response.completed").expect("a completed event");
    (done, completed["response"]["output"].as_array().cloned().unwrap_or_default())
}

#[tokio::test]
async fn a_chat_upstream_compacts_with_a_sealed_summary_that_later_turns_expand() {
    let (mock, gate) = setup().await;
    let r = post(&gate.url("/v1/responses"), &history("chat/ok", true, true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let (done, output) = streamed_items(&r.body);
    assert_eq!(done.len(), 1, "exactly one compaction item: {}", r.text());
    assert_eq!(output, done, "and the same one in completed.output");
    let sealed = done[0]["encrypted_content"].as_str().unwrap().to_owned();
    assert!(sealed.starts_with("cgc1."), "{sealed}");
    // The chat model was asked for a summary, whole, with the history and no tool choice.
    let asked = mock.last_request().unwrap();
    assert!(asked.path.ends_with("/chat/completions"));
    let asked = asked.json();
    assert_eq!((asked["stream"].as_bool(), asked["tool_choice"].as_str()), (None, Some("none")), "{asked}");
    let msgs = asked["messages"].as_array().unwrap();
    assert!(msgs.last().unwrap()["content"].as_str().unwrap().contains("replaced by a summary"));
    assert!(msgs.iter().any(|m| m["role"] == "tool" && m["content"] == "parser.rs"), "the history was sent");
    // The summary (the mock's answer) is not readable in the item.
    assert!(!sealed.contains("d0 d1"));
    // The request is logged like any other, with the summary's usage.
    let row = gate.record_where("the compaction", |r| r.target == "chat/ok").await;
    assert_eq!((row.status, row.input_tokens), (200, 120));

    // The next turns carry the item; each upstream kind gets the summary instead of it.
    let next = |model: &str| {
        json!({"model": model, "stream": true, "input": [
            {"type": "compaction", "encrypted_content": sealed},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "now the tests"}]}]})
    };
    for model in ["chat/ok", "resp/ok", "pool/gpt-5.5"] {
        let r = post(&gate.url("/v1/responses"), &next(model)).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let up = mock.last_request().unwrap();
        let text = String::from_utf8_lossy(&up.body).into_owned();
        assert!(!text.contains("cgc1."), "{model}: the envelope never leaves the gateway: {text}");
        assert!(text.contains("d0 d1 d2 d3 d4"), "{model}: the summary is in the history: {text}");
        assert!(text.contains("compacted to fit the context window"), "{model}");
    }
    // A forged or foreign item is not opened: it stays as it was (a Responses upstream gets it).
    let forged = json!({"model": "resp/ok", "input": [{"type": "compaction", "encrypted_content": "cgc1.v2.AAAA"}]});
    assert_eq!(post(&gate.url("/v1/responses"), &forged).await.status, 200);
    assert!(String::from_utf8_lossy(&mock.last_request().unwrap().body).contains("cgc1.v2.AAAA"));
}

#[tokio::test]
async fn a_whole_answer_and_an_empty_summary() {
    let (mock, gate) = setup().await;
    let r = post(&gate.url("/v1/responses"), &history("chat/ok", false, true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "response");
    let out = v["output"].as_array().unwrap();
    assert_eq!((out.len(), out[0]["type"].as_str()), (1, Some("compaction")));
    assert_eq!(v["usage"]["input_tokens"], 120);
    // A model that writes nothing fails the compaction (the history must not become empty).
    let r = post(&gate.url("/v1/responses"), &history("chat/ok:deltas=0", true, true)).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("no summary"), "{}", r.text());
    drop(mock);
}

#[tokio::test]
async fn responses_and_pool_upstreams_compact_for_themselves() {
    let (mock, gate) = setup().await;
    for model in ["resp/ok", "pool/gpt-5.5"] {
        let r = post(&gate.url("/v1/responses"), &history(model, true, true)).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let (done, output) = streamed_items(&r.body);
        assert_eq!(done.len(), 1, "{model}");
        assert!(done[0]["encrypted_content"].as_str().unwrap().starts_with("mock-compaction-"), "relayed as it came");
        // The mock (like the ChatGPT backend) sends an empty completed.output: it is backfilled.
        assert_eq!(output, done, "{model}");
        assert!(String::from_utf8_lossy(&mock.last_request().unwrap().body).contains("compaction_trigger"));
    }
}

#[tokio::test]
async fn the_v1_endpoint_on_every_kind() {
    let (mock, gate) = setup().await;
    let body = |model: &str| {
        let mut h = history(model, false, false);
        h.as_object_mut().unwrap().remove("stream");
        h
    };
    // Chat: emulated; the user's messages stay verbatim, then the sealed summary.
    let r = post(&gate.url("/v1/responses/compact"), &body("chat/ok")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.json()["output"].as_array().cloned().unwrap();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0]["content"][0]["text"], "fix the parser");
    assert!(out[1]["encrypted_content"].as_str().unwrap().starts_with("cgc1."));
    // Responses provider and pool: relayed to their own compact endpoint.
    for (model, path) in [("resp/ok", "/responses/compact"), ("pool/gpt-5.5", "/codex/responses/compact")] {
        let r = post(&gate.url("/v1/responses/compact"), &body(model)).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert!(r.json()["output"][0]["encrypted_content"].as_str().unwrap().starts_with("mock-compaction-v1-"));
        let up = mock.last_request().unwrap();
        assert!(up.path.ends_with(path), "{model}: {}", up.path);
        assert_eq!(up.json().get("stream"), None, "{model}: the unary endpoint is not asked to stream");
    }
    // Codex ≤0.147 calls it under the ChatGPT backend's path too.
    assert_eq!(post(&gate.url("/backend-api/codex/responses/compact"), &body("chat/ok")).await.status, 200);
}
