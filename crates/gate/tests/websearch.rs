//! Web search for chat models (`[web_search]`): a Codex-shaped request offering the hosted
//! `web_search` tool reaches a chat model as a `web_search` function; when the model calls it
//! the gateway runs the search (the mock's SearXNG API), feeds the results back in the same
//! upstream conversation and streams one response — the model's words, a `web_search_call`
//! item, the answer. A failed search is a tool result, never a failed turn; off by default.
//! The real Codex CLI end to end is in `codex_websearch.rs`.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use codex_gate_protocol::grammar::check_responses;
use common::http::post;
use common::{provider, Gate};
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;

async fn gate(mock: &MockUpstream, search: bool) -> Gate {
    let web = if search {
        format!("[web_search]\nprovider = \"searxng\"\nurl = \"http://{}\"\nmax_results = 3\n", mock.addr())
    } else {
        String::new()
    };
    Gate::start(&format!("{web}{}", provider("chat", "chat", &mock.url(), ""))).await
}

/// What Codex sends: its function tools and the hosted search tool, streaming.
fn codex_turn(prompt: &str, stream: bool) -> Value {
    json!({"model": "chat/search", "stream": stream, "store": false,
           "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}],
           "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}},
                     {"type": "web_search", "external_web_access": false}]})
}

fn chat_requests(mock: &MockUpstream) -> Vec<Value> {
    mock.requests().iter().filter(|r| r.path.ends_with("/chat/completions")).map(|r| r.json()).collect()
}

#[tokio::test]
async fn a_chat_model_searches_and_answers_within_one_responses_stream() {
    let mock = MockUpstream::start(MockOptions { record: 32, ..Default::default() }).await.unwrap();
    let gate = gate(&mock, true).await;
    let r = post(&gate.url("/v1/responses"), &codex_turn("rust 2027 edition", true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events = r.events();
    check_responses(&events).unwrap();
    assert!(events.iter().all(|e| e["item"]["type"] != "function_call"), "the search is never a function call");
    let added =
        events.iter().find(|e| e["type"] == "response.output_item.added" && e["item"]["type"] == "web_search_call");
    assert_eq!(added.unwrap()["item"]["status"], "in_progress");
    let terminal = events.last().unwrap();
    assert_eq!(terminal["type"], "response.completed");
    let output = terminal["response"]["output"].as_array().unwrap();
    let kinds: Vec<&str> = output.iter().filter_map(|i| i["type"].as_str()).collect();
    assert_eq!(kinds, ["message", "web_search_call", "message"], "{output:?}");
    assert_eq!(output[1]["status"], "completed");
    assert_eq!(output[1]["action"]["query"], "rust 2027 edition");
    assert_eq!(output[2]["content"][0]["text"], "The web says: [1] Result for rust 2027 edition");
    assert_eq!(terminal["response"]["usage"]["input_tokens"], 240, "both upstream answers are counted");

    // The upstream conversation: the function offered, then the results in a tool message.
    let sent = chat_requests(&mock);
    assert_eq!(sent.len(), 2);
    let tools: Vec<&str> =
        sent[0]["tools"].as_array().unwrap().iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    assert_eq!(tools, ["exec_command", "web_search"]);
    let msgs = sent[1]["messages"].as_array().unwrap();
    let call = &msgs[msgs.len() - 2];
    assert_eq!((call["role"].as_str(), call["content"].as_str()), (Some("assistant"), Some("Searching. ")));
    assert_eq!(call["tool_calls"][0]["function"]["name"], "web_search");
    let result = &msgs[msgs.len() - 1];
    assert_eq!((result["role"].as_str(), result["tool_call_id"].as_str()), (Some("tool"), Some("call_search_1")));
    let text = result["content"].as_str().unwrap();
    assert!(text.contains("[1] Result for rust 2027 edition\nhttps://example.org/rust-2027-edition"), "{text}");
    assert!(text.contains("[2] More on"), "{text}");
    let searched: Vec<_> = mock.requests().into_iter().filter(|q| q.path == "/search").collect();
    assert_eq!(searched.len(), 1);

    // One request in the log, with both answers' tokens; the search is counted.
    let row = gate.record_where("the searched turn", |r| r.status == 200).await;
    assert_eq!((row.input_tokens, row.output_tokens), (240, 60));
    assert_eq!(gate.app.metrics.web_searches.load(Relaxed), 1);
}

#[tokio::test]
async fn a_failed_search_is_a_tool_result_and_the_turn_goes_on() {
    let mock = MockUpstream::start(MockOptions { record: 32, ..Default::default() }).await.unwrap();
    let gate = gate(&mock, true).await;
    let r = post(&gate.url("/v1/responses"), &codex_turn("make the search fail", true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events = r.events();
    check_responses(&events).unwrap();
    let terminal = events.last().unwrap();
    assert_eq!(terminal["type"], "response.completed", "{terminal}");
    let output = terminal["response"]["output"].as_array().unwrap();
    assert_eq!(output[1]["type"], "web_search_call");
    assert_eq!(output[1]["status"], "failed");
    let told =
        chat_requests(&mock)[1]["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
    assert!(told.contains("failed (the search provider answered HTTP 500)"), "{told}");
    assert!(output[2]["content"][0]["text"].as_str().unwrap().starts_with("The web says: no results"));
    assert_eq!(gate.app.metrics.web_search_failures.load(Relaxed), 1);
}

#[tokio::test]
async fn without_web_search_or_a_stream_the_model_is_not_offered_it() {
    let mock = MockUpstream::start(MockOptions { record: 32, ..Default::default() }).await.unwrap();
    let off = gate(&mock, false).await;
    let r = post(&off.url("/v1/responses"), &codex_turn("news", true)).await;
    check_responses(&r.events()).unwrap();
    let last = r.events().last().unwrap().clone();
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], "I cannot search the web.");
    let sent = chat_requests(&mock);
    assert_eq!(sent[0]["tools"].as_array().unwrap().len(), 1, "only exec_command: {}", sent[0]["tools"]);
    // A whole (non-streaming) answer has no room for a search round.
    let on = gate(&mock, true).await;
    let r = post(&on.url("/v1/responses"), &codex_turn("news", false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = chat_requests(&mock);
    assert_eq!(sent.last().unwrap()["tools"].as_array().unwrap().len(), 1, "{}", sent.last().unwrap()["tools"]);
    assert!(!mock.requests().iter().any(|q| q.path == "/search"));
}
