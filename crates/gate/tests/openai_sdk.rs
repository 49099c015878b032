//! End to end with the official OpenAI Python SDK as the client (tests/e2e/openai_sdk.py).
//! Python with `openai` comes from CODEX_GATE_PYTHON, else `.venv/bin/python` at the workspace
//! root (made by `.ci/run`), else `python3` if it can import openai; otherwise a loud skip.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::{provider, python, skip, Gate};
use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread")]
async fn openai_python_sdk_responses_and_chat_streaming_and_not() {
    let Some(py) = python() else {
        skip("no Python with the `openai` package (run .ci/run, or set CODEX_GATE_PYTHON)");
        return;
    };
    let r = MockUpstream::start(MockOptions::default()).await.unwrap();
    let c = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "{}{}[[routes]]\nmodel = \"coder\"\ntargets = [\"resp/ok\"]\n[[routes]]\nmodel = \"chatty\"\ntargets = [\"chat/ok\"]\n\
         [[routes]]\nmodel = \"limited\"\ntargets = [\"resp/usage-limit\"]\n[[routes]]\nmodel = \"coder-x\"\ntargets = [\"chat/ok\"]\n\
         [[routes]]\nmodel = \"chatty-x\"\ntargets = [\"resp/ok\"]\n[[routes]]\nmodel = \"tools-x\"\ntargets = [\"resp/tool\"]\n",
        provider("resp", "responses", &r.url(), ""),
        provider("chat", "chat", &c.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/openai_sdk.py");
    let out = tokio::process::Command::new(&py).arg(script).arg(gate.url("/v1")).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "SDK script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for k in ["responses", "responses_stream", "chat", "chat_stream"] {
        assert_eq!(v[k], "d0 d1 d2 d3 d4 ", "{k}");
    }
    assert_eq!(v["not_found"], "model_not_found");
    assert_eq!(v["usage_limit"], "usage_limit_reached");
    assert_eq!(v["chat_tools_x"], "exec_command");
    // The SDK's own Authorization never reached an upstream.
    for req in r.requests().iter().chain(c.requests().iter()) {
        assert_ne!(req.header("authorization"), Some("Bearer sdk-client-key"));
    }
    let recs = gate.records(11).await;
    assert_eq!(recs.iter().filter(|x| x.status == 200).count(), 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_python_sdk_with_client_keys() {
    let Some(py) = python() else {
        skip("no Python with the `openai` package (run .ci/run, or set CODEX_GATE_PYTHON)");
        return;
    };
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = Gate::start(&provider("p", "chat", &m.url(), "models = [\"ok\", \"other\"]")).await;
    let mut keys = Vec::new();
    let mut ids = Vec::new();
    for spec in [
        serde_json::json!({"name": "good"}),
        serde_json::json!({"name": "rpm1", "rpm": 1}),
        serde_json::json!({"name": "broke", "budget_usd": 0}),
        serde_json::json!({"name": "only-ok", "models": ["ok"]}),
    ] {
        let (k, row) = codex_gate::access::manage::create(&gate.store, spec.as_object().unwrap()).await.unwrap();
        keys.push(k);
        ids.push(row.id);
    }
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/openai_sdk_keys.py");
    let out = tokio::process::Command::new(&py).arg(script).arg(gate.url("/v1")).args(&keys).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "SDK script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["valid"]["text"], "d0 d1 d2 d3 d4 ");
    assert_eq!(v["invalid"]["class"], "AuthenticationError", "{}", v["invalid"]);
    assert_eq!(v["invalid"]["code"], "invalid_api_key");
    assert_eq!(v["wrong_model"]["class"], "NotFoundError");
    assert_eq!(v["allowed_model"]["status"], 200);
    assert_eq!(v["rpm_first"]["status"], 200);
    assert_eq!(v["rpm_second"]["class"], "RateLimitError");
    assert_eq!(
        (v["rpm_second"]["type"].as_str(), v["rpm_second"]["code"].as_str()),
        (Some("requests"), Some("rate_limit_exceeded"))
    );
    assert!(v["rpm_second"]["retry_after"].as_str().is_some_and(|s| s.parse::<u64>().is_ok()));
    assert_eq!(v["budget"]["class"], "RateLimitError");
    assert_eq!(
        (v["budget"]["type"].as_str(), v["budget"]["code"].as_str()),
        (Some("insufficient_quota"), Some("budget_exceeded"))
    );
    // Asked with max_retries=2: x-should-retry: false stops the SDK's retries.
    gate.record_where("the budget refusal", |r| r.key_id.as_deref() == Some(ids[2].as_str())).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let rows = gate.store.recent_requests(1000).await.unwrap();
    let asked = rows.iter().filter(|r| r.key_id.as_deref() == Some(ids[2].as_str())).count();
    assert_eq!(asked, 1, "the SDK asked once");
}
