//! Translation through the gateway over real sockets: Responses clients on chat upstreams and
//! chat clients on Responses upstreams, streaming and not, with failures after the first byte.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use codex_gate_protocol::grammar::{check_chat, check_responses};
use common::http::post;
use common::{provider, Gate};
use serde_json::json;
use std::time::Duration;

async fn setup() -> (MockUpstream, MockUpstream, Gate) {
    let chat = MockUpstream::start(MockOptions::default()).await.unwrap();
    let resp = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "{}{}",
        provider("chat", "chat", &chat.url(), "idle_timeout_ms = 400\nreasoning_effort = true"),
        provider("resp", "responses", &resp.url(), "idle_timeout_ms = 400"),
    );
    (chat, resp, Gate::start(&cfg).await)
}

#[tokio::test]
async fn responses_client_on_a_chat_upstream_streams_a_valid_responses_stream() {
    let (chat, _resp, gate) = setup().await;
    let body = json!({"model": "chat/ok", "stream": true, "instructions": "be brief", "store": false,
                      "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k", "reasoning": {"effort": "high"},
                      "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]});
    let r = post(&gate.url("/v1/responses"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let evs = r.events();
    check_responses(&evs).unwrap_or_else(|e| panic!("{e}\n{}", r.text()));
    let done = evs.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    assert_eq!(done["response"]["output"][0]["content"][0]["text"], "d0 d1 d2 d3 d4 ");
    assert_eq!(done["response"]["usage"]["input_tokens_details"]["cached_tokens"], 100);
    assert_eq!(done["response"]["model"], "chat/ok", "the client sees the model it asked for");
    let up = chat.last_request().unwrap();
    assert_eq!(up.path, "/v1/chat/completions");
    let sent = up.json();
    assert_eq!(sent["messages"][0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["reasoning_effort"], "high");
    for k in ["store", "include", "prompt_cache_key", "input", "instructions"] {
        assert!(sent.get(k).is_none(), "{k} reached the chat upstream");
    }
    let rec = &gate.records(1).await[0];
    assert_eq!((rec.api.as_str(), rec.output_tokens, rec.error_code.clone()), ("responses", 30, None));
}

#[tokio::test]
async fn responses_client_on_a_chat_upstream_tool_loop_and_whole_answers() {
    let (_chat, _resp, gate) = setup().await;
    let tools = json!([{"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]);
    let r = post(
        &gate.url("/v1/responses"),
        &json!({"model": "chat/tool", "stream": true, "input": "list files", "tools": tools}),
    )
    .await;
    let evs = r.events();
    check_responses(&evs).unwrap();
    let item = &evs.last().unwrap()["response"]["output"][0];
    assert_eq!(
        (item["type"].as_str(), item["name"].as_str(), item["call_id"].as_str()),
        (Some("function_call"), Some("exec_command"), Some("call_mock_1"))
    );
    assert_eq!(item["arguments"], r#"{"cmd":"echo mock-tool-ran"}"#);
    // Second turn with the output: the mock answers with text.
    let input = json!(["list files", item, {"type": "function_call_output", "call_id": "call_mock_1", "output": "mock-tool-ran"}]);
    let input = json!([{"type": "message", "role": "user", "content": input[0]}, input[1], input[2]]);
    let r = post(&gate.url("/v1/responses"), &json!({"model": "chat/tool", "input": input, "tools": tools})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!((v["object"].as_str(), v["status"].as_str()), (Some("response"), Some("completed")));
    assert_eq!(v["output"][0]["content"][0]["text"], "d0 d1 d2 d3 d4 ");
    assert_eq!(v["usage"]["total_tokens"], 150);
}

#[tokio::test]
async fn chat_client_on_a_responses_upstream() {
    let (_chat, resp, gate) = setup().await;
    let body = json!({"model": "resp/ok", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}], "max_tokens": 50});
    let r = post(&gate.url("/v1/chat/completions"), &body).await;
    assert_eq!(r.status, 200);
    let evs = r.events();
    check_chat(&evs).unwrap_or_else(|e| panic!("{e}\n{}", r.text()));
    let text: String = evs.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "d0 d1 d2 d3 d4 ");
    let usage = &evs[evs.len() - 2]["usage"];
    assert_eq!(
        (usage["prompt_tokens"].as_u64(), usage["completion_tokens_details"]["reasoning_tokens"].as_u64()),
        (Some(120), Some(8))
    );
    assert!(evs[0]["id"].as_str().unwrap().starts_with("chatcmpl-req_"), "real chunk ids");
    let sent = resp.last_request().unwrap().json();
    assert_eq!(
        (sent["instructions"].as_str(), sent["max_output_tokens"].as_u64(), sent["store"].as_bool()),
        (Some("sys"), Some(50), Some(false))
    );

    let r = post(
        &gate.url("/v1/chat/completions"),
        &json!({"model": "resp/tool", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "exec_command");
    assert_eq!(v["usage"]["prompt_tokens"], 120);

    let r = post(&gate.url("/v1/chat/completions"), &json!({"model": "resp/ok", "n": 2, "messages": []})).await;
    assert_eq!((r.status.as_u16(), r.json()["error"]["param"].as_str()), (400, Some("n")));
}

#[tokio::test]
async fn translated_streams_fail_in_the_clients_api_after_the_first_byte() {
    let (_chat, _resp, gate) = setup().await;
    for (model, code) in [
        ("chat/truncated", "upstream_stream_error"),
        ("chat/stall", "upstream_idle_timeout"),
        ("chat/failed", "server_error"),
    ] {
        let r = post(&gate.url("/v1/responses"), &json!({"model": model, "stream": true, "input": "x"})).await;
        let evs = r.events();
        check_responses(&evs).unwrap_or_else(|e| panic!("{model}: {e}\n{}", r.text()));
        let last = evs.last().unwrap();
        // The API's own code reaches the client; the gateway's detail is in the message.
        assert_eq!(
            (last["type"].as_str(), last["response"]["error"]["code"].as_str()),
            (Some("response.failed"), Some("server_error")),
            "{model}"
        );
        assert!(last["response"]["error"]["message"].as_str().unwrap().contains(code), "{model}: {last}");
    }
    // A chat upstream that just stops (no finish_reason, no [DONE]) still completes.
    let r = post(&gate.url("/v1/responses"), &json!({"model": "chat/no-terminal", "stream": true, "input": "x"})).await;
    assert_eq!(r.events().last().unwrap()["type"], "response.completed");
    for (model, code) in [
        ("resp/truncated", "upstream_stream_error"),
        ("resp/no-terminal", "stream_incomplete"),
        ("resp/failed", "server_error"),
    ] {
        let r = post(&gate.url("/v1/chat/completions"), &json!({"model": model, "stream": true, "messages": []})).await;
        let evs = r.events();
        check_chat(&evs).unwrap_or_else(|e| panic!("{model}: {e}\n{}", r.text()));
        let err = &evs.last().unwrap()["error"];
        assert_eq!(err["code"], "server_error", "{model}");
        assert!(err["message"].as_str().unwrap().contains(code), "{model}: {err}");
    }
}

#[tokio::test]
async fn translated_streams_are_incremental() {
    let (_chat, _resp, gate) = setup().await;
    let r = post(
        &gate.url("/v1/responses"),
        &json!({"model": "chat/slow:deltas=4,delay_ms=200", "stream": true, "input": "x"}),
    )
    .await;
    let mut arrivals = Vec::new();
    for (t, chunk) in &r.chunks {
        let n = common::http::sse_data(chunk).iter().filter(|d| d.contains("output_text.delta")).count();
        arrivals.extend(std::iter::repeat_n(*t, n));
    }
    assert_eq!(arrivals.len(), 4);
    for w in arrivals.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_millis(120), "translated deltas were buffered");
    }
}

#[tokio::test]
async fn passthrough_responses_streams_are_repaired() {
    let (_chat, _resp, gate) = setup().await;
    let body = json!({"model": "resp/sloppy", "stream": true, "input": "x"});
    let r = post(&gate.url("/v1/responses"), &body).await;
    let evs = r.events();
    check_responses(&evs).unwrap_or_else(|e| panic!("{e}\n{}", r.text()));
    let done = evs.last().unwrap();
    assert_eq!(done["response"]["output"][0]["content"][0]["text"], "sloppy", "output backfilled");
    assert!(done["response"].get("usage").is_none(), "usage {{}} removed, not relayed");
    assert!(!evs.iter().any(|e| e["type"] == "codex.rate_limits"), "vendor events dropped for non-Codex clients");
    // Codex keeps its vendor events.
    let r = common::http::send(
        "POST",
        &gate.url("/v1/responses"),
        body.to_string(),
        &[("content-type", "application/json"), ("originator", "codex_exec")],
    )
    .await;
    assert!(r.events().iter().any(|e| e["type"] == "codex.rate_limits"));
}

#[tokio::test]
async fn keepalives_flow_while_the_upstream_is_silent() {
    let chat = MockUpstream::start(MockOptions::default()).await.unwrap();
    let resp = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "[server]\nkeepalive_secs = 1\n{}{}",
        provider("chat", "chat", &chat.url(), "idle_timeout_ms = 2600"),
        provider("resp", "responses", &resp.url(), "idle_timeout_ms = 2600"),
    );
    let gate = Gate::start(&cfg).await;
    let r = post(&gate.url("/v1/responses"), &json!({"model": "resp/stall", "stream": true, "input": "x"})).await;
    let types = r.event_types();
    let keepalives = types.iter().filter(|t| *t == "response.in_progress").count();
    assert!(keepalives >= 2, "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("response.failed"));
    check_responses(&r.events()).unwrap();
    let r =
        post(&gate.url("/v1/chat/completions"), &json!({"model": "chat/stall", "stream": true, "messages": []})).await;
    assert!(r.text().matches(": keep-alive").count() >= 2, "{}", r.text());
    let err = r.events().last().unwrap()["error"].clone();
    assert_eq!(err["code"], "server_error");
    assert!(err["message"].as_str().unwrap().contains("upstream_idle_timeout"), "{err}");
}
