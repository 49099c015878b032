//! Web search for chat models, in the pure half: the function offered in place of the hosted
//! tool, the model's search call turned into a `web_search_call` item (never a function call),
//! the conversation continued after the results, and one response across both answers.

use codex_gate_protocol::grammar::check_responses;
use codex_gate_protocol::sse::SseDecoder;
use codex_gate_protocol::translate::request::ToolOrigin;
use codex_gate_protocol::translate::{responses_to_chat_request, ChatDialect, ChatToResponses};
use serde_json::{json, Value};

fn parsed(bytes: &[u8]) -> Vec<Value> {
    let mut d = SseDecoder::default();
    let mut out = Vec::new();
    d.push(bytes, &mut out).unwrap();
    out.into_iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect()
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
}

fn usage(input: u64, output: u64) -> String {
    json!({"id": "c", "choices": [], "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}})
        .to_string()
}

fn search_call(id: &str, query: &str) -> String {
    let args = json!({"query": query}).to_string();
    chunk(
        json!({"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": "web_search", "arguments": args}}]}),
        None,
    )
}

fn codex_request() -> Value {
    json!({"model": "m", "stream": true, "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "news?"}]}],
           "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
                     {"type": "web_search", "external_web_access": false}]})
}

#[test]
fn the_hosted_tool_becomes_a_function_only_when_the_gateway_runs_searches() {
    let off = responses_to_chat_request(&codex_request(), "m", &ChatDialect::default()).unwrap();
    assert_eq!(off.dropped_tools, ["web_search"]);
    assert_eq!(off.body["tools"].as_array().unwrap().len(), 1);
    let on = responses_to_chat_request(&codex_request(), "m", &ChatDialect { web_search: true, ..Default::default() })
        .unwrap();
    assert!(on.dropped_tools.is_empty());
    let names: Vec<&str> =
        on.body["tools"].as_array().unwrap().iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    assert_eq!(names, ["exec_command", "web_search"]);
    assert_eq!(on.tools.origin("web_search"), ToolOrigin::WebSearch);
    // An earlier turn's search, as Codex echoes it (no id, no results): the model sees it searched.
    let mut later = codex_request();
    later["input"].as_array_mut().unwrap().extend([
        json!({"type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "rust 2027"}}),
        json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It shipped."}]}),
    ]);
    let r = responses_to_chat_request(&later, "m", &ChatDialect { web_search: true, ..Default::default() }).unwrap();
    let msgs = r.body["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["tool_calls"][0]["function"]["name"], "web_search");
    assert_eq!(msgs[1]["tool_calls"][0]["function"]["arguments"], r#"{"query":"rust 2027"}"#);
    assert_eq!(msgs[2]["role"], "tool");
    assert_eq!(msgs[2]["tool_call_id"], msgs[1]["tool_calls"][0]["id"]);
    assert!(msgs[2]["content"].as_str().unwrap().contains("rust 2027"));
    // Without the gateway's search the echoed item is left out, as before.
    let r = responses_to_chat_request(&later, "m", &ChatDialect::default()).unwrap();
    assert_eq!(r.body["messages"].as_array().unwrap().len(), 2);
}

#[test]
fn a_search_call_becomes_a_web_search_item_and_the_answer_continues_in_the_same_response() {
    let tools =
        responses_to_chat_request(&codex_request(), "m", &ChatDialect { web_search: true, ..Default::default() })
            .unwrap()
            .tools;
    let mut m = ChatToResponses::new("resp_1", "m", 0, tools, true).with_search_rounds(2);
    let mut out = Vec::new();
    m.push(&chunk(json!({"role": "assistant", "content": "Let me look. "}), None), &mut out);
    m.push(&search_call("call_s1", "rust 2027 edition"), &mut out);
    m.push(&chunk(json!({}), Some("tool_calls")), &mut out);
    m.push(&usage(100, 10), &mut out);
    m.push("[DONE]", &mut out);
    assert!(m.is_suspended() && !m.is_finished());
    let first = parsed(&out);
    assert!(first.iter().all(|e| e["item"]["type"] != "function_call"), "the call is never shown as a function call");
    let added = first
        .iter()
        .find(|e| e["type"] == "response.output_item.added" && e["item"]["type"] == "web_search_call")
        .unwrap();
    assert_eq!(added["item"]["status"], "in_progress");
    assert_eq!(added["item"]["action"]["query"], "rust 2027 edition");
    assert!(first.iter().any(|e| e["type"] == "response.web_search_call.searching"));
    let searches = m.searches();
    assert_eq!(
        (searches.len(), searches[0].call_id.as_str(), searches[0].query.as_str()),
        (1, "call_s1", "rust 2027 edition")
    );

    let next = m.continuation(&["[1] Rust 2027\nhttps://r.example\nIt shipped.".into()]);
    assert_eq!(next[0]["role"], "assistant");
    assert_eq!(next[0]["content"], "Let me look. ");
    assert_eq!(next[0]["tool_calls"][0]["id"], "call_s1");
    assert_eq!(next[0]["tool_calls"][0]["function"]["name"], "web_search");
    assert_eq!((next[1]["role"].as_str(), next[1]["tool_call_id"].as_str()), (Some("tool"), Some("call_s1")));

    let mut more = Vec::new();
    m.searched(&[true], &mut more);
    m.push(&chunk(json!({"content": "It shipped in 2027."}), None), &mut more);
    m.push(&chunk(json!({}), Some("stop")), &mut more);
    m.push(&usage(300, 20), &mut more);
    m.push("[DONE]", &mut more);
    assert!(m.is_finished());
    out.extend_from_slice(&more);
    let all = parsed(&out);
    check_responses(&all).unwrap();
    let done = all
        .iter()
        .find(|e| e["type"] == "response.output_item.done" && e["item"]["type"] == "web_search_call")
        .unwrap();
    assert_eq!(done["item"]["status"], "completed");
    let terminal = all.last().unwrap();
    assert_eq!(terminal["type"], "response.completed");
    let kinds: Vec<&str> =
        terminal["response"]["output"].as_array().unwrap().iter().filter_map(|i| i["type"].as_str()).collect();
    assert_eq!(kinds, ["message", "web_search_call", "message"]);
    let u = &terminal["response"]["usage"];
    assert_eq!(
        (u["input_tokens"].as_u64(), u["output_tokens"].as_u64()),
        (Some(400), Some(30)),
        "both answers are counted"
    );
    let created = all.iter().filter(|e| e["type"] == "response.created").count();
    assert_eq!(created, 1, "one response");
}

#[test]
fn searches_next_to_other_calls_or_past_the_rounds_are_dropped() {
    let tools =
        responses_to_chat_request(&codex_request(), "m", &ChatDialect { web_search: true, ..Default::default() })
            .unwrap()
            .tools;
    // With another tool call in the same answer: that call ends the turn; the search is not run.
    let mut m = ChatToResponses::new("resp_2", "m", 0, tools.clone(), true).with_search_rounds(2);
    let mut out = Vec::new();
    m.push(&search_call("call_s1", "q"), &mut out);
    m.push(
        &chunk(json!({"tool_calls": [{"index": 1, "id": "call_e", "type": "function", "function": {"name": "exec_command", "arguments": "{}"}}]}), None),
        &mut out,
    );
    m.push(&chunk(json!({}), Some("tool_calls")), &mut out);
    m.push("[DONE]", &mut out);
    assert!(m.is_finished() && !m.is_suspended());
    let evs = parsed(&out);
    check_responses(&evs).unwrap();
    let output = evs.last().unwrap()["response"]["output"].as_array().unwrap().clone();
    assert_eq!(output.len(), 1);
    assert_eq!(output[0]["name"], "exec_command");
    // No rounds: the search call is dropped and the turn ends.
    let mut m = ChatToResponses::new("resp_3", "m", 0, tools, true);
    let mut out = Vec::new();
    m.push(&search_call("call_s1", "q"), &mut out);
    m.push("[DONE]", &mut out);
    assert!(m.is_finished());
    let evs = parsed(&out);
    check_responses(&evs).unwrap();
    assert_eq!(evs.last().unwrap()["response"]["output"], json!([]));
}
