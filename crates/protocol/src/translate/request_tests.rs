//! Request-mapping tests, including the `custom` and `namespace` round trips.

use super::*;
use crate::translate::ChatToResponses;
use serde_json::json;

fn codex_like() -> Value {
    json!({
        "model": "coder",
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox: read-only"}]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "what is in "},
                {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "high"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thinking"}], "encrypted_content": "gAAA"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "create_issue", "namespace": "mcp__github__", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "ok"}]},
            {"type": "custom_tool_call", "call_id": "call_3", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "call_3", "output": "Done"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "x"}}
        ],
        "tools": [
            {"type": "function", "name": "exec_command", "description": "run", "strict": false, "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
            {"type": "custom", "name": "apply_patch", "description": "patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
            {"type": "namespace", "name": "mcp__github__", "tools": [{"type": "function", "name": "create_issue", "parameters": {"type": "object"}}]},
            {"type": "web_search", "external_web_access": false},
            {"type": "tool_search", "execution": "client"}
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": true,
        "reasoning": {"effort": "high", "summary": "auto"},
        "store": false,
        "stream": true,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "sess",
        "client_metadata": {"x": "y"},
        "text": {"verbosity": "low", "format": {"type": "json_schema", "name": "out", "strict": true, "schema": {"type": "object"}}},
        "max_output_tokens": 500
    })
}

#[test]
fn responses_to_chat_maps_every_part() {
    let dialect = ChatDialect { reasoning_effort: true, ..ChatDialect::default() };
    let r = responses_to_chat_request(&codex_like(), "deepseek-chat", &dialect).unwrap();
    let b = &r.body;
    assert_eq!(b["model"], "deepseek-chat");
    let m = b["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role": "system", "content": "You are Codex."}));
    assert_eq!(m[1], json!({"role": "system", "content": "sandbox: read-only"}));
    assert_eq!(
        m[2]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA", "detail": "high"}})
    );
    assert_eq!(m[3]["content"], "Checking.");
    let calls = m[3]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "text and the calls that follow it are one assistant message");
    assert_eq!(calls[0]["function"], json!({"name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"}));
    assert_eq!(calls[1]["function"]["name"], "mcp__github__create_issue");
    assert_eq!(m[4], json!({"role": "tool", "tool_call_id": "call_1", "content": "a.txt"}));
    assert_eq!(m[5], json!({"role": "tool", "tool_call_id": "call_2", "content": "ok"}));
    assert_eq!(
        m[6]["tool_calls"][0]["function"],
        json!({"name": "apply_patch", "arguments": "{\"input\":\"*** Begin Patch\"}"})
    );
    assert_eq!(m[7], json!({"role": "tool", "tool_call_id": "call_3", "content": "Done"}));
    assert_eq!(m.len(), 8, "reasoning and hosted-tool items are dropped");

    let tools = b["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["exec_command", "apply_patch", "mcp__github__create_issue"]);
    assert_eq!(tools[1]["function"]["parameters"]["required"], json!(["input"]));
    assert_eq!(r.dropped_tools, ["web_search", "tool_search"]);
    assert_eq!(b["tool_choice"], "auto");
    assert_eq!(b["parallel_tool_calls"], true);
    assert_eq!(b["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        b["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "out", "strict": true, "schema": {"type": "object"}}})
    );
    assert_eq!(b["reasoning_effort"], "high");
    assert_eq!(b["max_tokens"], 500);
    for k in ["store", "include", "prompt_cache_key", "client_metadata", "text", "reasoning", "instructions", "input"] {
        assert!(b.get(k).is_none(), "{k} must not reach a chat upstream");
    }
    let plain = responses_to_chat_request(&codex_like(), "m", &ChatDialect::default()).unwrap();
    assert!(plain.body.get("reasoning_effort").is_none());
}

#[test]
fn custom_and_namespace_tools_round_trip() {
    let r = responses_to_chat_request(&codex_like(), "m", &ChatDialect::default()).unwrap();
    let mut m = ChatToResponses::new("resp_t", "m", 0, r.tools.clone(), true);
    let mut out = Vec::new();
    let chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c1", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin Patch\\n+x\"}"}},
        {"index": 1, "id": "c2", "type": "function", "function": {"name": "mcp__github__create_issue", "arguments": "{\"t\":1}"}}]}}]});
    m.push_value(&chunk, &mut out);
    m.finish(&mut out);
    let resp = m.terminal_response().unwrap();
    assert_eq!(
        resp["output"][0],
        json!({"type": "custom_tool_call", "id": resp["output"][0]["id"], "status": "completed",
                                         "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch\n+x"})
    );
    assert_eq!(resp["output"][1]["name"], "create_issue");
    assert_eq!(resp["output"][1]["namespace"], "mcp__github__");
    // And back into a chat request, the calls get the same chat names.
    let again = json!({"input": [resp["output"][0], resp["output"][1]], "tools": codex_like()["tools"]});
    let chat = responses_to_chat_request(&again, "m", &ChatDialect::default()).unwrap();
    let calls = &chat.body["messages"][0]["tool_calls"];
    assert_eq!(calls[0]["function"]["name"], "apply_patch");
    assert_eq!(calls[1]["function"]["name"], "mcp__github__create_issue");
}

#[test]
fn long_or_colliding_names_stay_unique_and_valid() {
    let long = "n".repeat(80);
    let req = json!({"input": "x", "tools": [
        {"type": "namespace", "name": "a.b", "tools": [{"type": "function", "name": "c"}]},
        {"type": "function", "name": "a_b__c"},
        {"type": "function", "name": long}]});
    let r = responses_to_chat_request(&req, "m", &ChatDialect::default()).unwrap();
    let names: Vec<String> = r.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names[0], "a_b__c");
    assert_eq!(names[1], "a_b__c_2");
    assert!(names[2].len() <= 64);
    assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')));
    assert_eq!(r.tools.origin("a_b__c"), ToolOrigin::Namespaced { namespace: "a.b".into(), name: "c".into() });
}

#[test]
fn chat_to_responses_maps_every_part() {
    let req = json!({
        "model": "gpt", "stream": true, "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No emojis."}]},
            {"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "https://x/i.png", "detail": "low"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "result"},
            {"role": "system", "content": "late"}
        ],
        "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}, "strict": true}},
        "max_completion_tokens": 99, "temperature": 0.2, "reasoning_effort": "low"
    });
    let r = chat_to_responses_request(&req, "gpt-5.5").unwrap();
    assert_eq!(r["instructions"], "Be brief.\n\nNo emojis.");
    let input = r["input"].as_array().unwrap();
    assert_eq!(input[0]["content"][1], json!({"type": "input_image", "image_url": "https://x/i.png", "detail": "low"}));
    assert_eq!(input[1], json!({"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}));
    assert_eq!(input[2], json!({"type": "function_call_output", "call_id": "call_1", "output": "result"}));
    assert_eq!(input[3]["role"], "developer");
    assert_eq!(
        r["tools"][0],
        json!({"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}})
    );
    assert_eq!(r["tool_choice"], json!({"type": "function", "name": "f"}));
    assert_eq!(
        r["text"]["format"],
        json!({"type": "json_schema", "name": "o", "schema": {"type": "object"}, "strict": true})
    );
    assert_eq!(
        (r["max_output_tokens"].as_u64(), r["stream"].as_bool(), r["store"].as_bool()),
        (Some(99), Some(true), Some(false))
    );
    assert_eq!(r["reasoning"]["effort"], "low");
    assert_eq!(r["temperature"], 0.2);
}

#[test]
fn refusals() {
    let e = chat_to_responses_request(&json!({"messages": [], "n": 2}), "m").unwrap_err();
    assert_eq!(e.param.as_deref(), Some("n"));
    assert!(chat_to_responses_request(&json!({"messages": "x"}), "m").is_err());
    assert!(responses_to_chat_request(&json!({"input": 5}), "m", &ChatDialect::default()).is_err());
}

#[test]
fn provider_dialect_switches() {
    let dialect =
        ChatDialect { reasoning_history: true, max_tokens_field: "max_completion_tokens", ..ChatDialect::default() };
    let r = responses_to_chat_request(&codex_like(), "m", &dialect).unwrap();
    let m = r.body["messages"].as_array().unwrap();
    assert_eq!(m[3]["reasoning_content"], "thinking", "earlier reasoning rides on the next assistant message");
    assert_eq!(r.body["max_completion_tokens"], 500);
    assert!(r.body.get("max_tokens").is_none());
    let plain = responses_to_chat_request(&codex_like(), "m", &ChatDialect::default()).unwrap();
    assert!(plain.body["messages"][3].get("reasoning_content").is_none());
}

#[test]
fn chat_output_limits_below_the_responses_minimum_are_raised_to_it() {
    let req = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 8});
    assert_eq!(chat_to_responses_request(&req, "gpt-5.5").unwrap()["max_output_tokens"], 16);
    let req = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200});
    assert_eq!(chat_to_responses_request(&req, "gpt-5.5").unwrap()["max_output_tokens"], 200);
}

#[test]
fn images_from_tool_outputs_follow_the_run_of_tool_messages() {
    // Two parallel calls: view_image returns an image (Codex's shape), the other text. Chat tool
    // messages are text only and must directly follow the calls, so the image comes after both.
    let req = json!({"input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look"}]},
        {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{\"path\":\"a.png\"}"},
        {"type": "function_call", "call_id": "c2", "name": "exec_command", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": [
            {"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "original"}]},
        {"type": "function_call_output", "call_id": "c2", "output": "ok"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]}
    ]});
    let m = responses_to_chat_request(&req, "m", &ChatDialect::default()).unwrap().body["messages"].clone();
    let roles: Vec<_> = m.as_array().unwrap().iter().map(|x| x["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "tool", "user", "assistant"]);
    assert_eq!(m[2]["content"], "[1 image returned; attached in the next message]");
    assert_eq!(m[3], json!({"role": "tool", "tool_call_id": "c2", "content": "ok"}));
    assert_eq!(
        m[4]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "high"}}),
        "`original` becomes the nearest chat detail"
    );
    // An image output at the very end of the input (the usual case: the next request after
    // view_image) is flushed too, and text next to an image stays in the tool message.
    let req = json!({"input": [
        {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": [
            {"type": "input_text", "text": "a.png:"},
            {"type": "input_image", "image_url": "data:image/png;base64,AA"},
            {"type": "input_image", "image_url": "data:image/png;base64,BB", "detail": "low"}]}
    ]});
    let m = responses_to_chat_request(&req, "m", &ChatDialect::default()).unwrap().body["messages"].clone();
    assert_eq!(m.as_array().unwrap().len(), 3);
    assert_eq!(m[1]["content"], "a.png:\n[2 images returned; attached in the next message]");
    assert_eq!(m[2]["content"][1], json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}));
    assert_eq!(m[2]["content"][2]["image_url"]["detail"], "low");
}
