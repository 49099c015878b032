//! OpenTelemetry traces against a real OTLP/HTTP receiver that decodes the protobuf with the
//! official definitions (tests/e2e/otlp_receiver.py): one server span per request and one
//! client span per attempt, GenAI attributes, the client's trace continued and sent upstream.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::{provider, skip, Gate};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

fn python_with_otlp() -> Option<String> {
    let py = common::python()?;
    let ok = std::process::Command::new(&py)
        .args(["-c", "import opentelemetry.proto.collector.trace.v1.trace_service_pb2"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

#[tokio::test]
async fn spans_follow_the_genai_conventions_and_continue_the_clients_trace() {
    let Some(py) = python_with_otlp() else {
        return skip("no Python with opentelemetry-proto (.ci/run installs it in .venv)");
    };
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/otlp_receiver.py");
    let mut child = tokio::process::Command::new(py)
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = lines.next_line().await.unwrap().unwrap().trim().parse().unwrap();

    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\nservice_name = \"gate-under-test\"\n\
         [telemetry.headers]\nx-collector-key = \"secret-1\"\n{}{}\
         [[routes]]\nmodel = \"smart\"\ntargets = [\"a/500\", \"b/ok\"]\n",
        provider("a", "responses", &mock.url(), ""),
        provider("b", "chat", &mock.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let r = common::http::send(
        "POST",
        &gate.url("/v1/responses"),
        json!({"model": "smart", "input": "hi"}).to_string(),
        &[("content-type", "application/json"), ("traceparent", &format!("00-{client_trace}-{client_span}-01"))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.header("x-codex-gate-request-id").unwrap().to_owned();

    let mut spans: Vec<Value> = Vec::new();
    while spans.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.expect("spans in 10 s");
        spans.push(serde_json::from_str(&line.unwrap().unwrap()).unwrap());
    }
    let server = spans.iter().find(|s| s["kind"] == 2).expect("a server span").clone();
    let clients: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 3).collect();
    assert_eq!(clients.len(), 2, "{spans:#?}");
    assert_eq!(
        (server["path"].as_str(), server["content_type"].as_str()),
        (Some("/v1/traces"), Some("application/x-protobuf"))
    );
    assert_eq!(server["auth"], "secret-1", "configured headers reach the collector");
    assert_eq!(server["resource"]["service.name"], "gate-under-test");
    assert_eq!(server["trace_id"], client_trace, "the client's trace is continued");
    assert_eq!(server["parent"], client_span);
    assert_eq!(server["name"], "chat smart");
    let a = &server["attrs"];
    assert_eq!(a["gen_ai.operation.name"], "chat");
    assert_eq!(a["gen_ai.request.model"], "smart");
    assert_eq!(a["gen_ai.response.model"], "ok");
    assert_eq!(a["gen_ai.provider.name"], "b");
    assert!(a["gen_ai.usage.input_tokens"].as_i64().unwrap() > 0, "{a}");
    assert!(a["gen_ai.usage.output_tokens"].as_i64().unwrap() > 0);
    assert_eq!((a["codex_gate.route"].as_str(), a["codex_gate.target"].as_str()), (Some("smart"), Some("b/ok")));
    assert_eq!((a["codex_gate.attempts"].as_i64(), a["codex_gate.request_id"].as_str()), (Some(2), Some(id.as_str())));
    assert!(a["codex_gate.overhead_ms"].as_f64().is_some());
    assert_eq!(server["status"], 1);
    assert!(server["end"].as_u64() >= server["start"].as_u64());
    let (first, second) = (
        clients.iter().find(|s| s["attrs"]["codex_gate.attempt"] == 1).unwrap(),
        clients.iter().find(|s| s["attrs"]["codex_gate.attempt"] == 2).unwrap(),
    );
    for c in [first, second] {
        assert_eq!((c["trace_id"].clone(), c["parent"].clone()), (json!(client_trace), server["span_id"].clone()));
    }
    assert_eq!(first["attrs"]["codex_gate.target"], "a/500");
    assert_eq!(first["status"], 2, "the failed attempt is an error span");
    assert!(first["attrs"]["error.type"].is_string());
    assert_eq!(second["attrs"]["gen_ai.request.model"], "ok");
    // Each upstream call carried its own attempt span as the parent.
    let sent: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned))
        .collect();
    for c in [first, second] {
        let want = format!("00-{client_trace}-{}-01", c["span_id"].as_str().unwrap());
        assert!(sent.contains(&want), "{want} not in {sent:?}");
    }
    // Counted once the collector's answer is in (just after it printed the spans).
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = common::http::get(&gate.url("/metrics")).await.text();
        if metrics.contains("codex_gate_spans_exported_total 3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics.contains("codex_gate_spans_exported_total 3"), "{metrics}");
}

#[tokio::test]
async fn a_collector_that_is_down_costs_requests_nothing() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg =
        format!("[telemetry]\notlp_endpoint = \"http://127.0.0.1:{dead}\"\n{}", provider("b", "chat", &mock.url(), ""));
    let gate = Gate::start(&cfg).await;
    for _ in 0..5 {
        let r = common::http::post(&gate.url("/v1/responses"), &json!({"model": "b/ok", "input": "hi"})).await;
        assert_eq!(r.status, 200);
    }
    let mut dropped = 0;
    for _ in 0..50 {
        let m = common::http::get(&gate.url("/metrics")).await.text();
        dropped = m
            .lines()
            .find_map(|l| l.strip_prefix("codex_gate_spans_dropped_total ").and_then(|v| v.parse::<u64>().ok()))
            .unwrap_or(0);
        if dropped == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dropped, 10, "5 requests × (server + client span), counted as lost");
    let off = Gate::start(&provider("b", "chat", &mock.url(), "")).await;
    assert!(off.app.telemetry.is_none(), "off by default");
}
