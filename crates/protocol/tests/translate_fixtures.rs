//! Fixture streams shaped like real upstream output, translated both ways, checked against the
//! stream grammars and snapshot-tested (`cargo insta review` after an intended change).

use codex_gate_protocol::grammar::{check_chat, check_responses};
use codex_gate_protocol::sse::SseDecoder;
use codex_gate_protocol::translate::request::ToolOrigin;
use codex_gate_protocol::translate::{ChatToResponses, ResponsesToChat, ToolMap};
use serde_json::Value;

fn events(bytes: &[u8]) -> Vec<String> {
    let mut d = SseDecoder::default();
    let mut out = Vec::new();
    d.push(bytes, &mut out).unwrap();
    d.finish(&mut out).unwrap();
    out.into_iter().map(|e| e.data).collect()
}

fn parsed(bytes: &[u8]) -> Vec<Value> {
    events(bytes).iter().map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.clone()))).collect()
}

fn fixture(dir: &str, name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{dir}/{name}.sse", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn tools() -> ToolMap {
    let mut t = ToolMap::default();
    t.names.insert("exec_command".into(), ToolOrigin::Function);
    t.names.insert("apply_patch".into(), ToolOrigin::Custom { name: "apply_patch".into() });
    t.names.insert(
        "mcp__github__create_issue".into(),
        ToolOrigin::Namespaced { namespace: "mcp__github__".into(), name: "create_issue".into() },
    );
    t
}

/// Translate a chat fixture; `cut` = the connection broke at the end instead of closing.
fn chat_to_responses(name: &str, cut: bool) -> Vec<Value> {
    let mut m = ChatToResponses::new("resp_gw1", "deepseek-chat", 1_755_000_000, tools(), true);
    let mut out = Vec::new();
    for data in events(&fixture("chat", name)) {
        m.push(&data, &mut out);
    }
    if cut {
        m.fail("upstream_stream_error", "upstream stream failed: connection reset", &mut out);
    } else {
        m.finish(&mut out);
    }
    let evs = parsed(&out);
    check_responses(&evs).unwrap_or_else(|e| panic!("{name}: {e}\n{}", String::from_utf8_lossy(&out)));
    evs
}

fn lines(evs: &[Value]) -> String {
    evs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
}

#[test]
fn chat_fixtures_to_responses() {
    for (name, cut) in [
        ("text", false),
        ("tool_first_chunk", false),
        ("tool_fragmented", false),
        ("parallel_tools", false),
        ("reasoning", false),
        ("no_usage", false),
        ("no_finish_reason", false),
        ("truncated", true),
        ("failed", false),
        ("length", false),
        ("custom_and_namespace", false),
        ("leaked_tool_call", false),
    ] {
        let evs = chat_to_responses(name, cut);
        insta::assert_snapshot!(format!("chat_to_responses__{name}"), lines(&evs));
    }
}

fn terminal(evs: &[Value]) -> Value {
    evs.last().cloned().unwrap()
}

#[test]
fn chat_to_responses_semantics() {
    // Arguments in the first chunk together with id and name are not lost.
    let evs = chat_to_responses("tool_first_chunk", false);
    let done = &terminal(&evs)["response"]["output"][0];
    assert_eq!((done["type"].as_str(), done["call_id"].as_str()), (Some("function_call"), Some("call_abc")));
    assert_eq!(done["arguments"], r#"{"cmd":"ls -la"}"#);
    // Interleaved parallel calls keep their own arguments.
    let out = terminal(&chat_to_responses("parallel_tools", false))["response"]["output"].clone();
    assert_eq!(out[0]["content"][0]["text"], "Running both.");
    assert_eq!(
        (out[1]["arguments"].as_str(), out[2]["arguments"].as_str()),
        (Some(r#"{"cmd":"ls"}"#), Some(r#"{"cmd":"pwd"}"#))
    );
    // Usage mapped with details, or absent — never `{}`.
    let u = terminal(&chat_to_responses("text", false))["response"]["usage"].clone();
    assert_eq!(
        (u["input_tokens"].as_u64(), u["output_tokens"].as_u64(), u["total_tokens"].as_u64()),
        (Some(1200), Some(300), Some(1500))
    );
    assert_eq!(
        (u["input_tokens_details"]["cached_tokens"].as_u64(), u["output_tokens_details"]["reasoning_tokens"].as_u64()),
        (Some(1024), Some(128))
    );
    assert!(terminal(&chat_to_responses("no_usage", false))["response"].get("usage").is_none());
    // No finish_reason still completes with every .done event.
    let evs = chat_to_responses("no_finish_reason", false);
    assert_eq!(terminal(&evs)["type"], "response.completed");
    assert_eq!(terminal(&evs)["response"]["output"][0]["content"][0]["text"], "Never finishes.");
    // length → incomplete; error chunk → failed with its code.
    assert_eq!(
        terminal(&chat_to_responses("length", false))["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(terminal(&chat_to_responses("failed", false))["response"]["error"]["code"], "server_is_overloaded");
    // Custom tools come back as custom_tool_call with input; namespaced ones with namespace.
    let out = terminal(&chat_to_responses("custom_and_namespace", false))["response"]["output"].clone();
    assert_eq!(
        (out[0]["type"].as_str(), out[0]["input"].as_str()),
        (Some("custom_tool_call"), Some("*** Begin Patch\n*** End Patch"))
    );
    assert_eq!((out[1]["name"].as_str(), out[1]["namespace"].as_str()), (Some("create_issue"), Some("mcp__github__")));
    // A tool call leaked as JSON text is recovered as a function call.
    let out = terminal(&chat_to_responses("leaked_tool_call", false))["response"]["output"].clone();
    assert_eq!((out.as_array().unwrap().len(), out[0]["type"].as_str()), (1, Some("function_call")));
    assert_eq!(out[0]["arguments"], r#"{"cmd":"ls"}"#);
}

#[test]
fn leak_recovery_can_be_turned_off_and_prose_is_not_held() {
    let mut m = ChatToResponses::new("resp_x", "m", 0, tools(), false);
    let mut out = Vec::new();
    for data in events(&fixture("chat", "leaked_tool_call")) {
        m.push(&data, &mut out);
    }
    m.finish(&mut out);
    assert_eq!(terminal(&parsed(&out))["response"]["output"][0]["type"], "message");
    // With recovery on, prose streams at once (the first delta is emitted before the end).
    let mut m = ChatToResponses::new("resp_x", "m", 0, tools(), true);
    let mut out = Vec::new();
    m.push(r#"{"choices":[{"index":0,"delta":{"content":"Sure, "}}]}"#, &mut out);
    assert!(parsed(&out).iter().any(|e| e["type"] == "response.output_text.delta" && e["delta"] == "Sure, "));
}

fn responses_to_chat(name: &str, include_usage: bool) -> Vec<Value> {
    let mut m = ResponsesToChat::new("chatcmpl-gw1", "gpt-5.5", 1_755_000_000, include_usage);
    let mut out = Vec::new();
    for data in events(&fixture("responses", name)) {
        m.push(&data, &mut out);
    }
    let evs = parsed(&out);
    check_chat(&evs).unwrap_or_else(|e| panic!("{name}: {e}\n{}", String::from_utf8_lossy(&out)));
    evs
}

#[test]
fn responses_fixtures_to_chat() {
    for name in ["text", "tool", "tool_done_only", "reasoning", "failed", "incomplete"] {
        let evs = responses_to_chat(name, true);
        insta::assert_snapshot!(format!("responses_to_chat__{name}"), lines(&evs));
    }
}

#[test]
fn responses_to_chat_semantics() {
    let args = |evs: &[Value]| -> String {
        evs.iter().filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()).collect()
    };
    let evs = responses_to_chat("tool", false);
    assert_eq!(args(&evs), r#"{"cmd":"ls"}"#);
    assert!(evs.iter().any(|e| e["choices"][0]["finish_reason"] == "tool_calls"));
    assert!(!evs.iter().any(|e| e.get("usage").is_some()), "no usage chunk unless asked for");
    assert_eq!(args(&responses_to_chat("tool_done_only", false)), r#"{"cmd":"ls"}"#);
    let evs = responses_to_chat("reasoning", true);
    let thinking: String = evs.iter().filter_map(|e| e["choices"][0]["delta"]["reasoning_content"].as_str()).collect();
    assert_eq!(thinking, "**Plan** look");
    let usage = &evs[evs.len() - 2]["usage"];
    assert_eq!(
        (
            usage["prompt_tokens_details"]["cached_tokens"].as_u64(),
            usage["completion_tokens_details"]["reasoning_tokens"].as_u64()
        ),
        (Some(1024), Some(128))
    );
    assert!(responses_to_chat("incomplete", true).iter().any(|e| e["choices"][0]["finish_reason"] == "length"));
    let last = responses_to_chat("failed", true).last().cloned().unwrap();
    assert_eq!(last["error"]["code"], "rate_limit_exceeded");
}
