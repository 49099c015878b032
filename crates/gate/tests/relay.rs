//! Same-API relaying over real sockets: bodies and headers forwarded as they should be, streams
//! relayed chunk by chunk, usage and outcome recorded.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::{post, send};
use common::{provider, Gate};
use serde_json::json;
use std::time::Duration;

async fn setup() -> (MockUpstream, MockUpstream, Gate) {
    let r = MockUpstream::start(MockOptions::default()).await.unwrap();
    let c = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "{}{}[[routes]]\nmodel = \"coder\"\ntargets = [\"resp/ok\"]\n[[routes]]\nmodel = \"chatty\"\ntargets = [\"chat/ok\"]\n",
        provider("resp", "responses", &r.url(), "models = [\"gpt-5.5\"]\nheaders = { \"X-Team\" = \"core\" }"),
        provider("chat", "chat", &c.url(), "models = [\"deepseek-chat\"]"),
    );
    let gate = Gate::start(&cfg).await;
    (r, c, gate)
}

#[tokio::test]
async fn responses_body_goes_upstream_unchanged_but_for_the_model() {
    let (r, _c, gate) = setup().await;
    let body = r#"{"zeta": {"keep": [1, 2.50, "x"]}, "model": "coder", "input": "hi",   "unknown_field": true}"#;
    let resp = send(
        "POST",
        &gate.url("/v1/responses"),
        body,
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer client-secret-token"),
            ("session-id", "s-1"),
            ("thread-id", "t-1"),
            ("x-client-request-id", "c-1"),
            ("x-codex-turn-metadata", "{\"turn_id\":\"u\"}"),
            ("cookie", "do-not-forward"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["output"][0]["content"][0]["text"], "d0 d1 d2 d3 d4 ");
    let up = r.last_request().unwrap();
    assert_eq!(up.path, "/v1/responses");
    assert_eq!(
        std::str::from_utf8(&up.body).unwrap(),
        r#"{"zeta": {"keep": [1, 2.50, "x"]}, "model": "ok", "input": "hi",   "unknown_field": true}"#
    );
    assert_eq!(up.header("authorization"), Some("Bearer sk-provider-resp"));
    for (k, v) in [("session-id", "s-1"), ("thread-id", "t-1"), ("x-client-request-id", "c-1"), ("x-team", "core")] {
        assert_eq!(up.header(k), Some(v), "{k}");
    }
    // Codex's own headers (workspace path, installation id) never reach a third-party provider.
    assert_eq!(up.header("x-codex-turn-metadata"), None);
    assert_eq!(up.header("cookie"), None);
    let overhead: f64 = resp.header("x-codex-gate-overhead-ms").unwrap().parse().unwrap();
    assert!((0.0..1000.0).contains(&overhead));
    assert_eq!(resp.header("x-codex-gate-target"), Some("resp/ok"));

    let rec = &gate.records(1).await[0];
    assert_eq!(
        (rec.api.as_str(), rec.route.as_str(), rec.target.as_str(), rec.model.as_str()),
        ("responses", "coder", "resp/ok", "coder")
    );
    assert_eq!(
        (rec.status, rec.input_tokens, rec.cached_tokens, rec.output_tokens, rec.reasoning_tokens),
        (200, 120, 100, 30, 8)
    );
    assert_eq!(rec.error_code, None);
    assert!(!rec.stream);
    assert_eq!(rec.id, resp.header("x-codex-gate-request-id").unwrap());
}

#[tokio::test]
async fn responses_stream_is_relayed_and_recorded() {
    let (r, _c, gate) = setup().await;
    let resp =
        post(&gate.url("/backend-api/codex/responses"), &json!({"model": "resp/ok", "input": "x", "stream": true}))
            .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    // The path makes this a Codex client: the upstream's turn state comes back inside the
    // gateway's own (sealed), which hands it back to the upstream on the turn's next request.
    let state = resp.header("x-codex-turn-state").expect("a turn state");
    let opened = codex_gate::upstream::turn_state::TurnState::open(gate.app.pool.cipher(), state).unwrap();
    assert_eq!((opened.target.as_str(), opened.upstream.as_deref()), ("resp/ok", Some("mock-turn-state")));
    let types = resp.event_types();
    assert_eq!(types.first().map(String::as_str), Some("response.created"));
    assert_eq!(types.last().map(String::as_str), Some("response.completed"));
    assert_eq!(types.iter().filter(|t| *t == "response.output_text.delta").count(), 5);
    assert_eq!(r.hits(), 1);
    let rec = &gate.records(1).await[0];
    assert!(rec.stream);
    assert_eq!((rec.status, rec.output_tokens, rec.error_code.clone()), (200, 30, None));
    assert!(rec.ttfb_ms.is_some());
}

#[tokio::test]
async fn healthy_responses_stream_reaches_the_client_byte_for_byte() {
    let (r, _c, gate) = setup().await;
    // The mock answers a model the same way every time, so its direct answer is the reference.
    // Its SSE comments would be dropped, and `event:` lines rewritten, by a relay that decodes
    // and re-encodes every event.
    let body = |model: &str| json!({"model": model, "input": "x", "stream": true});
    let direct = post(&format!("{}/responses", r.url()), &body("pings:deltas=30")).await;
    let relayed = post(&gate.url("/v1/responses"), &body("resp/pings:deltas=30")).await;
    assert_eq!(relayed.status, 200);
    assert!(direct.body.len() > 3000, "a real stream: {} bytes", direct.body.len());
    assert!(direct.text().contains(": keep-alive"));
    // The upstream model is `pings:deltas=30` either way, so even the model names match.
    assert_eq!(relayed.text(), direct.text(), "a healthy stream is not re-encoded");
    codex_gate_protocol::grammar::check_responses(&relayed.events()).unwrap();
}

#[tokio::test]
async fn events_split_across_reads_are_relayed_whole_and_in_order() {
    let (r, _c, gate) = setup().await;
    let direct =
        post(&format!("{}/responses", r.url()), &json!({"model": "ok:deltas=6", "input": "x", "stream": true})).await;
    let resp =
        post(&gate.url("/v1/responses"), &json!({"model": "resp/ragged:deltas=6", "input": "x", "stream": true})).await;
    assert_eq!(resp.status, 200);
    assert!(resp.chunks.len() > 10, "the mock's pieces arrive as many reads: {}", resp.chunks.len());
    let direct_events = direct.events();
    let relayed_events = resp.events();
    assert_eq!(relayed_events.len(), direct_events.len());
    for (a, b) in relayed_events.iter().zip(&direct_events) {
        assert_eq!(a["type"], b["type"]);
        assert_eq!(a.get("delta"), b.get("delta"));
    }
    codex_gate_protocol::grammar::check_responses(&relayed_events).unwrap();
    let rec = &gate.records(1).await[0];
    assert_eq!((rec.status, rec.output_tokens, rec.error_code.clone()), (200, 30, None));
}

#[tokio::test]
async fn chat_stream_and_whole_pass_through() {
    let (_r, c, gate) = setup().await;
    let body = json!({"model": "chatty", "messages": [{"role": "user", "content": "hi"}], "stream": true,
                      "stream_options": {"include_usage": true}});
    let resp = post(&gate.url("/v1/chat/completions"), &body).await;
    assert_eq!(resp.status, 200);
    let events = resp.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "d0 d1 d2 d3 d4 ");
    assert_eq!(c.last_request().unwrap().json()["model"], "ok");

    let resp = post(&gate.url("/v1/chat/completions"), &json!({"model": "deepseek-chat", "messages": []})).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["choices"][0]["message"]["content"], "d0 d1 d2 d3 d4 ");
    assert_eq!(c.last_request().unwrap().json()["model"], "deepseek-chat", "listed models are sent as named");
    let recs = gate.records(2).await;
    assert!(recs.iter().all(|r| r.api == "chat" && r.status == 200 && r.input_tokens == 120));
}

#[tokio::test]
async fn streaming_is_incremental_not_buffered() {
    let (_r, _c, gate) = setup().await;
    let resp = post(
        &gate.url("/v1/responses"),
        &json!({"model": "resp/slow:deltas=4,delay_ms=200", "input": "x", "stream": true}),
    )
    .await;
    assert_eq!(resp.status, 200);
    // Find when each delta arrived.
    let mut arrivals = Vec::new();
    for (t, chunk) in &resp.chunks {
        let n = common::http::sse_data(chunk).iter().filter(|d| d.contains("output_text.delta")).count();
        arrivals.extend(std::iter::repeat_n(*t, n));
    }
    assert_eq!(arrivals.len(), 4, "four deltas");
    for w in arrivals.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= Duration::from_millis(120), "deltas arrived {gap:?} apart: the stream was buffered");
    }
}

#[tokio::test]
async fn models_health_and_metrics() {
    let (_r, _c, gate) = setup().await;
    let models = common::http::get(&gate.url("/v1/models")).await.json();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["coder", "chatty", "gpt-5.5", "deepseek-chat", "resp/gpt-5.5", "chat/deepseek-chat"]);
    assert_eq!(models["data"][2]["owned_by"], "resp");
    assert_eq!(models["data"][0]["object"], "model");

    let health = common::http::get(&gate.url("/health")).await;
    assert_eq!((health.status.as_u16(), health.json()["status"].as_str()), (200, Some("ok")));

    post(&gate.url("/v1/responses"), &json!({"model": "coder", "input": "x"})).await;
    post(&gate.url("/v1/responses"), &json!({"model": "nope", "input": "x"})).await;
    let text = common::http::get(&gate.url("/metrics")).await.text();
    assert!(text.contains(r#"codex_gate_requests_total{route="coder",target="resp/ok",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"codex_gate_errors_total{route="-",target="-",code="model_not_found"} 1"#), "{text}");
    assert!(text.contains(r#"codex_gate_overhead_seconds_count{route="coder",target="resp/ok"} 1"#));
    assert!(text.contains(r#"codex_gate_time_to_first_byte_seconds_count{route="coder",target="resp/ok"} 1"#));
    assert!(text.contains("codex_gate_in_flight_requests 0"));
}

#[tokio::test]
async fn client_disconnect_mid_stream_stops_upstream_work_and_is_recorded() {
    let (_r, _c, gate) = setup().await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let body = json!({"model": "resp/slow:deltas=50,delay_ms=100", "input": "x", "stream": true}).to_string();
    let req = http::Request::post(gate.url("/v1/responses"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    use http_body_util::BodyExt;
    let _first = body.frame().await.unwrap().unwrap();
    drop(body);
    drop(client);
    let rec = &gate.records(1).await[0];
    assert_eq!((rec.status, rec.error_code.as_deref()), (499, Some("client_disconnected")));
    assert!(rec.latency_ms < 2500, "upstream work stopped early, not after all 50 deltas");
    let health = common::http::get(&gate.url("/health")).await.json();
    assert_eq!(health["in_flight"], 0);
}

#[tokio::test]
async fn tool_call_streams_pass_through_with_the_full_item() {
    let (_r, _c, gate) = setup().await;
    let resp =
        post(&gate.url("/v1/responses"), &json!({"model": "resp/tool", "input": "run it", "stream": true})).await;
    let done: Vec<_> = resp.events().into_iter().filter(|e| e["type"] == "response.output_item.done").collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["item"]["type"], "function_call");
    assert_eq!(done[0]["item"]["name"], "exec_command");
    assert_eq!(done[0]["item"]["arguments"], r#"{"cmd":"echo mock-tool-ran"}"#);
    let body = json!({"model": "chat/tool", "messages": [{"role": "user", "content": "x"}], "stream": true});
    let resp = post(&gate.url("/v1/chat/completions"), &body).await;
    let args: String = resp
        .events()
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(args, r#"{"cmd":"echo mock-tool-ran"}"#);
}
