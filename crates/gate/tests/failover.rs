//! Failover before the first byte, fail-closed routes, and failures after the first byte
//! becoming a final event.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::post;
use common::{provider, Gate};
use serde_json::json;

/// Two providers on two mocks; route `r` = [a/<first>, b/ok].
async fn pair(first: &str, fallback: bool, extra_a: &str) -> (MockUpstream, MockUpstream, Gate) {
    let a = MockUpstream::start(MockOptions::default()).await.unwrap();
    let b = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "{}{}[[routes]]\nmodel = \"r\"\ntargets = [\"a/{first}\", \"b/ok\"]\nfallback = {fallback}\n",
        provider("a", "responses", &a.url(), extra_a),
        provider("b", "responses", &b.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    (a, b, gate)
}

#[tokio::test]
async fn retryable_failures_before_the_first_byte_move_to_the_next_target() {
    for (scenario, extra, stream) in [
        ("reset", "", true),
        ("reset", "", false),
        ("500", "", true),
        ("429", "", false),
        ("usage-limit", "", true),
        ("hang", "first_byte_timeout_ms = 300", true),
        ("hang", "first_byte_timeout_ms = 300", false),
        // 200s that are not the API's answer fail over too.
        ("html-200", "", true),
        ("html-200", "", false),
        ("garbage-200", "", false),
        ("html-as-sse", "", true),
    ] {
        let (a, b, gate) = pair(scenario, true, extra).await;
        let resp = post(&gate.url("/v1/responses"), &json!({"model": "r", "input": "x", "stream": stream})).await;
        assert_eq!(resp.status, 200, "{scenario}: {}", resp.text());
        assert_eq!(resp.header("x-codex-gate-target"), Some("b/ok"), "{scenario}");
        assert_eq!((a.hits(), b.hits()), (1, 1), "{scenario}: one attempt each");
        let rec = &gate.records(1).await[0];
        assert_eq!((rec.status, rec.attempts, rec.target.as_str()), (200, 2, "b/ok"), "{scenario}");
        let metrics = common::http::get(&gate.url("/metrics")).await.text();
        assert!(metrics.contains("codex_gate_failovers_total 1"), "{scenario}");
        assert!(
            metrics.contains(&format!("codex_gate_errors_total{{route=\"r\",target=\"a/{scenario}\"")),
            "{scenario}: {metrics}"
        );
    }
}

#[tokio::test]
async fn a_200_that_is_not_the_apis_answer_is_a_clear_error_when_nothing_else_can_serve() {
    for (scenario, stream) in [("html-200", true), ("html-200", false), ("garbage-200", false), ("html-as-sse", true)] {
        let (_a, _b, gate) = pair(scenario, false, "").await;
        let resp = post(&gate.url("/v1/responses"), &json!({"model": "r", "input": "x", "stream": stream})).await;
        assert_eq!(resp.status, 502, "{scenario}: {}", resp.text());
        assert_eq!(resp.json()["error"]["code"], "upstream_bad_answer", "{scenario}");
        assert_eq!(resp.header("content-type"), Some("application/json"), "{scenario}: not relayed as it came");
        let rec = &gate.records(1).await[0];
        assert_eq!((rec.status, rec.error_code.as_deref()), (502, Some("upstream_bad_answer")), "{scenario}");
    }
}

#[tokio::test]
async fn a_fail_closed_route_stops_at_the_first_target() {
    let (a, b, gate) = pair("500", false, "").await;
    let resp = post(&gate.url("/v1/responses"), &json!({"model": "r", "input": "x", "stream": true})).await;
    assert_eq!(resp.status, 500);
    let err = resp.json();
    assert_eq!(err["error"]["type"], "server_error");
    assert_eq!(err["error"]["code"], "internal_error");
    assert_eq!((a.hits(), b.hits()), (1, 0));
}

#[tokio::test]
async fn request_shaped_errors_are_not_retried_elsewhere() {
    let (a, b, gate) = pair("400", true, "").await;
    let resp = post(&gate.url("/v1/responses"), &json!({"model": "r", "input": "x"})).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["code"], "invalid_value");
    assert_eq!((a.hits(), b.hits()), (1, 0));
}

#[tokio::test]
async fn usage_limit_is_relayed_as_codex_expects_when_nothing_else_can_serve() {
    let a = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = Gate::start(&provider("a", "responses", &a.url(), "")).await;
    let resp = post(&gate.url("/v1/responses"), &json!({"model": "a/usage-limit", "input": "x", "stream": true})).await;
    assert_eq!(resp.status, 429);
    let err = resp.json();
    assert_eq!(err["error"]["type"], "usage_limit_reached");
    assert_eq!(err["error"]["plan_type"], "plus");
    assert_eq!(err["error"]["resets_at"], 1_900_000_000);
    assert_eq!(resp.header("x-codex-primary-used-percent"), Some("100.0"));
    assert_eq!(a.hits(), 1, "no retries against an exhausted upstream");

    let resp = post(&gate.url("/v1/responses"), &json!({"model": "a/429:retry_after=7", "input": "x"})).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("7"));
    assert_eq!(resp.json()["error"]["code"], "rate_limit_exceeded");
}

#[tokio::test]
async fn every_target_down_gives_a_clean_gateway_error() {
    // Nothing listens on port 9 of the loopback: connection refused.
    let gate = Gate::start(&provider("dead", "chat", "http://127.0.0.1:9/v1", "connect_timeout_ms = 500")).await;
    let resp = post(&gate.url("/v1/chat/completions"), &json!({"model": "dead/x", "messages": []})).await;
    assert_eq!(resp.status, 502);
    let err = resp.json();
    assert_eq!(err["error"]["code"], "upstream_connect_failed");
    assert_eq!(err["error"]["type"], "server_error");
    // An error answer names the target that failed, as a success names the one that served.
    assert_eq!(resp.header("x-codex-gate-target"), Some("dead/x"));
    assert!(resp.header("x-codex-gate-request-id").is_some());
}

#[tokio::test]
async fn failures_after_the_first_byte_end_the_responses_stream_with_response_failed() {
    let a = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = Gate::start(&provider("a", "responses", &a.url(), "idle_timeout_ms = 300")).await;
    for (scenario, code) in [
        ("truncated", "upstream_stream_error"),
        ("no-terminal", "stream_incomplete"),
        ("stall", "upstream_idle_timeout"),
        ("failed:code=rate_limit_exceeded", "rate_limit_exceeded"),
    ] {
        let resp =
            post(&gate.url("/v1/responses"), &json!({"model": format!("a/{scenario}"), "input": "x", "stream": true}))
                .await;
        assert_eq!(resp.status, 200, "{scenario}");
        let events = resp.events();
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.failed", "{scenario}: {}", resp.text());
        // The client gets the API's own code (the upstream's, or `server_error`, which Codex
        // and OpenClaw retry) with the gateway's detail in the message; the log keeps the detail.
        let client_code = if code == "rate_limit_exceeded" { code } else { "server_error" };
        assert_eq!(last["response"]["error"]["code"], client_code, "{scenario}");
        if client_code == "server_error" {
            let msg = last["response"]["error"]["message"].as_str().unwrap();
            assert!(msg.contains(code), "{scenario}: {msg}");
            // Shaped like the API's own failure event.
            assert!(last["sequence_number"].as_u64().is_some(), "{scenario}: {last}");
            assert_eq!(last["response"]["output"], json!([]), "{scenario}");
            if scenario != "stall" {
                assert_eq!(last["response"]["model"], scenario, "{scenario}");
                assert!(last["response"]["created_at"].as_u64().is_some(), "{scenario}");
            }
        }
        assert_eq!(events.iter().filter(|e| e["type"] == "response.failed").count(), 1, "{scenario}");
        if scenario != "stall" {
            assert_eq!(last["response"]["id"], "resp_mock", "{scenario}: the upstream's response id is kept");
        }
    }
    let recs = gate.records(4).await;
    let mut codes: Vec<_> = recs.iter().map(|r| r.error_code.clone().unwrap()).collect();
    codes.sort();
    assert_eq!(codes, ["rate_limit_exceeded", "stream_incomplete", "upstream_idle_timeout", "upstream_stream_error"]);
}

#[tokio::test]
async fn failures_after_the_first_byte_end_the_chat_stream_with_an_error_chunk() {
    let a = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = Gate::start(&provider("a", "chat", &a.url(), "idle_timeout_ms = 300")).await;
    for (scenario, code) in [
        ("truncated", "upstream_stream_error"),
        ("cut-mid-event", "upstream_stream_error"),
        ("stall", "upstream_idle_timeout"),
        ("no-terminal", "stream_incomplete"),
    ] {
        let resp = post(
            &gate.url("/v1/chat/completions"),
            &json!({"model": format!("a/{scenario}"), "messages": [], "stream": true}),
        )
        .await;
        assert_eq!(resp.status, 200);
        let last = resp.events().last().cloned().unwrap();
        assert_eq!(last["error"]["code"], "server_error", "{scenario}: {}", resp.text());
        assert!(last["error"]["message"].as_str().unwrap().contains(code), "{scenario}");
        // The error chunk is an event of its own: every event before it is whole JSON.
        for e in resp.events() {
            assert!(e.is_object() || e == "[DONE]", "{scenario}: a broken event reached the client: {e}");
        }
        assert!(!resp.text().contains("never whole"), "{scenario}: half an event reached the client");
    }
}
