//! The real Codex CLI and the model an upstream says served (`openai-model`, as a response
//! header over HTTP and in a `response.metadata` event over a WebSocket). Codex compares it with
//! the model it asked for and reads any difference as a safety reroute ("model rerouted …
//! HighRiskCyberActivity"). Through a route the upstream names the model the route sent it, so
//! the gateway reports it by the route's name; a model the upstream chose itself still shows.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::{codex_bin, provider, skip, Gate};

/// What Codex said about rerouting in a run (its warnings come out as `error` items).
fn reroutes(run: &common::codex::Run) -> Vec<String> {
    run.items("error")
        .iter()
        .filter_map(|i| i["message"].as_str())
        .filter(|m| m.contains("model rerouted") || m.contains("cyber"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_is_told_the_routes_name_for_the_model_it_sent_and_the_real_one_after_a_reroute() {
    let Some(bin) = codex_bin() else {
        return skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
    };
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    m.add_chatgpt_account("acc-m", false);
    let cfg = format!(
        "{}{}[[routes]]\nmodel = \"fast\"\ntargets = [\"resp/ok\"]\n",
        common::pool(&m, ""),
        provider("resp", "responses", &m.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    gate.add_account(&m, "acc-m", "plus").await;
    for websocket in [false, true] {
        // The pool over the backend's socket, a Responses provider over HTTP, a route's alias.
        for model in ["pool/gpt-5.5", "resp/ok", "fast"] {
            let run = common::codex::exec(
                &bin,
                &common::codex::config(&gate.url("/v1"), model, websocket),
                &[("GW_API_KEY", "k")],
                &[],
                "Say PONG",
            )
            .await;
            assert_eq!(run.code, Some(0), "{model} (websocket {websocket}): {}", run.dump());
            assert_eq!(reroutes(&run), Vec::<String>::new(), "{model} (websocket {websocket}): no false reroute");
        }
        // The upstream served another model than the one it was asked for: Codex hears of it.
        let run = common::codex::exec(
            &bin,
            &common::codex::config(&gate.url("/v1"), "resp/rerouted", websocket),
            &[("GW_API_KEY", "k")],
            &[],
            "Say PONG",
        )
        .await;
        assert_eq!(run.code, Some(0), "{}", run.dump());
        let said = reroutes(&run);
        assert!(
            said.iter().any(|m| m.contains("mock-fallback-model")),
            "websocket {websocket}: {said:?} {}",
            run.dump()
        );
    }
    // Over the WebSocket the pool's turns went over the backend's socket (its metadata event).
    assert!(m.requests().iter().any(|r| r.method == "WS" && r.path.ends_with("/codex/responses")));
}
