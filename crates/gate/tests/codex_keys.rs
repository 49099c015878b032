//! The real Codex CLI with a client key in `env_key`: a valid key runs its turn; an unknown or
//! revoked key, a spent budget, a used pool share, and a reached rate limit each end the run
//! with Codex's own message, and with Codex's default retry settings an unknown or revoked key,
//! a spent budget and a used pool share are each asked once — no retry storm. Skips loudly
//! without the CLI.

mod common;

use codex_gate::access::manage;
use codex_gate_mock::{MockOptions, MockUpstream};
use common::{codex_bin, provider, skip, Gate};
use serde_json::json;

async fn key(gate: &Gate, v: serde_json::Value) -> (String, String) {
    let (k, row) = manage::create(&gate.store, v.as_object().unwrap()).await.unwrap();
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    (k, row.id)
}

/// Request-log rows of key `id` (waiting for the writer).
async fn rows_of(gate: &Gate, id: &str) -> Vec<codex_gate::store::RequestRecord> {
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    gate.store.recent_requests(1000).await.unwrap().into_iter().filter(|r| r.key_id.as_deref() == Some(id)).collect()
}

fn refused(gate: &Gate) -> u64 {
    gate.app.metrics.auth_refused.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_with_a_client_key_and_each_refusal() {
    let Some(bin) = codex_bin() else {
        skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
        return;
    };
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    let cfg = format!(
        "{}[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\nmodels = [\"gpt-5.5\"]\n\
         [pool]\nissuer = \"{}\"\n[prices.ok]\ninput = 100000.0\noutput = 100000.0\n",
        provider("resp", "responses", &mock.url(), "models = [\"ok\"]"),
        mock.backend_url(),
        mock.issuer_url()
    );
    let gate = Gate::start(&cfg).await;
    gate.add_account(&mock, "acc-1", "plus").await;
    let base = gate.url("/v1");

    // A valid key: the turn runs, and is logged and priced under the key.
    let (k, id) = key(&gate, json!({"name": "codex", "budget_usd": 20})).await;
    let run = common::codex::turn(&bin, &base, "ok", false, &k).await;
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(run.items("agent_message").last().unwrap()["text"], "d0 d1 d2 d3 d4 ");
    let rows = rows_of(&gate, &id).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].cost_usd > 10.0, "{}", rows[0].cost_usd);

    // An unknown key, with Codex's default retries: one request, the message shown, exit 1.
    let before = (refused(&gate), mock.hits());
    let run = common::codex::turn(&bin, &base, "ok", true, "cg-wrong").await;
    assert_ne!(run.code, Some(0), "{}", run.dump());
    assert!(run.errors().contains("Incorrect API key provided"), "{}", run.dump());
    assert_eq!(refused(&gate) - before.0, 1, "Codex asked once: {}", run.dump());
    assert_eq!(mock.hits(), before.1, "nothing reached the upstream");

    // The budget is spent (one turn of `ok` costs more than what is left): "Quota exceeded", once.
    let run = common::codex::turn(&bin, &base, "ok", false, &k).await;
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let run = common::codex::turn(&bin, &base, "ok", true, &k).await;
    assert_ne!(run.code, Some(0), "{}", run.dump());
    assert!(run.errors().contains("Quota exceeded"), "{}", run.dump());
    let rows = rows_of(&gate, &id).await;
    let refusals = rows.iter().filter(|r| r.error_code.as_deref() == Some("budget_exceeded")).count();
    assert_eq!(refusals, 1, "no retry of a spent budget: {}", run.dump());

    // Pool share used: Codex's usage-limit message, asked once.
    let (k, id) = key(&gate, json!({"name": "share", "pool_share": 10})).await;
    let run = common::codex::turn(&bin, &base, "pool/gpt-5.5", false, &k).await;
    assert_eq!(run.code, Some(0), "{}", run.dump());
    mock.set_usage("acc-1", 50.0);
    let run = common::codex::turn(&bin, &base, "pool/gpt-5.5", false, &k).await;
    assert_eq!(run.code, Some(0), "the turn that used the share: {}", run.dump());
    let run = common::codex::turn(&bin, &base, "pool/gpt-5.5", true, &k).await;
    assert_ne!(run.code, Some(0), "{}", run.dump());
    assert!(run.errors().to_lowercase().contains("usage limit"), "{}", run.dump());
    let rows = rows_of(&gate, &id).await;
    assert_eq!(rows.iter().filter(|r| r.error_code.as_deref() == Some("pool_share_exceeded")).count(), 1);

    // Requests per minute (retries off: with them on, Codex waits the retry-after out).
    let (k, id) = key(&gate, json!({"name": "rpm", "rpm": 1})).await;
    let run = common::codex::turn(&bin, &base, "ok", false, &k).await;
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let run = common::codex::turn(&bin, &base, "ok", false, &k).await;
    assert_ne!(run.code, Some(0), "{}", run.dump());
    assert!(run.errors().contains("429"), "{}", run.dump());
    let rows = rows_of(&gate, &id).await;
    assert_eq!(rows.iter().filter(|r| r.error_code.as_deref() == Some("key_rpm_exceeded")).count(), 1);

    // Revoked.
    manage::revoke(&gate.store, &id).await.unwrap();
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    let before = refused(&gate);
    let run = common::codex::turn(&bin, &base, "ok", true, &k).await;
    assert_ne!(run.code, Some(0), "{}", run.dump());
    assert!(run.errors().contains("This API key has been revoked"), "{}", run.dump());
    assert_eq!(refused(&gate) - before, 1, "Codex asked once: {}", run.dump());
}
