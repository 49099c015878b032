//! The subscription pool against the mock ChatGPT backend and OAuth issuer: headers and body
//! sent for an account, failover across accounts, cooldowns, exhaustion, refresh (proactive,
//! reactive, single-flight, rotation persisted, permanent failure), affinity, pooled usage, and
//! no token ever in plaintext at rest, in logs' surfaces or in admin answers.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use codex_gate_protocol::grammar::check_responses;
use common::http::{get, post, send};
use common::Gate;
use serde_json::json;
use std::sync::Arc;

async fn pool_gate(mock: &MockUpstream, extra_pool: &str) -> Gate {
    let cfg = format!(
        "[pool]\nissuer = \"{}\"\n{extra_pool}\n[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n\
         [[providers]]\nname = \"api\"\nkind = \"responses\"\nbase_url = \"{}\"\napi_key = \"sk-api\"\n\
         [[routes]]\nmodel = \"smart\"\ntargets = [\"pool/gpt-5.5\", \"api/ok\"]\n",
        mock.issuer_url(),
        mock.backend_url(),
        mock.url()
    );
    Gate::start(&cfg).await
}

fn turn(stream: bool) -> serde_json::Value {
    json!({"model": "pool/gpt-5.5", "stream": stream, "input": "hi", "temperature": 0.3, "max_output_tokens": 100, "store": true})
}

#[tokio::test]
async fn a_pool_request_carries_the_accounts_credentials_and_a_backend_safe_body() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    let gate = pool_gate(&mock, "").await;
    gate.add_account(&mock, "acc-1", "plus").await;
    let r = post(&gate.url("/v1/responses"), &turn(true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    check_responses(&r.events()).unwrap();
    let up = mock.last_request().unwrap();
    assert_eq!(up.path, "/backend-api/codex/responses");
    let (access, _) = mock.chatgpt_tokens("acc-1").unwrap();
    assert_eq!(up.header("authorization"), Some(format!("Bearer {access}").as_str()));
    assert_eq!(up.header("chatgpt-account-id"), Some("acc-1"));
    assert_eq!(up.header("originator"), Some("codex_cli_rs"), "non-Codex clients get the fixed identity");
    let body = up.json();
    assert_eq!(
        (body["store"].as_bool(), body["stream"].as_bool(), body["model"].as_str()),
        (Some(false), Some(true), Some("gpt-5.5"))
    );
    assert!(body.get("temperature").is_none() && body.get("max_output_tokens").is_none());
    let derived = body["prompt_cache_key"].as_str().unwrap().to_owned();
    assert!(derived.starts_with("cg-"), "a stable prompt_cache_key is derived");
    post(&gate.url("/v1/responses"), &turn(true)).await;
    assert_eq!(mock.last_request().unwrap().json()["prompt_cache_key"], derived.as_str(), "and it is stable");

    // A Codex client keeps its own originator and User-Agent and its prompt_cache_key.
    let codex = json!({"model": "pool/gpt-5.5", "stream": true, "input": [], "prompt_cache_key": "sess-9"});
    send(
        "POST",
        &gate.url("/v1/responses"),
        codex.to_string(),
        &[
            ("content-type", "application/json"),
            ("originator", "codex_exec"),
            ("user-agent", "codex_exec/0.169.0 (Linux)"),
            ("session-id", "sess-9"),
        ],
    )
    .await;
    let up = mock.last_request().unwrap();
    assert_eq!(
        (up.header("originator"), up.header("user-agent")),
        (Some("codex_exec"), Some("codex_exec/0.169.0 (Linux)"))
    );
    assert_eq!((up.header("session-id"), up.json()["prompt_cache_key"].as_str()), (Some("sess-9"), Some("sess-9")));

    // Non-streaming clients and chat clients are served from the (always streaming) backend.
    let r = post(&gate.url("/v1/responses"), &turn(false)).await;
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "a collected answer is JSON, not the backend's SSE type"
    );
    assert_eq!(
        (r.json()["status"].as_str(), r.json()["output"][0]["content"][0]["text"].as_str()),
        (Some("completed"), Some("d0 d1 d2 d3 d4 "))
    );
    let r = post(
        &gate.url("/v1/chat/completions"),
        &json!({"model": "pool/gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.json()["choices"][0]["message"]["content"], "d0 d1 d2 d3 d4 ", "{}", r.text());
    assert_eq!(mock.last_request().unwrap().json()["input"][0]["role"], "user");
}

#[tokio::test]
async fn usage_limits_fail_over_cool_down_and_exhaust_like_codex_expects() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    for a in ["acc-1", "acc-2"] {
        mock.add_chatgpt_account(a, false);
    }
    let gate = pool_gate(&mock, "strategy = \"primary_first\"").await;
    let first = gate.add_account(&mock, "acc-1", "plus").await;
    gate.add_account(&mock, "acc-2", "pro").await;
    mock.set_account_behavior("acc-1", Some("usage-limit"));
    let r = post(&gate.url("/v1/responses"), &turn(true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(mock.last_request().unwrap().header("chatgpt-account-id"), Some("acc-2"));
    let a1 = gate.app.pool.find(&first).unwrap();
    assert_eq!(
        a1.cooldown_until_ms.load(std::sync::atomic::Ordering::Relaxed),
        1_900_000_000_000,
        "cools until the limit resets"
    );
    let rec = &gate.records(1).await[0];
    assert_eq!(rec.attempts, 2);
    // The cooled account is skipped without a request.
    let before = mock.hits();
    post(&gate.url("/v1/responses"), &turn(true)).await;
    assert_eq!(mock.hits() - before, 1);

    // Everyone limited: 429 usage_limit_reached with the pool's headers, no retries upstream.
    mock.set_account_behavior("acc-2", Some("usage-limit"));
    let r = post(&gate.url("/v1/responses"), &turn(true)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let err = r.json();
    assert_eq!(err["error"]["type"], "usage_limit_reached");
    assert_eq!(err["error"]["resets_at"], 1_900_000_000);
    assert!(err["error"]["plan_type"].is_string());
    assert_eq!(r.header("x-codex-primary-used-percent"), Some("100.0"));
    assert_eq!(r.header("x-codex-primary-reset-at"), Some("1900000000"));
    let r = post(&gate.url("/v1/responses"), &turn(true)).await;
    assert_eq!(r.status, 429);
    // A route with an API-key fallback keeps serving.
    let r = post(&gate.url("/v1/responses"), &json!({"model": "smart", "stream": true, "input": "x"})).await;
    assert_eq!((r.status.as_u16(), r.header("x-codex-gate-target")), (200, Some("api/ok")));

    // Cooldowns survive a restart: a reloaded pool still skips both accounts.
    gate.app.pool.load().await.unwrap();
    let before = mock.hits();
    assert_eq!(post(&gate.url("/v1/responses"), &turn(true)).await.status, 429);
    assert_eq!(mock.hits(), before);
}

#[tokio::test]
async fn server_errors_and_resets_fail_over_with_backoff() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    for a in ["acc-1", "acc-2"] {
        mock.add_chatgpt_account(a, false);
    }
    let gate = pool_gate(&mock, "strategy = \"primary_first\"").await;
    let first = gate.add_account(&mock, "acc-1", "plus").await;
    gate.add_account(&mock, "acc-2", "plus").await;
    for behavior in ["500", "reset"] {
        mock.set_account_behavior("acc-1", Some(behavior));
        gate.app.pool.find(&first).unwrap().cooldown_until_ms.store(0, std::sync::atomic::Ordering::Relaxed);
        // A new session each time, so affinity does not skip the failing account.
        let body = json!({"model": "pool/gpt-5.5", "stream": true, "input": "x", "prompt_cache_key": behavior});
        let r = post(&gate.url("/v1/responses"), &body).await;
        assert_eq!(r.status, 200, "{behavior}: {}", r.text());
        let cd = gate.app.pool.find(&first).unwrap().cooldown_until_ms.load(std::sync::atomic::Ordering::Relaxed);
        assert!(cd > codex_gate::now_ms(), "{behavior}: backoff cooldown");
    }
    // Both failing for non-limit reasons: the real error, not a usage limit.
    mock.set_account_behavior("acc-2", Some("500"));
    for a in gate.app.pool.accounts() {
        a.cooldown_until_ms.store(0, std::sync::atomic::Ordering::Relaxed);
    }
    let r = post(
        &gate.url("/v1/responses"),
        &json!({"model": "pool/gpt-5.5", "stream": true, "input": "x", "prompt_cache_key": "new"}),
    )
    .await;
    assert_eq!(r.status, 500, "{}", r.text());
}

#[tokio::test]
async fn one_refresh_for_a_hundred_concurrent_requests_and_rotation_is_persisted() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", true); // access token already expired
    mock.set_token_delay_ms(200);
    let gate = Arc::new(pool_gate(&mock, "").await);
    let id = gate.add_account(&mock, "acc-1", "plus").await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let g = gate.clone();
        tasks.push(tokio::spawn(async move { post(&g.url("/v1/responses"), &turn(true)).await.status.as_u16() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(mock.token_calls(), 1, "exactly one refresh");
    let (_, rotated) = mock.chatgpt_tokens("acc-1").unwrap();
    let row = gate.store.list_accounts().await.unwrap().into_iter().find(|r| r.id == id).unwrap();
    assert_eq!(
        gate.app
            .pool
            .cipher()
            .open(&row.refresh_token, &codex_gate::secrets::place("accounts", &id, "refresh_token"))
            .unwrap()
            .0,
        rotated,
        "the rotated refresh token is stored"
    );
    // A restart uses the stored (rotated) token: the next refresh succeeds.
    gate.app.pool.load().await.unwrap();
    mock.revoke_access("acc-1");
    assert_eq!(post(&gate.url("/v1/responses"), &turn(true)).await.status, 200);
    assert_eq!(mock.token_calls(), 2);
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_and_dead_logins_need_reauth() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    for a in ["acc-1", "acc-2"] {
        mock.add_chatgpt_account(a, false);
    }
    let gate = pool_gate(&mock, "strategy = \"primary_first\"").await;
    let first = gate.add_account(&mock, "acc-1", "plus").await;
    mock.revoke_access("acc-1");
    let r = post(&gate.url("/v1/responses"), &turn(true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(mock.token_calls(), 1);
    assert_eq!(mock.last_request().unwrap().header("chatgpt-account-id"), Some("acc-1"));

    // A dead refresh token marks the account and the next one serves.
    gate.add_account(&mock, "acc-2", "plus").await;
    mock.revoke_access("acc-1");
    mock.set_refresh_error("acc-1", Some("refresh_token_expired"));
    let r = post(&gate.url("/v1/responses"), &turn(true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(mock.last_request().unwrap().header("chatgpt-account-id"), Some("acc-2"));
    let a1 = gate.app.pool.find(&first).unwrap();
    assert_eq!(*a1.status.read(), codex_gate::pool::Status::ReauthRequired("refresh_token_expired".into()));
    let row = gate.store.list_accounts().await.unwrap().into_iter().find(|r| r.id == first).unwrap();
    assert_eq!((row.status.as_str(), row.status_reason.as_deref()), ("reauth_required", Some("refresh_token_expired")));

    // Every account needs a login: 503 that says so.
    let a2 = gate.app.pool.accounts().into_iter().find(|a| a.id != first).unwrap();
    gate.app.pool.set_status(&a2, codex_gate::pool::Status::ReauthRequired("x".into())).await;
    let r = post(&gate.url("/v1/responses"), &turn(true)).await;
    assert_eq!((r.status.as_u16(), r.json()["error"]["code"].as_str()), (503, Some("pool_reauth_required")));
}

#[tokio::test]
async fn affinity_quota_signals_and_pool_surfaces() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    for a in ["acc-1", "acc-2", "acc-3"] {
        mock.add_chatgpt_account(a, false);
    }
    let gate = pool_gate(&mock, "strategy = \"round_robin\"").await;
    for a in ["acc-1", "acc-2", "acc-3"] {
        gate.add_account(&mock, a, "plus").await;
    }
    let with_key = |k: &str| json!({"model": "pool/gpt-5.5", "stream": true, "input": "x", "prompt_cache_key": k});
    let mut seen = Vec::new();
    for _ in 0..4 {
        post(&gate.url("/v1/responses"), &with_key("session-A")).await;
        seen.push(mock.last_request().unwrap().header("chatgpt-account-id").unwrap().to_owned());
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "a session stays on one account: {seen:?}");
    // Round robin still spreads sessions.
    let mut others = std::collections::HashSet::new();
    for k in ["s1", "s2", "s3"] {
        post(&gate.url("/v1/responses"), &with_key(k)).await;
        others.insert(mock.last_request().unwrap().header("chatgpt-account-id").unwrap().to_owned());
    }
    assert!(others.len() >= 2, "{others:?}");

    // An account past the threshold loses its sessions at the next turn.
    let sticky = gate.app.pool.accounts().into_iter().find(|a| a.chatgpt_account_id == seen[0]).unwrap();
    let q = codex_gate::pool::quota::Quota {
        primary: Some(codex_gate::pool::quota::Window {
            used_percent: 97.0,
            window_minutes: Some(300),
            reset_at: Some(4_000_000_000),
        }),
        ..Default::default()
    };
    gate.app.pool.update_quota(&sticky, q);
    post(&gate.url("/v1/responses"), &with_key("session-A")).await;
    assert_ne!(mock.last_request().unwrap().header("chatgpt-account-id"), Some(seen[0].as_str()));

    let snapshot = get(&gate.url("/api/pool")).await.json();
    assert_eq!(snapshot["accounts"].as_array().unwrap().len(), 3);
    assert!(snapshot["decisions"].as_array().unwrap().iter().any(|d| d["reason"] == "session affinity"));
    let s = snapshot["accounts"].as_array().unwrap().iter().find(|a| a["id"] == sticky.id.as_str()).unwrap().clone();
    assert_eq!(s["rate_limit"]["primary_window"]["used_percent"], 97.0);
    for path in ["/api/codex/usage", "/backend-api/wham/usage"] {
        let u = get(&gate.url(path)).await.json();
        assert_eq!(u["rate_limit"]["primary_window"]["limit_window_seconds"], 18_000, "{path}");
        // Codex's types: an integer. All three accounts reported on their turns (97, 0, 0).
        assert_eq!(u["rate_limit"]["primary_window"]["used_percent"], 32, "{path}: {u}");
        assert!(u["rate_limit"]["secondary_window"].is_null(), "{path}: no account reported it");
        assert_eq!(u["plan_type"], "plus");
    }
    // The pooled view is kept between changes, not between seconds: pausing the account at
    // 97 % and cooling another down show in the very next answer.
    gate.app.pool.set_status(&sticky, codex_gate::pool::Status::Paused).await;
    let u = get(&gate.url("/backend-api/wham/usage")).await.json();
    assert_eq!(u["rate_limit"]["primary_window"]["used_percent"], 0, "{u}");
    assert_eq!(u["rate_limit"]["allowed"], true);
    for a in gate.app.pool.accounts().iter().filter(|a| a.id != sticky.id) {
        gate.app.pool.cool_down(a, Some(4_000_000_000));
    }
    let u = get(&gate.url("/backend-api/wham/usage")).await.json();
    assert_eq!(u["rate_limit"]["allowed"], false, "every active account is cooling down: {u}");
}

/// A log sink for one test (the current-thread runtime keeps every task on this thread).
#[derive(Clone, Default)]
struct LogBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_appear_in_plaintext() {
    let logs = LogBuf::default();
    let sink = logs.clone();
    let subscriber =
        tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(move || sink.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", true); // expired: a refresh happens and is logged
    let gate = pool_gate(&mock, "").await;
    gate.add_account(&mock, "acc-1", "plus").await;
    post(&gate.url("/v1/responses"), &turn(true)).await;
    mock.revoke_access("acc-1"); // a 401 and a second refresh
    post(&gate.url("/v1/responses"), &turn(true)).await;
    mock.set_account_behavior("acc-1", Some("500"));
    post(&gate.url("/v1/responses"), &turn(true)).await; // an error path too
    assert_eq!(mock.token_calls(), 2);
    let log_text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(log_text.contains("access token refreshed"), "logs were captured");
    let (access, refresh) = mock.chatgpt_tokens("acc-1").unwrap();
    let canaries = [access.as_str(), refresh.as_str(), "rt-acc-1"];
    let mut surfaces = vec![
        get(&gate.url("/api/pool")).await.text(),
        get(&gate.url("/api/accounts")).await.text(),
        get(&gate.url("/metrics")).await.text(),
    ];
    let rows = gate.store.list_accounts().await.unwrap();
    surfaces.push(format!("{rows:?}"));
    surfaces.push(format!("{:?}", gate.app.pool.accounts()));
    for s in &surfaces {
        for c in canaries {
            assert!(!s.contains(c), "a token leaked: {c}");
        }
    }
    gate.store.close().await;
    // The database file itself (WAL included).
    let db = gate.store_path();
    for f in [db.clone(), format!("{db}-wal")] {
        if let Ok(bytes) = std::fs::read(&f) {
            let text = String::from_utf8_lossy(&bytes);
            for c in canaries {
                assert!(!text.contains(c), "{f} holds a plaintext token");
            }
        }
    }
}

#[tokio::test]
async fn cooldowns_and_limits_expire_with_time() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    let gate = pool_gate(&mock, "").await;
    let id = gate.add_account(&mock, "acc-1", "plus").await;
    let a = gate.app.pool.find(&id).unwrap();
    let now = codex_gate::now_ms();
    gate.app.pool.cool_down(&a, Some(now / 1000 + 600));
    let pool = &gate.app.pool;
    match pool.pick_at(None, &[], &Default::default(), now) {
        Err(codex_gate::pool::NoAccount::Exhausted { resets_at, .. }) => assert_eq!(resets_at, now / 1000 + 600),
        other => panic!("expected exhaustion, got {other:?}"),
    }
    assert!(
        pool.pick_at(None, &[], &Default::default(), now + 601_000).is_ok(),
        "usable again once the cooldown passed"
    );
    // A full 5-hour window counts until its reset time, then not at all.
    a.cooldown_until_ms.store(0, std::sync::atomic::Ordering::Relaxed);
    let reset = now / 1000 + 3600;
    pool.update_quota(
        &a,
        codex_gate::pool::quota::Quota {
            primary: Some(codex_gate::pool::quota::Window {
                used_percent: 100.0,
                window_minutes: Some(300),
                reset_at: Some(reset),
            }),
            ..Default::default()
        },
    );
    assert!(
        matches!(pool.pick_at(None, &[], &Default::default(), now), Err(codex_gate::pool::NoAccount::Exhausted { resets_at, .. }) if resets_at == reset)
    );
    assert!(pool.pick_at(None, &[], &Default::default(), (reset + 1) * 1000).is_ok());
}

#[tokio::test]
async fn wham_usage_polling_updates_each_accounts_windows() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    mock.add_chatgpt_account("acc-2", false);
    mock.set_usage("acc-1", 55.0);
    let gate = pool_gate(&mock, "usage_poll_secs = 0").await;
    let a1 = gate.add_account(&mock, "acc-1", "plus").await;
    gate.add_account(&mock, "acc-2", "plus").await;
    assert_eq!(gate.app.pool.poll_usage(&mock.backend_url()).await, 2);
    let q = gate.app.pool.find(&a1).unwrap().quota.read().clone();
    assert_eq!(q.primary.unwrap().used_percent, 55.0);
    assert_eq!(q.secondary.unwrap().window_minutes, Some(10_080));
    let polled: Vec<_> = mock.requests().into_iter().filter(|r| r.path == "/backend-api/wham/usage").collect();
    assert_eq!(polled.len(), 2);
    assert!(polled.iter().all(|r| r.header("authorization").is_some_and(|h| h.starts_with("Bearer "))));
}

#[tokio::test]
async fn in_stream_rate_limit_events_teach_the_account_its_quota() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    mock.set_account_behavior("acc-1", Some("sloppy")); // its stream carries codex.rate_limits (10% used)
    let gate = pool_gate(&mock, "").await;
    let id = gate.add_account(&mock, "acc-1", "plus").await;
    let r = send(
        "POST",
        &gate.url("/v1/responses"),
        turn(true).to_string(),
        &[("content-type", "application/json"), ("originator", "codex_exec")],
    )
    .await;
    assert!(r.events().iter().any(|e| e["type"] == "codex.rate_limits"), "Codex clients still get the event");
    let q = gate.app.pool.find(&id).unwrap().quota.read().clone();
    assert_eq!(q.primary.map(|w| w.used_percent), Some(10.0));
}

#[tokio::test]
async fn a_transient_refresh_failure_backs_off_once_and_keeps_the_login() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", true); // needs a refresh before use
    mock.add_chatgpt_account("acc-2", false);
    mock.set_refresh_error("acc-1", Some("503"));
    let gate = pool_gate(&mock, "strategy = \"primary_first\"").await;
    let first = gate.add_account(&mock, "acc-1", "plus").await;
    gate.add_account(&mock, "acc-2", "plus").await;
    let before = codex_gate::now_ms();
    let r = post(&gate.url("/v1/responses"), &turn(true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(mock.last_request().unwrap().header("chatgpt-account-id"), Some("acc-2"));
    let a1 = gate.app.pool.find(&first).unwrap();
    assert_eq!(*a1.status.read(), codex_gate::pool::Status::Active, "a transient failure keeps the login");
    let wait = a1.cooldown_until_ms.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!((4_000..7_000).contains(&wait), "one 5 s backoff, not a doubled one: {wait} ms");
}

#[tokio::test]
async fn a_sealed_token_copied_into_another_row_does_not_open_there() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    mock.add_chatgpt_account("acc-2", false);
    let gate = pool_gate(&mock, "").await;
    let one = gate.add_account(&mock, "acc-1", "plus").await;
    let two = gate.add_account(&mock, "acc-2", "plus").await;
    // Someone with write access to the database moves acc-1's sealed refresh token to acc-2.
    let codex_gate::store::Store::Sqlite(p) = &gate.store else { unreachable!() };
    sqlx::query("UPDATE accounts SET refresh_token = (SELECT refresh_token FROM accounts WHERE id = $1) WHERE id = $2")
        .bind(&one)
        .bind(&two)
        .execute(p)
        .await
        .unwrap();
    gate.app.pool.load().await.unwrap();
    let snap = gate.app.pool.snapshot();
    let status = |id: &str| {
        snap["accounts"].as_array().unwrap().iter().find(|a| a["id"] == id).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(status(&one), "active");
    assert_eq!(status(&two), "reauth_required", "{snap}");
}

#[tokio::test]
async fn the_backends_models_etag_is_not_relayed_as_it_names_a_catalog_the_client_never_saw() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    let gate = pool_gate(&mock, "").await;
    gate.add_account(&mock, "acc-1", "plus").await;
    for stream in [true, false] {
        let r = post(&gate.url("/v1/responses"), &turn(stream)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("x-codex-primary-used-percent").is_some(), "the account's quota is relayed");
        assert_eq!(r.header("x-models-etag"), None, "the backend's catalog ETag stays upstream");
    }
}

/// The benchmark's pools (codex-gate's and other gateways') log in with tokens the mock never
/// issued: its open accounts take any bearer and any `rt-<account>-<n>`; other accounts still
/// take only their own.
#[tokio::test]
async fn open_mock_accounts_serve_a_pool_whose_tokens_were_made_elsewhere() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.open_chatgpt_accounts(["bench-00000".to_owned()]);
    let gate = pool_gate(&mock, "").await;
    let made = codex_gate_mock::chatgpt::access_token("bench-00000", 7, 4_000_000_000);
    let tokens = codex_gate::pool::auth::Tokens {
        id_token: codex_gate_mock::chatgpt::id_token("user-b0", "bench-00000", "b0@example.com", "pro"),
        access_token: made.clone(),
        refresh_token: "rt-bench-00000-7".into(),
        account_id: Some("bench-00000".into()),
    };
    codex_gate::pool::state::save_login(&gate.store, gate.app.pool.cipher(), &tokens).await.unwrap();
    gate.app.pool.load().await.unwrap();
    for _ in 0..3 {
        let r = post(&gate.url("/v1/responses"), &turn(true)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        check_responses(&r.events()).unwrap();
    }
    let up = mock.last_request().unwrap();
    assert_eq!(up.header("authorization"), Some(format!("Bearer {made}").as_str()));
    assert_eq!(up.header("chatgpt-account-id"), Some("bench-00000"));

    let refresh = |rt: &str| {
        let body = json!({"grant_type": "refresh_token", "refresh_token": rt, "client_id": "x"});
        let url = format!("{}/oauth/token", mock.issuer_url());
        async move { post(&url, &body).await }
    };
    let r = refresh("rt-bench-00000-7").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["refresh_token"], "rt-bench-00000-8");
    // A closed account: neither a made-up token nor a made-up refresh token gets in.
    mock.add_chatgpt_account("closed-1", false);
    assert_eq!(refresh("rt-closed-1-5").await.status, 401);
    assert_eq!(refresh("rt-bench-00000-x").await.status, 401, "a serial that is not a number");
    let forged = send(
        "POST",
        &format!("{}/codex/responses", mock.backend_url()),
        turn(true).to_string(),
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer made-up"),
            ("chatgpt-account-id", "closed-1"),
        ],
    )
    .await;
    assert_eq!(forged.status, 401);
}
