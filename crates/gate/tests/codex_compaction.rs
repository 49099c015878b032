//! The real Codex CLI through codex-gate where it does what it does against OpenAI itself:
//! remote compaction (the built-in `openai` provider with `openai_base_url` at the gateway and a
//! low `model_auto_compact_token_limit`) on a chat route, a Responses route and the pool (whose
//! turns go over the backend WebSocket), and
//! `view_image` output reaching a chat model. Skips loudly without the CLI.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::{codex_bin, provider, skip, Gate};

async fn setup() -> (MockUpstream, Gate) {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = common::every_kind(&m).await;
    (m, gate)
}

/// Codex with the built-in `openai` provider pointed at the gateway (what makes it compact
/// remotely), compacting once the context passes `limit` tokens.
fn openai_config(gate: &Gate, model: &str, limit: u32) -> String {
    format!(
        "model = \"{model}\"\nmodel_provider = \"openai\"\nopenai_base_url = \"{}\"\napproval_policy = \"never\"\n\
         sandbox_mode = \"read-only\"\nmodel_auto_compact_token_limit = {limit}\n",
        gate.url("/v1")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_compacts_remotely_on_every_upstream_kind_and_continues_with_the_summary() {
    let Some(bin) = codex_bin() else {
        return skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
    };
    let (m, gate) = setup().await;
    let key = [("OPENAI_API_KEY", "codex-client-key"), ("CODEX_API_KEY", "codex-client-key")];
    for model in ["chat/ok", "resp/ok", "pool/gpt-5.5"] {
        // The first turn's 150 tokens pass the limit of 100, so the next turn starts with a
        // remote compaction (v2) and then goes on from the compacted history.
        let session = common::codex::Session::new(&openai_config(&gate, model, 100), &[]);
        let before = m.requests().len();
        let first = session.exec(&bin, &key, &["first task"]).await;
        assert_eq!(first.code, Some(0), "{model}: {}", first.dump());
        let second = session.exec(&bin, &key, &["resume", "--last", "second task"]).await;
        assert_eq!(second.code, Some(0), "{model}: {}", second.dump());
        assert_eq!(second.items("agent_message").last().unwrap()["text"], "d0 d1 d2 d3 d4 ", "{}", second.dump());
        // Model turns only (the pool's catalog and usage calls are not turns).
        let turns: Vec<_> = m.requests()[before..]
            .iter()
            .filter(|r| r.method != "GET" && (r.path.ends_with("/responses") || r.path.ends_with("/chat/completions")))
            .cloned()
            .collect();
        if model.starts_with("pool/") {
            assert!(turns.iter().all(|r| r.method == "WS"), "{model}: the pool's turns went over its WebSocket");
        }
        let sent: Vec<String> = turns.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
        assert_eq!(sent.len(), 3, "{model}: the first turn, the compaction, the second turn");
        let last = &sent[2];
        assert!(last.contains("second task") && !last.contains("compaction_trigger"), "{model}");
        if model == "chat/ok" {
            // Emulated: the chat model was asked for the summary, and it came back as history.
            assert!(sent[1].contains("replaced by a summary") && sent[1].contains("first task"), "{model}");
            assert!(last.contains("compacted to fit the context window"), "{model}: {last}");
            assert!(last.contains("d0 d1 d2 d3 d4"), "{model}: the summary is in the next request");
            assert!(!last.contains("cgc1."), "{model}: the sealed item never reaches the upstream");
        } else {
            // Relayed: the upstream got the trigger and gets its own item back.
            assert!(sent[1].contains("\"compaction_trigger\""), "{model}");
            assert!(last.contains("\"encrypted_content\":\"mock-compaction-"), "{model}: {last}");
        }
    }
}

/// A 1×1 PNG.
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d,
    0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

#[tokio::test(flavor = "multi_thread")]
async fn codex_view_image_output_reaches_a_chat_model_as_an_image() {
    let Some(bin) = codex_bin() else {
        return skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
    };
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    // A model name Codex knows takes images, routed to a chat model that calls view_image.
    let cfg = format!(
        "{}[[routes]]\nmodel = \"gpt-5.5\"\ntargets = [\"chat/view-image\"]\n",
        provider("chat", "chat", &m.url(), "")
    );
    let gate = Gate::start(&cfg).await;
    let config = common::codex::config(&gate.url("/v1"), "gpt-5.5", false);
    let session = common::codex::Session::new(&config, &[]);
    std::fs::write(session.work().join("pixel.png"), PIXEL_PNG).unwrap();
    let run = session.exec(&bin, &[("GW_API_KEY", "k")], &["look at pixel.png"]).await;
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let reqs = m.requests();
    assert_eq!(reqs.len(), 2, "the call, then its output: {}", run.dump());
    let sent = reqs[1].json();
    let msgs = sent["messages"].as_array().unwrap();
    let tool = msgs.iter().position(|x| x["role"] == "tool").expect("the tool message");
    assert!(msgs[tool]["content"].as_str().unwrap().contains("1 image returned"), "{}", msgs[tool]);
    let image = &msgs[tool + 1];
    assert_eq!(image["role"], "user", "the image follows the tool message: {image}");
    let url = image["content"][1]["image_url"]["url"].as_str().unwrap();
    assert!(url.starts_with("data:image/png;base64,"), "{url}");
    assert!(url.len() > 40, "the picture's bytes are there");
}
