//! The real Codex CLI over the Responses WebSocket (`supports_websockets = true`): a plain turn
//! and a tool loop on a Responses provider, a chat provider and the pool, every request a turn on
//! the connection (none falls back to HTTP), with the whole history reaching the HTTP upstreams
//! and only the new items reaching the pool's backend, and a Responses provider that offers
//! WebSocket, over the gateway's own WebSocket to them. A turn's follow-up is pinned where the
//! turn was served, and moves to another pool account when that one runs out inside the turn.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::{codex_bin, provider, skip, Gate};
use std::sync::atomic::Ordering::Relaxed;

fn ws_config(gate: &Gate, model: &str) -> String {
    common::codex::config(&gate.url("/v1"), model, true)
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_over_websocket_on_every_upstream_kind() {
    let Some(bin) = codex_bin() else {
        return skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
    };
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    m.add_chatgpt_account("acc-ws", false);
    let cfg = format!(
        "{}{}{}[[routes]]\nmodel = \"pool-tool\"\ntargets = [\"pool/tool\"]\n",
        common::pool(&m, ""),
        provider("resp", "responses", &m.url(), ""),
        provider("chat", "chat", &m.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    gate.add_account(&m, "acc-ws", "plus").await;
    let turns = || gate.app.metrics.ws_turns.load(Relaxed);
    for (plain, tool) in [("resp/ok", "resp/tool"), ("chat/ok", "chat/tool"), ("pool/gpt-5.5", "pool-tool")] {
        let before = turns();
        let run = common::codex::exec(&bin, &ws_config(&gate, plain), &[("GW_API_KEY", "k")], &[], "Say PONG").await;
        assert_eq!(run.code, Some(0), "{plain}: {}", run.dump());
        assert_eq!(run.items("agent_message").last().unwrap()["text"], "d0 d1 d2 d3 d4 ", "{plain}");
        assert!(!run.stderr.contains("failed to connect to Responses WebSocket"), "{plain}: {}", run.stderr);
        assert_eq!(turns() - before, 1, "{plain}: the turn went over the WebSocket");

        let before = turns();
        let incremental = gate.app.metrics.ws_incremental.load(Relaxed);
        let run = common::codex::exec(&bin, &ws_config(&gate, tool), &[("GW_API_KEY", "k")], &[], "run it").await;
        assert_eq!(run.code, Some(0), "{tool}: {}", run.dump());
        assert_eq!(run.items("command_execution")[0]["aggregated_output"], "mock-tool-ran\n", "{tool}");
        assert_eq!(turns() - before, 2, "{tool}: the call and its follow-up, both on the connection");
        // Codex prewarms (answered here), then sends only new items: after the prewarm, and
        // after the call (its output).
        let sent_incremental = gate.app.metrics.ws_incremental.load(Relaxed) - incremental;
        assert_eq!(sent_incremental, 2, "{tool}: both requests named the previous response");
        // The follow-up went where the call was served, pinned by the turn state the gateway
        // keeps for the connection (Codex reads none from a WebSocket's turns).
        let label = if tool == "pool-tool" { "pool/tool" } else { tool };
        let rows = gate.records_where(2, "the call and its follow-up", |r| r.target == label).await;
        let whys: Vec<&str> = rows.iter().map(|r| r.trail[0].why.as_ref()).collect();
        assert_eq!(whys[0], "pinned by the turn state (x-codex-turn-state)", "{tool}: the follow-up: {whys:?}");
        assert_ne!(whys[1], whys[0], "{tool}: the call started the turn");
        if tool != "chat/tool" {
            // What names the turn: Codex's frames carry its id (a chat upstream gets no metadata).
            let meta = &m.last_request().unwrap().json()["client_metadata"];
            assert!(meta["turn_id"].as_str().is_some_and(|t| !t.is_empty()), "{tool}: {meta}");
        }
        let sent = m.last_request().unwrap();
        let last = String::from_utf8_lossy(&sent.body).into_owned();
        if tool == "pool-tool" {
            // The pool's own socket to the backend, which holds the conversation: the follow-up
            // names the call's response and carries only the tool's output.
            assert_eq!(sent.method, "WS", "{tool}");
            let frame = sent.json();
            assert!(
                frame["previous_response_id"].as_str().is_some_and(|p| p.starts_with("resp_ws_")),
                "{tool}: {last}"
            );
            assert_eq!(frame["input"].as_array().map(Vec::len), Some(1), "{tool}: {last}");
            assert!(last.contains("mock-tool-ran") && !last.contains("run it"), "{tool}: {last}");
        } else {
            // The follow-up carries the whole conversation upstream, whatever Codex sent on the wire.
            assert!(last.contains("mock-tool-ran") && last.contains("run it"), "{tool}: {last}");
            assert!(last.contains("You are a coding agent"), "{tool}: the base instructions are there too");
        }
    }
    assert_eq!(gate.app.metrics.ws_prewarms.load(Relaxed), 6, "one prewarm per Codex run");
    // Codex offers permessage-deflate and each of its connections runs compressed.
    assert_eq!(gate.app.metrics.ws_deflate.load(Relaxed), 6, "every Codex connection negotiated permessage-deflate");
    // Every turn is in the request log.
    let rows = gate.records(9).await;
    assert!(rows.iter().take(9).all(|r| r.status == 200), "{rows:?}");

    // A Responses provider that offers WebSocket gets the turns over the connection's own
    // socket to it: the follow-up names the call's response and carries only the output. (A
    // gateway of its own: the one above remembers that this provider refused the upgrade.)
    m.set_api_websocket(true);
    let gate = Gate::start(&cfg).await;
    let run = common::codex::exec(&bin, &ws_config(&gate, "resp/tool"), &[("GW_API_KEY", "k")], &[], "run it").await;
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(run.items("command_execution")[0]["aggregated_output"], "mock-tool-ran\n");
    let sent = m.last_request().unwrap();
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("WS", "/v1/responses"));
    let frame = sent.json();
    assert!(frame["previous_response_id"].as_str().is_some_and(|p| p.starts_with("resp_ws_")), "{frame}");
    assert_eq!(frame["input"].as_array().map(Vec::len), Some(1), "{frame}");
    assert_eq!(gate.app.metrics.ws_upstream_deflate.load(Relaxed), 1, "the provider's socket is compressed too");
    let rows = gate.records(2).await;
    assert!(rows.iter().take(2).all(|r| r.status == 200), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn five_resumed_codex_turns_over_websocket_on_every_upstream_kind() {
    let Some(bin) = codex_bin() else {
        return skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
    };
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    m.add_chatgpt_account("acc-ws", false);
    let cfg = format!(
        "{}{}{}",
        common::pool(&m, ""),
        provider("resp", "responses", &m.url(), ""),
        provider("chat", "chat", &m.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    gate.add_account(&m, "acc-ws", "plus").await;
    for model in ["resp/ok", "chat/ok", "pool/gpt-5.5"] {
        let session = common::codex::Session::new(&ws_config(&gate, model), &[]);
        let before = gate.app.metrics.ws_turns.load(Relaxed);
        for n in 0..5 {
            let prompt = format!("task number {n}");
            let args: Vec<&str> = if n == 0 { vec![&prompt] } else { vec!["resume", "--last", &prompt] };
            let run = session.exec(&bin, &[("GW_API_KEY", "k")], &args).await;
            assert_eq!(run.code, Some(0), "{model} turn {n}: {}", run.dump());
            assert_eq!(run.items("agent_message").last().unwrap()["text"], "d0 d1 d2 d3 d4 ", "{model} turn {n}");
            // A resumed session starts a new connection: its first turn carries everything so far.
            let last = String::from_utf8_lossy(&m.last_request().unwrap().body).into_owned();
            for k in 0..=n {
                assert!(last.contains(&format!("task number {k}")), "{model} turn {n}: task {k} is in the history");
            }
        }
        assert_eq!(gate.app.metrics.ws_turns.load(Relaxed) - before, 5, "{model}: every turn on a WebSocket");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_account_exhausted_inside_a_codex_turn_hands_the_follow_up_to_another() {
    let Some(bin) = codex_bin() else {
        return skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
    };
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!("{}[[routes]]\nmodel = \"pool-tool\"\ntargets = [\"pool/tool\"]\n", common::pool(&m, ""));
    let gate = Gate::start(&cfg).await;
    // Each account answers one turn, then reaches its usage limit: whichever serves the call
    // has none left for the follow-up, on the same connection.
    for id in ["acc-a", "acc-b"] {
        m.add_chatgpt_account(id, false);
        gate.add_account(&m, id, "plus").await;
        m.set_turns_left(id, Some(1));
    }
    let run = common::codex::exec(&bin, &ws_config(&gate, "pool-tool"), &[("GW_API_KEY", "k")], &[], "run it").await;
    assert_eq!(run.code, Some(0), "no failed turn: {}", run.dump());
    assert_eq!(run.items("command_execution")[0]["aggregated_output"], "mock-tool-ran\n");
    assert!(!run.stderr.contains("usage limit"), "Codex never saw the limit: {}", run.stderr);
    assert_eq!(gate.app.metrics.ws_turns.load(Relaxed), 2, "the call and its follow-up, on one connection");
    let rows = gate.records_where(2, "the call and its follow-up", |r| r.route == "pool-tool").await;
    assert!(rows.iter().all(|r| r.status == 200), "{rows:?}");
    let (call, follow_up) = (&rows[1], &rows[0]);
    assert_ne!(call.account_id, follow_up.account_id, "another account served the follow-up");
    assert_eq!(follow_up.trail.len(), 2, "the turn's account was tried first: {:?}", follow_up.trail);
    assert_eq!(follow_up.trail[0].account, call.account_id, "{:?}", follow_up.trail);
    assert!(follow_up.trail[0].error.is_some(), "{:?}", follow_up.trail);
    // The new account's own socket got the whole conversation: its backend had none of it.
    let sent = m.last_request().unwrap();
    assert_eq!(sent.method, "WS");
    let last = String::from_utf8_lossy(&sent.body).into_owned();
    assert!(last.contains("run it") && last.contains("mock-tool-ran"), "{last}");
}
