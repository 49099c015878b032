//! Client keys end to end over real sockets: the key gate (missing, unknown, revoked, expired,
//! `Bearer` and `x-api-key`), the admin gate, each limit reached with its status, body and
//! headers, the model / target / service-tier rules, per-key pool routing, costs in the request
//! log, and keys made by the CLI honoured by a running gateway within a second.

mod common;

use codex_gate::access::manage;
use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::{get, send};
use common::{provider, Gate};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

fn spec(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// Create a key in the gateway's store and load it now (as the 500 ms poll would).
async fn key(gate: &Gate, v: Value) -> (String, String) {
    let (k, row) = manage::create(&gate.store, &spec(v)).await.unwrap();
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    (k, row.id)
}

async fn call(gate: &Gate, path: &str, body: Value, key: Option<&str>) -> common::http::Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut h = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        h.push(("authorization", a));
    }
    send("POST", &gate.url(path), body.to_string(), &h).await
}

async fn chat(gate: &Gate, model: &str, key: Option<&str>) -> common::http::Resp {
    call(gate, "/v1/chat/completions", json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}), key)
        .await
}

async fn providers() -> (MockUpstream, String) {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = provider("p", "chat", &mock.url(), "models = [\"ok\", \"slow\", \"other\"]");
    (mock, cfg)
}

#[tokio::test]
async fn once_a_key_exists_every_api_request_needs_a_valid_one() {
    let (mock, cfg) = providers().await;
    let gate = Gate::start(&cfg).await;
    assert_eq!(chat(&gate, "ok", None).await.status, 200, "no keys yet: loopback is served");

    let (k, id) = key(&gate, json!({"name": "alice"})).await;
    let r = chat(&gate, "ok", None).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = chat(&gate, "ok", Some("cg-not-a-key")).await;
    assert_eq!((r.status.as_u16(), r.json()["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    assert!(!r.text().contains("cg-not-a-key"), "a presented key is never echoed");
    assert_eq!(chat(&gate, "ok", Some(&k)).await.status, 200);
    let r = send("GET", &gate.url("/v1/models"), "", &[("x-api-key", &k)]).await;
    assert_eq!(r.status, 200, "x-api-key works too");
    for path in ["/v1/models", "/backend-api/wham/usage", "/api/codex/usage"] {
        assert_eq!(get(&gate.url(path)).await.status, 401, "{path} needs a key");
    }
    // Codex gets the same refusal as a 400, which it shows and does not retry.
    let r = get(&gate.url("/backend-api/codex/models")).await;
    assert_eq!((r.status.as_u16(), r.json()["error"]["code"].as_str()), (400, Some("invalid_api_key")));
    let r = send("GET", &gate.url("/v1/models"), "", &[("originator", "codex_exec")]).await;
    assert_eq!((r.status.as_u16(), r.json()["error"]["code"].as_str()), (400, Some("invalid_api_key")));
    assert_eq!(get(&gate.url("/health")).await.status, 200, "health stays open");
    // The provider never sees the client's key.
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.header("authorization"), Some("Bearer sk-provider-p"));

    // The request log knows who asked.
    gate.record_where("alice's request", |r| r.key_id.as_deref() == Some(id.as_str()) && r.status == 200).await;

    // Revoked through the store (as the CLI does): refused within a second, by the poller.
    manage::revoke(&gate.store, &id).await.unwrap();
    let t = Instant::now();
    loop {
        let r = chat(&gate, "ok", Some(&k)).await;
        if r.status == 401 {
            assert!(r.json()["error"]["message"].as_str().unwrap().contains("revoked"));
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(1), "a revoked key was still served after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Expired.
    let (k2, id2) = key(&gate, json!({"name": "bob"})).await;
    assert_eq!(chat(&gate, "ok", Some(&k2)).await.status, 200);
    let mut row = manage::find(&gate.store, &id2).await.unwrap();
    row.expires_ms = Some(codex_gate::now_ms() - 1);
    gate.store.update_key(&row).await.unwrap();
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    let r = chat(&gate, "ok", Some(&k2)).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("expired"));

    // Rotated: the old secret stops, the new one works, same id.
    let (k3, id3) = key(&gate, json!({"name": "carol"})).await;
    let (k4, row) = manage::rotate(&gate.store, &id3).await.unwrap();
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    assert_eq!(row.id, id3);
    assert_eq!(chat(&gate, "ok", Some(&k3)).await.status, 401);
    assert_eq!(chat(&gate, "ok", Some(&k4)).await.status, 200);
}

#[tokio::test]
async fn the_admin_api_needs_an_admin_key_once_one_exists() {
    let (_mock, cfg) = providers().await;
    let gate = Gate::start(&cfg).await;
    assert_eq!(get(&gate.url("/api/keys")).await.status, 200, "loopback, no admin key yet");
    // Keys made through the admin API: shown once, then only as a prefix.
    let r = call(&gate, "/api/keys", json!({"name": "ops", "admin": true}), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let admin = r.json()["key"].as_str().unwrap().to_owned();
    assert!(admin.starts_with("cg-") && admin.len() >= 46);
    let r = send("GET", &gate.url("/api/keys"), "", &[]).await;
    assert_eq!(r.status, 401, "loopback without a key once an admin key exists");
    let r = send("GET", &gate.url("/api/keys"), "", &[("authorization", &format!("Bearer {admin}"))]).await;
    assert_eq!(r.status, 200);
    assert!(!r.text().contains(&admin[3..]), "a listing never holds a key");
    assert!(r.text().contains(&admin[..9]), "only its prefix");
    let auth = format!("Bearer {admin}");
    let r = send(
        "POST",
        &gate.url("/api/keys"),
        json!({"name": "dev", "rpm": 2}).to_string(),
        &[("authorization", &auth), ("content-type", "application/json")],
    )
    .await;
    let client = r.json()["key"].as_str().unwrap().to_owned();
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = send("GET", &gate.url("/metrics"), "", &[("authorization", &format!("Bearer {client}"))]).await;
    assert_eq!(r.status, 403, "a client key is not an admin key");
    assert_eq!(r.json()["error"]["code"], "admin_key_required");
    let r = send("GET", &gate.url("/metrics"), "", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200);
    assert!(!r.text().contains(&client[3..]) && !r.text().contains(&admin[3..]), "no key in metrics");
    // Changed through the API: the new limit applies at once.
    let r = send(
        "PATCH",
        &gate.url(&format!("/api/keys/{id}")),
        json!({"rpm": null, "models": ["ok"]}).to_string(),
        &[("authorization", &auth), ("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["policy"],
        json!({"models": ["ok"], "budget_period": "month", "targets": "any", "service_tier": "allow"})
    );
    let r = send(
        "PATCH",
        &gate.url(&format!("/api/keys/{id}")),
        json!({"rpm": "fast"}).to_string(),
        &[("authorization", &auth), ("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = send(
        "POST",
        &gate.url("/api/keys"),
        "{not json",
        &[("authorization", &auth), ("content-type", "application/json")],
    )
    .await;
    assert_eq!((r.status.as_u16(), r.json()["error"]["type"].as_str()), (400, Some("invalid_request_error")));
    // Rotated: the answer holds the new secret once; the old one stops.
    assert_eq!(chat(&gate, "ok", Some(&client)).await.status, 200);
    let r = send("POST", &gate.url(&format!("/api/keys/{id}/rotate")), "", &[("authorization", &auth)]).await;
    assert_eq!((r.status.as_u16(), r.json()["id"].as_str()), (200, Some(id.as_str())), "{}", r.text());
    let rotated = r.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(chat(&gate, "ok", Some(&client)).await.status, 401);
    assert_eq!(chat(&gate, "ok", Some(&rotated)).await.status, 200);
    // Usage by key from the rollups.
    gate.record_where("dev's request", |r| r.key_id.as_deref() == Some(id.as_str()) && r.status == 200).await;
    let r = send("GET", &gate.url("/api/usage?by=key&since=1h"), "", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let line = r.json()["lines"].as_array().unwrap().iter().find(|l| l["group"] == id.as_str()).cloned().unwrap();
    assert_eq!(line["requests"], 2, "{line}");
    let r = send("GET", &gate.url("/api/usage?since=soon"), "", &[("authorization", &auth)]).await;
    assert_eq!((r.status.as_u16(), r.json()["error"]["param"].as_str()), (400, Some("since")));
    let r = send("DELETE", &gate.url(&format!("/api/keys/{id}")), "", &[("authorization", &auth)]).await;
    assert_eq!(r.json()["state"], "revoked");
    assert_eq!(chat(&gate, "ok", Some(&rotated)).await.status, 401);
}

#[tokio::test]
async fn each_limit_answers_429_with_its_headers() {
    let (mock, mut cfg) = providers().await;
    // One request of `ok` costs $1 (5 input + some output tokens at these prices).
    cfg.push_str("[prices.ok]\ninput = 200000.0\noutput = 200000.0\n");
    let gate = Gate::start(&cfg).await;

    // Requests per minute.
    let (k, _) = key(&gate, json!({"name": "rpm", "rpm": 2})).await;
    assert_eq!(chat(&gate, "ok", Some(&k)).await.status, 200);
    assert_eq!(chat(&gate, "ok", Some(&k)).await.status, 200);
    let hits = mock.hits();
    let r = chat(&gate, "ok", Some(&k)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(r.json()["error"]["type"], "requests");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("try again in"), "Codex reads the delay from it");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=120).contains(&retry), "{retry}");
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(r.header("x-ratelimit-reset-requests"), Some(format!("{retry}s").as_str()));
    assert_eq!(mock.hits(), hits, "a refused request never reaches the upstream");

    // Budget: the first request spends it, the next is refused with a code of its own.
    let (k, id) = key(&gate, json!({"name": "budget", "budget_usd": 0.5, "budget_period": "day"})).await;
    assert_eq!(chat(&gate, "ok", Some(&k)).await.status, 200);
    let r = chat(&gate, "ok", Some(&k)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "insufficient_quota");
    assert_eq!(r.json()["error"]["code"], "budget_exceeded");
    assert_eq!(r.header("x-should-retry"), Some("false"));
    assert_eq!(r.header("x-ratelimit-limit-budget-usd"), Some("0.5000"));
    let row = gate
        .record_where("the budget key's request", |r| r.key_id.as_deref() == Some(id.as_str()) && r.status == 200)
        .await;
    assert!(row.cost_usd > 0.5, "priced by [prices.ok]: {}", row.cost_usd);

    // Tokens per minute: the first request's real tokens fill it.
    let (k, _) = key(&gate, json!({"name": "tpm", "tpm": 5})).await;
    assert_eq!(chat(&gate, "ok", Some(&k)).await.status, 200);
    let r = chat(&gate, "ok", Some(&k)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "tokens");
    assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("5"));

    // Concurrency: a second request while the first streams.
    let (k, _) = key(&gate, json!({"name": "conc", "concurrency": 1})).await;
    let url = gate.url("/v1/chat/completions");
    let slow = {
        let k = k.clone();
        tokio::spawn(async move {
            let body = json!({"model": "slow", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
            let auth = format!("Bearer {k}");
            send("POST", &url, body.to_string(), &[("content-type", "application/json"), ("authorization", &auth)])
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = chat(&gate, "ok", Some(&k)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "concurrency");
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(chat(&gate, "ok", Some(&k)).await.status, 200, "the slot came back when the stream ended");

    for code in ["key_rpm_exceeded", "budget_exceeded", "key_tpm_exceeded", "key_concurrency_exceeded"] {
        gate.record_where(code, |r| r.error_code.as_deref() == Some(code) && r.status == 429).await;
    }
    let m = get(&gate.url("/metrics")).await.text();
    assert!(m.contains("codex_gate_key_limited_total 4"), "{m}");
}

#[tokio::test]
async fn a_new_limit_counts_the_usage_already_recorded() {
    let (_mock, cfg) = providers().await;
    let gate = Gate::start(&cfg).await;
    let (k, id) = key(&gate, json!({"name": "busy"})).await;
    for _ in 0..3 {
        assert_eq!(chat(&gate, "ok", Some(&k)).await.status, 200);
    }
    gate.records(3).await; // all three in the store (the writer batches)
    manage::update(&gate.store, &id, &spec(json!({"rpm": 3}))).await.unwrap();
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    let r = chat(&gate, "ok", Some(&k)).await;
    assert_eq!(r.status, 429, "three were already sent this minute: {}", r.text());
}

#[tokio::test]
async fn model_target_and_tier_rules() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    let cfg = format!(
        "{}[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\nmodels = [\"ok\"]\n\
         [[routes]]\nmodel = \"both\"\ntargets = [\"p/ok\", \"pool/ok\"]\n[pool]\nissuer = \"{}\"\n",
        provider("p", "chat", &mock.url(), "models = [\"ok\", \"other\"]"),
        mock.backend_url(),
        mock.issuer_url()
    );
    let gate = Gate::start(&cfg).await;
    gate.add_account(&mock, "acc-1", "plus").await;

    // Model allow-list: other models do not exist for this key, and are not listed.
    let (k, _) = key(&gate, json!({"name": "m", "models": ["ok", "p/*"]})).await;
    assert_eq!(chat(&gate, "ok", Some(&k)).await.status, 200);
    assert_eq!(chat(&gate, "p/other", Some(&k)).await.status, 200, "a pattern matches provider/model refs");
    let r = chat(&gate, "other", Some(&k)).await;
    assert_eq!((r.status.as_u16(), r.json()["error"]["code"].as_str()), (404, Some("model_not_found")));
    let r = send("GET", &gate.url("/v1/models"), "", &[("authorization", &format!("Bearer {k}"))]).await;
    let listed: Vec<String> =
        r.json()["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    let has = |m: &str| listed.iter().any(|l| l == m);
    assert!(has("ok") && has("p/other") && !has("other") && !has("both"), "{listed:?}");

    // Pool only: the route's provider target is skipped.
    let (k, _) = key(&gate, json!({"name": "pool-only", "targets": "pool"})).await;
    let r = chat(&gate, "both", Some(&k)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-codex-gate-target"), Some("pool/ok"));
    assert_eq!(chat(&gate, "other", Some(&k)).await.status, 404, "no pool target: nothing to reach");
    // Providers only.
    let (k, _) = key(&gate, json!({"name": "api-only", "targets": "providers"})).await;
    let r = chat(&gate, "both", Some(&k)).await;
    assert_eq!(r.header("x-codex-gate-target"), Some("p/ok"));
    assert_eq!(chat(&gate, "pool/ok", Some(&k)).await.status, 404);

    // Service tier: refused, or stripped before it leaves.
    let body = json!({"model": "ok", "service_tier": "priority", "messages": [{"role": "user", "content": "hi"}]});
    let (k, _) = key(&gate, json!({"name": "no-priority", "service_tier": "refuse"})).await;
    let r = call(&gate, "/v1/chat/completions", body.clone(), Some(&k)).await;
    assert_eq!((r.status.as_u16(), r.json()["error"]["param"].as_str()), (400, Some("service_tier")));
    let (k, _) = key(&gate, json!({"name": "strip", "service_tier": "strip"})).await;
    let r = call(&gate, "/v1/chat/completions", body.clone(), Some(&k)).await;
    assert_eq!(r.status, 200);
    let sent = mock.last_request().unwrap().json();
    assert!(sent.get("service_tier").is_none(), "{sent}");
    assert_eq!(sent["model"], "ok");
    let (k, _) = key(&gate, json!({"name": "allow"})).await;
    call(&gate, "/v1/chat/completions", body, Some(&k)).await;
    assert_eq!(mock.last_request().unwrap().json()["service_tier"], "priority");
}

#[tokio::test]
async fn pool_share_and_per_key_pool_routing() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-a", false);
    mock.add_chatgpt_account("acc-b", false);
    let cfg = format!(
        "{}[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\nmodels = [\"ok\"]\n\
         [[routes]]\nmodel = \"spill\"\ntargets = [\"pool/ok\", \"p/ok\"]\n[pool]\nissuer = \"{}\"\nstrategy = \"round_robin\"\n",
        provider("p", "chat", &mock.url(), "models = [\"ok\"]"),
        mock.backend_url(),
        mock.issuer_url()
    );
    let gate = Gate::start(&cfg).await;
    let a = gate.add_account(&mock, "acc-a", "plus").await;
    gate.add_account(&mock, "acc-b", "plus").await;
    let served_by = || mock.requests().into_iter().rfind(|q| q.path.ends_with("/codex/responses")).unwrap();

    let (k0, _) = key(&gate, json!({"name": "plain"})).await;
    // A key held to one account uses only it.
    let (k, _) = key(&gate, json!({"name": "a-only", "pool_accounts": [a.clone()]})).await;
    for _ in 0..3 {
        assert_eq!(chat(&gate, "pool/ok", Some(&k)).await.status, 200);
        assert_eq!(served_by().header("chatgpt-account-id"), Some("acc-a"));
    }

    // A key's own strategy: primary_first keeps it on the first account where the pool's
    // round_robin alternates.
    let (k, _) = key(&gate, json!({"name": "first", "pool_strategy": "primary_first"})).await;
    for i in 0..3 {
        let body = json!({"model": "pool/ok", "messages": [{"role": "user", "content": format!("strategy {i}")}]});
        assert_eq!(call(&gate, "/v1/chat/completions", body, Some(&k)).await.status, 200);
        assert_eq!(served_by().header("chatgpt-account-id"), Some("acc-a"));
    }
    let mut seen = std::collections::HashSet::new();
    for i in 0..3 {
        let body = json!({"model": "pool/ok", "messages": [{"role": "user", "content": format!("pool {i}")}]});
        assert_eq!(call(&gate, "/v1/chat/completions", body, Some(&k0)).await.status, 200);
        seen.insert(served_by().header("chatgpt-account-id").unwrap().to_owned());
    }
    assert_eq!(seen.len(), 2, "the pool's own round_robin spreads: {seen:?}");

    // Pool share: 25 % of the pool. Two equal accounts: account A going 0 → 60 % is 30 % of the pool.
    let (k, _) = key(&gate, json!({"name": "share", "pool_share": 25, "pool_accounts": [a.clone()]})).await;
    assert_eq!(chat(&gate, "pool/ok", Some(&k)).await.status, 200);
    mock.set_usage("acc-a", 60.0);
    assert_eq!(chat(&gate, "pool/ok", Some(&k)).await.status, 200, "the turn that used it is served");
    let r = chat(&gate, "pool/ok", Some(&k)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "usage_limit_reached", "Codex shows a usage limit and stops");
    assert_eq!(r.json()["error"]["code"], "pool_share_exceeded");
    assert!(r.json()["error"]["resets_at"].as_i64().unwrap() > codex_gate::now_ms() / 1000);
    // A route with an API provider behind the pool spills there instead.
    let r = chat(&gate, "spill", Some(&k)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-codex-gate-target"), Some("p/ok"));
    let other = key(&gate, json!({"name": "other"})).await.0;
    assert_eq!(chat(&gate, "pool/ok", Some(&other)).await.status, 200, "other keys keep the pool");
    let row = gate.record_where("a pool request", |r| r.account_id.is_some()).await;
    assert_eq!(row.account_id.as_deref(), Some(a.as_str()), "the serving account is logged");
    assert!(row.cost_usd == 0.0, "the mock's `ok` has no price");
}

#[tokio::test]
async fn chat_streams_are_counted_even_when_the_client_did_not_ask_for_usage() {
    let (mock, cfg) = providers().await;
    let gate = Gate::start(&cfg).await;
    let body = json!({"model": "ok", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = call(&gate, "/v1/chat/completions", body, None).await;
    assert_eq!(r.status, 200);
    let sent = mock.last_request().unwrap().json();
    assert_eq!(sent["stream_options"]["include_usage"], true, "asked upstream");
    let events = r.events();
    assert!(
        events.iter().all(|e| e.get("usage").is_none_or(Value::is_null)),
        "no usage chunk for the client: {events:?}"
    );
    assert!(events.iter().any(|e| e == "[DONE]"));
    let row = gate.record_where("the stream's row", |r| r.stream).await;
    assert!(row.input_tokens > 0 && row.output_tokens > 0, "{row:?}");
    // A client that asked gets it, as before.
    let body = json!({"model": "ok", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "hi"}]});
    let r = call(&gate, "/v1/chat/completions", body, None).await;
    assert!(r.events().iter().any(|e| e["usage"]["prompt_tokens"].as_u64().is_some()));
}

#[tokio::test]
async fn an_account_at_its_rate_spills_to_the_next_and_none_fails() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-a", false);
    mock.add_chatgpt_account("acc-b", false);
    let cfg = format!(
        "[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\nmodels = [\"ok\"]\n\
         [pool]\nissuer = \"{}\"\nstrategy = \"primary_first\"\naccount_rpm = 2\n",
        mock.backend_url(),
        mock.issuer_url()
    );
    let gate = Gate::start(&cfg).await;
    gate.add_account(&mock, "acc-a", "plus").await;
    gate.add_account(&mock, "acc-b", "plus").await;
    let mut served = Vec::new();
    for i in 0..5 {
        // Distinct conversations, so no session keeps an account.
        let body = json!({"model": "pool/ok", "input": format!("hi {i}")});
        let r = call(&gate, "/v1/responses", body, None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let q = mock.requests().into_iter().rfind(|q| q.path.ends_with("/codex/responses")).unwrap();
        served.push(q.header("chatgpt-account-id").unwrap().to_owned());
    }
    // Two on the first account, two spilled to the second, then both at their rate: still served.
    assert_eq!(served[..4], ["acc-a", "acc-a", "acc-b", "acc-b"], "{served:?}");
}
