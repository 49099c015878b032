//! Conformance with the real OpenClaw (`openclaw@2026.9.6` on Node 24; CODEX_GATE_OPENCLAW_BIN
//! and CODEX_GATE_NODE_DIR from `.ci/run`, else a loud skip): `openclaw agent exec --json` with
//! nothing but the config `codex-gate setup openclaw` wrote, a plain turn and a tool loop, on both
//! of OpenClaw's OpenAI APIs, through the gateway to the mock (a Responses and a chat upstream);
//! and seed 003's Codex-LB config, unchanged, against a gateway on Codex-LB's port.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::{provider, skip, Gate, TempDir, SEED_003};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn openclaw() -> Option<(String, Option<PathBuf>)> {
    let node = std::env::var_os("CODEX_GATE_NODE_DIR").map(PathBuf::from);
    let bin = std::env::var("CODEX_GATE_OPENCLAW_BIN").ok().unwrap_or_else(|| "openclaw".into());
    let mut c = std::process::Command::new(&bin);
    c.arg("--version").env("HOME", std::env::temp_dir());
    if let Some(n) = &node {
        c.env("PATH", format!("{}:{}", n.display(), std::env::var("PATH").unwrap_or_default()));
    }
    c.output().is_ok_and(|o| o.status.success()).then_some((bin, node))
}

/// `codex-gate setup openclaw` into `home`'s `.openclaw/openclaw.json`.
fn setup(gate: &Gate, home: &Path, args: &[&str]) {
    let file = home.join(".openclaw/openclaw.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["setup", "openclaw", "--config-file", file.to_str().unwrap(), "--url", &gate.url("/v1")])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// One `openclaw agent exec --json` turn; its JSON envelope.
async fn exec(bin: &str, node: Option<&Path>, home: &Path, model: &str) -> Value {
    let work = TempDir::new();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["agent", "exec", "--json", "--cwd", work.path().to_str().unwrap()]);
    // An empty model: the config's own default.
    if !model.is_empty() {
        cmd.args(["--model", model]);
    }
    cmd.arg("Say PONG").env("HOME", home).stdin(std::process::Stdio::null()).kill_on_drop(true);
    if let Some(n) = node {
        cmd.env("PATH", format!("{}:{}", n.display(), std::env::var("PATH").unwrap_or_default()));
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(240), cmd.output())
        .await
        .expect("openclaw timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{model}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{model}: not JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn openclaw_turns_and_tool_loops_on_both_apis_with_the_config_setup_wrote() {
    let Some((bin, node)) = openclaw() else {
        skip("OpenClaw is not installed (npm install openclaw@2026.9.6 on Node 24, or set CODEX_GATE_OPENCLAW_BIN)");
        return;
    };
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "{}{}[[routes]]\nmodel = \"coder\"\ntargets = [\"api/ok\"]\n[[routes]]\nmodel = \"coder-tools\"\ntargets = [\"api/tool\"]\n\
         [[routes]]\nmodel = \"chatty\"\ntargets = [\"chat/ok\"]\n[[routes]]\nmodel = \"chatty-tools\"\ntargets = [\"chat/tool\"]\n",
        provider("api", "responses", &m.url(), ""),
        provider("chat", "chat", &m.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    for api in ["responses", "completions"] {
        let home = TempDir::new();
        setup(&gate, home.path(), &["--api", api]);
        for model in ["coder", "chatty"] {
            let v = exec(&bin, node.as_deref(), home.path(), &format!("codex-gate/{model}")).await;
            assert_eq!(v["final"], "d0 d1 d2 d3 d4", "{api} {model}: {v}");
            assert_eq!((v["provider"].as_str(), v["model"].as_str()), (Some("codex-gate"), Some(model)));

            let before = m.hits();
            let v = exec(&bin, node.as_deref(), home.path(), &format!("codex-gate/{model}-tools")).await;
            assert_eq!(v["final"], "d0 d1 d2 d3 d4", "{api} {model}-tools: {v}");
            assert_eq!(v["assistantTurns"], 2, "a tool call, then the answer: {v}");
            assert_eq!(m.hits() - before, 2, "{api} {model}-tools: one request for the call, one with its result");
            let second = m.last_request().unwrap().json().to_string();
            assert!(
                second.contains("function_call_output") || second.contains("\"role\":\"tool\""),
                "the tool's result went back upstream: {second}"
            );
        }
    }
    let rows = gate.records(12).await;
    assert_eq!(rows.len(), 12, "2 APIs x 2 models x (1 turn + 2 tool-loop requests)");
    assert!(rows.iter().all(|r| r.status == 200), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_codex_lb_config_of_seed_003_works_unchanged() {
    let Some((bin, node)) = openclaw() else {
        skip("OpenClaw is not installed (npm install openclaw@2026.9.6 on Node 24, or set CODEX_GATE_OPENCLAW_BIN)");
        return;
    };
    if std::net::TcpListener::bind("127.0.0.1:2455").is_err() {
        skip("port 2455, which seed 003's config names, is taken on this machine");
        return;
    }
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let dir = TempDir::new();
    let cfg = dir.path().join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:2455\"\n[store]\nurl = \"sqlite://{}\"\n[pool]\nkey_file = \"{}\"\n{}",
            dir.path().join("g.db").display(),
            dir.path().join("key").display(),
            provider("api", "responses", &m.url(), "models = [\"gpt-5.3-codex\", \"gpt-5.3-codex-spark\"]")
        ),
    )
    .unwrap();
    /// The gateway process, ended (by its PID) however the test ends.
    struct Proc(std::process::Child);
    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill").arg(self.0.id().to_string()).status();
            let _ = self.0.wait();
        }
    }
    let _gate = Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_codex-gate"))
            .args(["--config", cfg.to_str().unwrap(), "serve"])
            .env("HOME", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if tokio::net::TcpStream::connect("127.0.0.1:2455").await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let home = TempDir::new();
    std::fs::create_dir_all(home.path().join(".openclaw")).unwrap();
    std::fs::write(home.path().join(".openclaw/openclaw.json"), SEED_003).unwrap();
    let v = exec(&bin, node.as_deref(), home.path(), "").await;
    assert_eq!(v["final"], "d0 d1 d2 d3 d4", "{v}");
    assert_eq!((v["provider"].as_str(), v["model"].as_str()), (Some("codex-lb"), Some("gpt-5.3-codex")), "{v}");
    let last = m.last_request().unwrap();
    assert!(last.path.ends_with("/responses"), "chat from OpenClaw, translated for the Responses upstream");
    assert_eq!(std::fs::read_to_string(home.path().join(".openclaw/openclaw.json")).unwrap(), SEED_003);
}
