//! Web search end to end with the real Codex CLI: Codex offers its hosted `web_search` tool, the
//! gateway offers a chat model its own `web_search` function (`[web_search]`, SearXNG in the
//! mock), runs the search the model asks for and streams it back as the hosted search Codex
//! renders (`web_search_call`), then the model's answer — one turn. Skips loudly without the CLI.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::{codex_bin, provider, skip, Gate};

#[tokio::test(flavor = "multi_thread")]
async fn codex_searches_the_web_through_a_chat_model() {
    let Some(bin) = codex_bin() else {
        return skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
    };
    let m = MockUpstream::start(MockOptions { record: 32, ..Default::default() }).await.unwrap();
    let cfg = format!(
        "[web_search]\nprovider = \"searxng\"\nurl = \"http://{}\"\n{}",
        m.addr(),
        provider("chat", "chat", &m.url(), "")
    );
    let gate = Gate::start(&cfg).await;
    let config = common::codex::config(&gate.url("/v1"), "chat/search", false);
    let run = common::codex::exec(&bin, &config, &[("GW_API_KEY", "k")], &[], "latest rust release").await;
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let first = m.requests().into_iter().find(|r| r.path.ends_with("/chat/completions")).unwrap().json();
    let offered = first["tools"].as_array().unwrap().iter().any(|t| t["function"]["name"] == "web_search");
    assert!(offered, "Codex's hosted web_search became the gateway's function: {}", first["tools"]);
    let searched: Vec<_> = m.requests().into_iter().filter(|r| r.path == "/search").collect();
    assert_eq!(searched.len(), 1, "one search ran: {}", run.dump());
    let searches = run.items("web_search");
    assert_eq!(searches.len(), 1, "Codex shows the search as its own: {}", run.dump());
    assert!(searches[0].to_string().contains("latest rust release"), "{}", searches[0]);
    let said = run.items("agent_message").last().map(|i| i["text"].as_str().unwrap_or_default().to_owned());
    assert_eq!(said.as_deref(), Some("The web says: [1] Result for latest rust release"), "{}", run.dump());
}
