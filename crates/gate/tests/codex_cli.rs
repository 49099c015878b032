//! Conformance with the real Codex CLI (`codex exec --json`, offline flags of codex-protocol
//! §13) through codex-gate against the in-repo mock: plain turns and tool loops on a Responses
//! and on a chat upstream, a usage limit without a retry storm, and failover before the first
//! byte. The binary comes from CODEX_GATE_CODEX_BIN (set by `.ci/run`), else `codex` on PATH;
//! without it the tests skip loudly.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::codex::Run;
use common::{codex_bin, provider, skip, Gate, TempDir};
use serde_json::Value;

/// One `codex exec` turn with `model` against the gateway (see [`common::codex::turn`]).
async fn codex_turn(bin: &str, gate: &Gate, model: &str, retries: bool) -> Run {
    common::codex::turn(bin, &gate.url("/v1"), model, retries, "codex-client-key").await
}

async fn setup() -> (MockUpstream, Gate) {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "{}{}[[routes]]\nmodel = \"flaky\"\ntargets = [\"resp/reset\", \"chat/ok\"]\n",
        provider("resp", "responses", &m.url(), ""),
        provider("chat", "chat", &m.url(), ""),
    );
    (m, Gate::start(&cfg).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_plain_turns_and_tool_loops_on_both_upstream_kinds() {
    let Some(bin) = codex_bin() else {
        skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
        return;
    };
    let (m, gate) = setup().await;
    for upstream in ["resp", "chat"] {
        let run = codex_turn(&bin, &gate, &format!("{upstream}/ok"), false).await;
        assert_eq!(run.code, Some(0), "{upstream} plain: {}", run.dump());
        let msgs = run.items("agent_message");
        assert_eq!(msgs.last().map(|m| m["text"].as_str()), Some(Some("d0 d1 d2 d3 d4 ")), "{}", run.dump());
        let usage = &run.events.iter().find(|e| e["type"] == "turn.completed").unwrap()["usage"];
        assert_eq!(
            (usage["input_tokens"].as_u64(), usage["cached_input_tokens"].as_u64()),
            (Some(120), Some(100)),
            "{upstream}"
        );
        assert_eq!(
            (usage["output_tokens"].as_u64(), usage["reasoning_output_tokens"].as_u64()),
            (Some(30), Some(8)),
            "{upstream}"
        );

        let before = m.hits();
        let run = codex_turn(&bin, &gate, &format!("{upstream}/tool"), false).await;
        assert_eq!(run.code, Some(0), "{upstream} tool: {}", run.dump());
        let cmd = run.items("command_execution");
        assert_eq!(cmd.len(), 1, "{}", run.dump());
        assert!(cmd[0]["command"].as_str().unwrap().contains("echo mock-tool-ran"));
        assert_eq!(cmd[0]["aggregated_output"], "mock-tool-ran\n");
        assert_eq!(cmd[0]["exit_code"], 0);
        assert_eq!(run.items("agent_message").last().unwrap()["text"], "d0 d1 d2 d3 d4 ");
        assert_eq!(m.hits() - before, 2, "one request for the call, one with its output");
        let second = m.last_request().unwrap().json();
        let text = second.to_string();
        assert!(text.contains("mock-tool-ran"), "the command output went back upstream");
        let usage = &run.events.iter().find(|e| e["type"] == "turn.completed").unwrap()["usage"];
        assert_eq!(usage["input_tokens"], 240, "usage of both requests");
    }
    // Codex's own key never reached the upstream.
    assert!(m.requests().iter().all(|r| r.header("authorization") != Some("Bearer codex-client-key")));
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_usage_limit_without_retry_storm_and_failover_before_first_byte() {
    let Some(bin) = codex_bin() else {
        skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
        return;
    };
    let (m, gate) = setup().await;
    // Codex's default retry settings: a usage limit must still cost exactly one upstream call.
    let run = codex_turn(&bin, &gate, "resp/usage-limit", true).await;
    assert_eq!(run.code, Some(1), "{}", run.dump());
    let errors: Vec<String> = run
        .events
        .iter()
        .filter(|e| e["type"] == "error" || e["type"] == "turn.failed")
        .map(Value::to_string)
        .collect();
    assert!(
        errors.iter().any(|e| e.to_lowercase().contains("usage limit")),
        "Codex shows a usage-limit message: {}",
        run.dump()
    );
    assert_eq!(m.hits(), 1, "no retry storm: {}", run.dump());

    let run = codex_turn(&bin, &gate, "flaky", false).await;
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(run.items("agent_message").last().unwrap()["text"], "d0 d1 d2 d3 d4 ");
    let recs = gate.records(2).await;
    let rec = recs.iter().find(|r| r.route == "flaky").unwrap();
    assert_eq!((rec.attempts, rec.target.as_str()), (2, "chat/ok"));
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_turn_through_the_pool_when_the_first_account_is_at_its_limit() {
    let Some(bin) = codex_bin() else {
        skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
        return;
    };
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    m.add_chatgpt_account("acc-1", false);
    m.add_chatgpt_account("acc-2", false);
    m.set_account_behavior("acc-1", Some("usage-limit"));
    let cfg = format!(
        "[pool]\nissuer = \"{}\"\nstrategy = \"primary_first\"\n[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n",
        m.issuer_url(),
        m.backend_url()
    );
    let gate = Gate::start(&cfg).await;
    gate.add_account(&m, "acc-1", "plus").await;
    gate.add_account(&m, "acc-2", "plus").await;
    let run = codex_turn(&bin, &gate, "pool/gpt-5.5", false).await;
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(run.items("agent_message").last().unwrap()["text"], "d0 d1 d2 d3 d4 ");
    let accounts: Vec<String> =
        m.requests().iter().filter_map(|r| r.header("chatgpt-account-id").map(str::to_owned)).collect();
    assert_eq!(accounts, ["acc-1", "acc-2"], "the limited account was tried once, then the next served");
    let first = m.requests()[0].clone();
    assert_eq!(first.header("originator"), Some("codex_exec"), "Codex's own originator passes through");
    assert!(first.header("session-id").is_some() && first.json()["store"] == false);
}

/// Codex signed in with ChatGPT and pointed at the gateway (`requires_openai_auth`, the Desktop
/// setup) asks `{base_url}/models?client_version=…` at start. The gateway's Codex-shaped catalog
/// must decode: Codex caches it in `models_cache.json` (it logs "failed to decode models
/// response" and caches nothing otherwise), and the turn goes through the pool.
#[tokio::test(flavor = "multi_thread")]
async fn codex_with_chatgpt_auth_reads_the_gateway_s_catalog_and_runs_a_pool_turn() {
    let Some(bin) = codex_bin() else {
        skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
        return;
    };
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    m.add_chatgpt_account("acc-c", false);
    let cfg = format!("[pool]\nissuer = \"{}\"\nbase_url = \"{}\"\n", m.issuer_url(), m.backend_url());
    let gate = Gate::start(&cfg).await;
    gate.add_account(&m, "acc-c", "plus").await;
    gate.app.reload_pool().await.unwrap();
    for _ in 0..100 {
        if gate.app.pool.catalog.get().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let home = TempDir::new();
    let work = TempDir::new();
    // Codex's own login (it never reaches an upstream: the gateway uses its pool's).
    let auth = serde_json::json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null, "last_refresh": "2026-12-01T00:00:00Z",
        "tokens": {"id_token": codex_gate_mock::chatgpt::id_token("u-client", "acc-client", "me@example.com", "plus"),
                   "access_token": codex_gate_mock::chatgpt::access_token("acc-client", 1, 4_000_000_000),
                   "refresh_token": "rt-client", "account_id": "acc-client"}});
    std::fs::write(home.path().join("auth.json"), auth.to_string()).unwrap();
    let config = format!(
        "model = \"gpt-5.5\"\nmodel_provider = \"gw\"\napproval_policy = \"never\"\nchatgpt_base_url = \"{}\"\n\
         [model_providers.gw]\nname = \"codex-gate\"\nbase_url = \"{}\"\nwire_api = \"responses\"\nrequires_openai_auth = true\n\
         request_max_retries = 0\nstream_max_retries = 0\n",
        gate.url("/backend-api/"),
        gate.url("/v1")
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let out = tokio::process::Command::new(&bin)
        .args(["exec", "--skip-git-repo-check", "-s", "read-only", "-c", "analytics.enabled=false"])
        .args(["-c", "features.plugins=false", "--json", "Say PONG"])
        .current_dir(work.path())
        .env("CODEX_HOME", home.path())
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out).await.expect("codex timed out").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("d0 d1 d2 d3 d4"), "{stdout}");
    assert!(!stderr.contains("failed to decode models"), "{stderr}");
    let cache = std::fs::read_to_string(home.path().join("models_cache.json"))
        .unwrap_or_else(|e| panic!("Codex cached no catalog ({e}): {stderr}"));
    assert!(cache.contains("gpt-5.5") && cache.contains("gpt-5.4-mini"), "{cache}");
    // The turn went to the pool's account, not Codex's own login.
    let turn = m.requests().into_iter().rfind(|r| r.path.ends_with("/codex/responses")).unwrap();
    assert_eq!(turn.header("chatgpt-account-id"), Some("acc-c"));
}

/// The real Codex app-server's `account/rateLimits/read` (what `/status` and the Desktop usage
/// view show) with `chatgpt_base_url` at the gateway returns the pool's numbers.
#[tokio::test(flavor = "multi_thread")]
async fn codex_app_server_reads_the_pool_s_rate_limits() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let Some(bin) = codex_bin() else {
        skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
        return;
    };
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!("[pool]\nissuer = \"{}\"\nbase_url = \"{}\"\n", m.issuer_url(), m.backend_url());
    let gate = Gate::start(&cfg).await;
    for (id, used, plan) in [("acc-x", 30.0, "plus"), ("acc-y", 70.0, "plus")] {
        m.add_chatgpt_account(id, false);
        gate.add_account(&m, id, plan).await;
        let a = gate.app.pool.accounts().into_iter().find(|a| a.chatgpt_account_id == id).unwrap();
        let w = codex_gate::pool::quota::Window {
            used_percent: used,
            window_minutes: Some(300),
            reset_at: Some(1_900_000_000),
        };
        gate.app.pool.update_quota(&a, codex_gate::pool::quota::Quota { primary: Some(w), ..Default::default() });
    }
    let home = TempDir::new();
    let auth = serde_json::json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null, "last_refresh": "2026-12-01T00:00:00Z",
        "tokens": {"id_token": codex_gate_mock::chatgpt::id_token("u-client", "acc-client", "me@example.com", "plus"),
                   "access_token": codex_gate_mock::chatgpt::access_token("acc-client", 1, 4_000_000_000),
                   "refresh_token": "rt-client", "account_id": "acc-client"}});
    std::fs::write(home.path().join("auth.json"), auth.to_string()).unwrap();
    let config = format!(
        "chatgpt_base_url = \"{}\"\nmodel_provider = \"gw\"\n[model_providers.gw]\nname = \"codex-gate\"\nbase_url = \"{}\"\n\
         wire_api = \"responses\"\nrequires_openai_auth = true\n",
        gate.url("/backend-api/"),
        gate.url("/v1")
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .args(["app-server", "-c", "analytics.enabled=false", "-c", "features.plugins=false"])
        .env("CODEX_HOME", home.path())
        .env("HOME", home.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for msg in [
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"clientInfo": {"name": "codex-gate-test", "version": "0"}}}),
        serde_json::json!({"jsonrpc": "2.0", "method": "initialized"}),
        serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "account/rateLimits/read", "params": null}),
    ] {
        stdin.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
    }
    stdin.flush().await.unwrap();
    let mut seen = Vec::new();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["id"] == 2 {
                return Some(v);
            }
            seen.push(line);
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("no answer to account/rateLimits/read: {seen:?}"));
    let rl = &answer["result"]["rateLimits"];
    assert_eq!(rl["primary"]["usedPercent"], 50, "the pool's (30 + 70) / 2: {answer}");
    assert_eq!(rl["primary"]["windowDurationMins"], 300, "{answer}");
    assert_eq!(rl["primary"]["resetsAt"], 1_900_000_000, "{answer}");
    assert_eq!(rl["planType"], "plus", "{answer}");
}
