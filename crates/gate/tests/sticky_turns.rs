//! Sticky turns (`x-codex-turn-state`): Codex clients get the gateway's sealed turn state; a
//! later request of the turn carrying it goes to the same target and pool account, and the
//! upstream gets its own turn state back. Forged values pin nothing.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::send;
use common::{provider, Gate};
use serde_json::json;

const CODEX: (&str, &str) = ("originator", "codex_cli_rs");

async fn setup() -> (MockUpstream, Gate) {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "[pool]\nissuer = \"{}\"\nstrategy = \"round_robin\"\n[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n{}{}\
         [[routes]]\nmodel = \"two\"\ntargets = [\"a/ok\", \"b/ok\"]\n",
        mock.issuer_url(),
        mock.backend_url(),
        provider("a", "responses", &mock.url(), ""),
        provider("b", "responses", &mock.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    for id in ["acc-1", "acc-2"] {
        mock.add_chatgpt_account(id, false);
        gate.add_account(&mock, id, "plus").await;
    }
    (mock, gate)
}

async fn turn(gate: &Gate, model: &str, session: &str, state: Option<&str>) -> common::http::Resp {
    // A different input each time: the pool derives a session from the first input too.
    let body = json!({"model": model, "stream": true, "input": format!("hi from {session}")}).to_string();
    let mut h = vec![CODEX, ("content-type", "application/json"), ("session-id", session)];
    if let Some(s) = state {
        h.push(("x-codex-turn-state", s));
    }
    send("POST", &gate.url("/v1/responses"), body, &h).await
}

#[tokio::test]
async fn a_turns_later_requests_stay_on_its_account_and_target() {
    let (mock, gate) = setup().await;
    // Round robin and a new session each time: only the turn state can keep the account.
    let first = turn(&gate, "pool/gpt-5.5", "s-0", None).await;
    assert_eq!(first.status, 200);
    let state = first.header("x-codex-turn-state").expect("a turn state for Codex").to_owned();
    assert!(state.starts_with("cgt1."), "the gateway's own, wrapping the backend's: {state}");
    let account = gate.record_where("the first", |r| r.status == 200).await.account_id.unwrap();
    for i in 1..=4 {
        let r = turn(&gate, "pool/gpt-5.5", &format!("s-{i}"), Some(&state)).await;
        assert_eq!(r.status, 200);
        // The backend's own turn state went back to it (the mock sends `mock-turn-state`).
        assert_eq!(mock.last_request().unwrap().header("x-codex-turn-state"), Some("mock-turn-state"));
    }
    let rows = gate.records(5).await;
    assert!(rows.iter().take(5).all(|r| r.account_id.as_deref() == Some(account.as_str())), "{rows:?}");
    // Without it, round robin moves on.
    turn(&gate, "pool/gpt-5.5", "s-9", None).await;
    turn(&gate, "pool/gpt-5.5", "s-10", None).await;
    let rows = gate.records(7).await;
    assert!(rows.iter().take(2).any(|r| r.account_id.as_deref() != Some(account.as_str())));

    // A target: a turn served by `b/ok` keeps `b` when its follow-up asks for route `two`.
    let b = turn(&gate, "b/ok", "t", None).await;
    let state = b.header("x-codex-turn-state").unwrap().to_owned();
    let r = turn(&gate, "two", "t", Some(&state)).await;
    assert_eq!(r.header("x-codex-gate-target"), Some("b/ok"));
    let row = gate.record_where("the pinned one", |r| r.route == "two").await;
    assert_eq!(row.trail[0].why, "pinned by the turn state (x-codex-turn-state)");
    // Forged or foreign values pin nothing and never reach an upstream.
    let r = turn(&gate, "two", "t", Some("cgt1.v2.AAAAforged")).await;
    assert_eq!((r.status.as_u16(), r.header("x-codex-gate-target")), (200, Some("a/ok")));
    // Non-Codex clients get none.
    let plain = common::http::post(&gate.url("/v1/responses"), &json!({"model": "a/ok", "input": "x"})).await;
    assert!(plain.header("x-codex-turn-state").is_none());
}
