//! What Codex asks a ChatGPT account for besides `/responses`: the image tool's
//! `images/generations` and `images/edits` (Codex's body, as codex-api's `endpoint/images.rs`
//! sends it), `/v1/images/*` for SDK clients, and every other `/backend-api/codex/*` path —
//! relayed to a pool account with account failover, cooldowns, the key's rules and the request
//! log, or to a route's API provider for images.

mod common;

use codex_gate::access::manage;
use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::{post, send};
use common::{provider, Gate};
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;

/// The pool (accounts acc-1 and acc-2, primary first), a Responses provider `resp` and a route
/// `img` to its image model.
async fn gate(mock: &MockUpstream) -> Gate {
    for a in ["acc-1", "acc-2"] {
        mock.add_chatgpt_account(a, false);
    }
    let cfg = format!(
        "[pool]\nissuer = \"{}\"\nstrategy = \"primary_first\"\n\
         [[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n{}\
         [[routes]]\nmodel = \"img\"\ntargets = [\"resp/gpt-image-1\"]\n",
        mock.issuer_url(),
        mock.backend_url(),
        provider("resp", "responses", &mock.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    gate.add_account(mock, "acc-1", "plus").await;
    gate.add_account(mock, "acc-2", "plus").await;
    gate
}

/// Codex's image generation call (`ImageGenerationRequest`).
fn generation() -> serde_json::Value {
    json!({"prompt": "a red fox in a field", "background": "opaque", "model": "gpt-image-1.5",
           "quality": "medium", "size": "1024x1536"})
}

#[tokio::test]
async fn codex_image_calls_reach_a_pool_account_and_fail_over_on_its_limit() {
    let mock = MockUpstream::start(MockOptions { record: 64, ..Default::default() }).await.unwrap();
    let gate = gate(&mock).await;
    let codex = [("content-type", "application/json"), ("originator", "codex_exec"), ("session-id", "s-1")];

    let r = send("POST", &gate.url("/backend-api/codex/images/generations"), generation().to_string(), &codex).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["data"][0]["b64_json"].as_str().is_some_and(|b| b.starts_with("iVBOR")), "{v}");
    assert_eq!(
        (v["size"].as_str(), v["data"][0]["revised_prompt"].as_str()),
        (Some("1024x1536"), Some("a red fox in a field"))
    );
    assert_eq!(r.header("x-codex-gate-target"), Some("pool/gpt-image-1.5"));
    let up = mock.last_request().unwrap();
    assert_eq!(up.path, "/backend-api/codex/images/generations");
    let (access, _) = mock.chatgpt_tokens("acc-1").unwrap();
    assert_eq!(up.header("authorization"), Some(format!("Bearer {access}").as_str()));
    assert_eq!((up.header("chatgpt-account-id"), up.header("originator")), (Some("acc-1"), Some("codex_exec")));
    assert_eq!(up.header("session-id"), Some("s-1"));
    assert_eq!(up.json(), generation(), "the body goes as Codex sent it");
    let rec = gate.record_where("the image generation", |r| r.api == "images").await;
    assert_eq!((rec.status, rec.account_id.as_deref()), (200, Some(acc_id(&gate, "acc-1").as_str())));
    assert_eq!((rec.input_tokens, rec.output_tokens), (17, 1372), "the image answer's usage is counted");
    assert_eq!(rec.model, "gpt-image-1.5");

    // acc-1 at its limit: the edit goes to acc-2 in the same request, and acc-1 cools down.
    mock.set_account_behavior("acc-1", Some("usage-limit"));
    let edit = json!({"images": [{"image_url": "data:image/png;base64,Zm9v"}], "prompt": "add a red hat", "model": "gpt-image-1.5"});
    let r = send("POST", &gate.url("/backend-api/codex/images/edits"), edit.to_string(), &codex).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let up = mock.last_request().unwrap();
    assert_eq!((up.path.as_str(), up.header("chatgpt-account-id")), ("/backend-api/codex/images/edits", Some("acc-2")));
    let a1 = gate.app.pool.find(&acc_id(&gate, "acc-1")).unwrap();
    assert_eq!(a1.cooldown_until_ms.load(Relaxed), 1_900_000_000_000, "cools until its limit resets");
    let rec = gate.record_where("the edit", |r| r.api == "images" && r.input_tokens == 1474).await;
    assert_eq!(rec.attempts, 2, "both accounts are in the request's attempts");

    // Every account limited: the pool's usage-limit answer, as for /responses.
    mock.set_account_behavior("acc-2", Some("usage-limit"));
    let r = send("POST", &gate.url("/backend-api/codex/images/generations"), generation().to_string(), &codex).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "usage_limit_reached");
}

fn acc_id(gate: &Gate, chatgpt_account: &str) -> String {
    gate.app.pool.accounts().iter().find(|a| a.chatgpt_account_id == chatgpt_account).unwrap().id.clone()
}

#[tokio::test]
async fn sdk_image_calls_go_to_the_models_route_else_to_the_pool() {
    let mock = MockUpstream::start(MockOptions { record: 64, ..Default::default() }).await.unwrap();
    let gate = gate(&mock).await;
    // A route's API provider: the same path below its base URL, with its own key.
    let r = post(&gate.url("/v1/images/generations"), &json!({"model": "img", "prompt": "a cat"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-codex-gate-target"), Some("resp/gpt-image-1"));
    let up = mock.last_request().unwrap();
    assert_eq!(up.path, "/v1/images/generations");
    assert_eq!(up.header("authorization"), Some("Bearer sk-provider-resp"));
    assert!(up.header("chatgpt-account-id").is_none());
    // A model no route names: the pool serves it.
    let r = post(&gate.url("/v1/images/generations"), &json!({"model": "gpt-image-1.5", "prompt": "a cat"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(mock.last_request().unwrap().path, "/backend-api/codex/images/generations");
    // A multipart edit (the SDK's form) names its model in a form field: to the pool, as sent.
    let form = "--b\r\ncontent-disposition: form-data; name=\"prompt\"\r\n\r\nhat\r\n--b--\r\n";
    let multipart = [("content-type", "multipart/form-data; boundary=b"), ("authorization", "Bearer sk-sdk")];
    let r = send("POST", &gate.url("/v1/images/edits"), form, &multipart).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let up = mock.last_request().unwrap();
    assert_eq!(
        (up.path.as_str(), up.header("content-type")),
        ("/backend-api/codex/images/edits", Some("multipart/form-data; boundary=b"))
    );
    assert_eq!(&up.body[..], form.as_bytes());
    // Without the SDK's Authorization a form post is what a web page could send: refused.
    let r = send("POST", &gate.url("/v1/images/edits"), form, &multipart[..1]).await;
    assert_eq!(r.status, 415);
}

#[tokio::test]
async fn other_backend_codex_paths_are_relayed_for_pool_accounts() {
    let mock = MockUpstream::start(MockOptions { record: 64, ..Default::default() }).await.unwrap();
    let gate = gate(&mock).await;
    let r = send("GET", &gate.url("/backend-api/codex/alpha/search?q=rust&n=2"), "", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["method"].as_str(), v["path"].as_str(), v["query"].as_str(), v["account"].as_str()),
        (Some("GET"), Some("/backend-api/codex/alpha/search"), Some("q=rust&n=2"), Some("acc-1"))
    );
    let trace = json!({"model": "gpt-5.5", "traces": [{"id": "t1", "items": []}]});
    let r = post(&gate.url("/backend-api/codex/memories/trace_summarize"), &trace).await;
    assert_eq!((r.status.as_u16(), r.json()["method"].as_str()), (200, Some("POST")));
    assert_eq!(r.json()["body_bytes"], trace.to_string().len());
    assert!(gate.record_where("the relayed path", |r| r.api == "backend" && r.model == "gpt-5.5").await.status == 200);

    // The backend's own refusal comes back as it is, and says nothing about the account.
    let r = send("GET", &gate.url("/backend-api/codex/mock-missing"), "", &[]).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let a1 = gate.app.pool.find(&acc_id(&gate, "acc-1")).unwrap();
    assert_eq!(a1.cooldown_until_ms.load(Relaxed), 0, "a 404 is the path's, not the account's");
    let r = send("GET", &gate.url("/backend-api/codex/alpha/search"), "", &[]).await;
    assert_eq!(r.json()["account"], "acc-1");

    // Paths that would leave the backend's Codex tree are refused before any account is used.
    let before = mock.hits();
    for hostile in ["/backend-api/codex/%2e%2e/accounts", "/backend-api/codex/a/..%2Fb", "/backend-api/codex/a//b"] {
        let r = send("GET", &gate.url(hostile), "", &[]).await;
        assert_eq!(r.status, 400, "{hostile}: {}", r.text());
        assert_eq!(r.json()["error"]["type"], "invalid_request_error", "{hostile}");
    }
    assert_eq!(mock.hits(), before, "no hostile path reached the backend");

    // A key that may not use the pool is refused here, as for pool models.
    let spec = json!({"name": "api-only", "targets": "providers"});
    let (k, _) = manage::create(&gate.store, spec.as_object().unwrap()).await.unwrap();
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    let r = send("GET", &gate.url("/backend-api/codex/alpha/search"), "", &[("authorization", &format!("Bearer {k}"))])
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["error"]["code"].as_str()),
        (403, Some("pool_not_allowed")),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn without_a_pool_backend_paths_say_so() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = Gate::start(&provider("chat", "chat", &mock.url(), "")).await;
    let r = send("GET", &gate.url("/backend-api/codex/alpha/search"), "", &[]).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("ChatGPT pool"), "{}", r.text());
    let r = post(&gate.url("/v1/images/generations"), &json!({"model": "gpt-image-1", "prompt": "x"})).await;
    assert_eq!((r.status.as_u16(), r.json()["error"]["code"].as_str()), (404, Some("model_not_found")));
    assert_eq!(mock.hits(), 0);
}
