//! `codex-gate setup codex`, run as a user runs it against a running gateway: the profile and
//! the model catalog it writes (snapshots), `--default` editing a base config that has
//! comments, other providers and profiles, `--desktop on|off`, and `--undo` restoring the exact
//! bytes. Then the real Codex CLI runs a turn and a tool loop with nothing but what setup wrote.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::{codex_bin, provider, skip, Gate, TempDir};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// A user's base config in the shape seed 000's guides leave behind.
const BASE: &str = r#"# Codex settings (hand-written)
model = "gpt-5.4"          # the subscription default
approval_policy = "on-request"

[model_providers.openrouter]
name = "OpenRouter"
base_url = "https://openrouter.ai/api/v1"
env_key = "OPENROUTER_API_KEY"

[profiles.quick]
model = "gpt-5.4-mini"
"#;

async fn gateway() -> (MockUpstream, Gate) {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "{}[[routes]]\nmodel = \"coder\"\ntargets = [\"resp/ok\"]\n[[routes]]\nmodel = \"coder-tools\"\ntargets = [\"resp/tool\"]\n",
        provider("resp", "responses", &m.url(), "context_window = 200000"),
    );
    (m, Gate::start(&cfg).await)
}

/// `codex-gate setup codex ARGS` with the gateway's URL; stdout with the paths made stable.
fn setup(gate: &Gate, home: &Path, args: &[&str]) -> String {
    let url = gate.url("/v1");
    let out = Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["setup", "codex", "--codex-home", home.to_str().unwrap(), "--url", &url])
        .args(args)
        .env("HOME", home)
        .env_remove("CODEX_HOME")
        .output()
        .unwrap();
    assert!(out.status.success(), "setup {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    stable(&String::from_utf8_lossy(&out.stdout), home, gate)
}

fn stable(s: &str, home: &Path, gate: &Gate) -> String {
    s.replace(home.to_str().unwrap(), "$CODEX_HOME").replace(&gate.addr.to_string(), "GATEWAY")
}

fn read(home: &Path, f: &str, gate: &Gate) -> String {
    stable(&std::fs::read_to_string(home.join(f)).unwrap(), home, gate)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_and_its_catalog_then_undo() {
    let (_m, gate) = gateway().await;
    let home = TempDir::new();
    std::fs::write(home.path().join("config.toml"), BASE).unwrap();
    let said = setup(&gate, home.path(), &["--model", "coder"]);
    insta::assert_snapshot!("profile_stdout", said);
    insta::assert_snapshot!("profile_file", read(home.path(), "codex-gate.config.toml", &gate));
    let catalog: Value = serde_json::from_str(&read(home.path(), "codex-gate-models.json", &gate)).unwrap();
    let slugs: Vec<&str> = catalog["models"].as_array().unwrap().iter().map(|m| m["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["coder", "coder-tools"]);
    assert_eq!(catalog["models"][0]["context_window"], 200000);
    assert_eq!(std::fs::read_to_string(home.path().join("config.toml")).unwrap(), BASE, "the base config is untouched");

    let said = setup(&gate, home.path(), &["--undo"]);
    assert!(said.contains("removed $CODEX_HOME/codex-gate.config.toml"), "{said}");
    let left: Vec<String> =
        std::fs::read_dir(home.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(left, ["config.toml"], "nothing of setup is left");
}

#[tokio::test(flavor = "multi_thread")]
async fn default_and_desktop_edit_the_base_config_and_undo_restores_its_bytes() {
    let (_m, gate) = gateway().await;
    let home = TempDir::new();
    let base = home.path().join("config.toml");
    std::fs::write(&base, BASE).unwrap();
    setup(&gate, home.path(), &["--default", "--model", "coder"]);
    insta::assert_snapshot!("default_config", read(home.path(), "config.toml", &gate));
    // Run twice: the backup still holds the user's own version.
    setup(&gate, home.path(), &["--desktop", "on", "--model", "coder"]);
    let desktop = read(home.path(), "config.toml", &gate);
    assert!(desktop.contains("requires_openai_auth = true"), "{desktop}");
    let said = setup(&gate, home.path(), &["--desktop", "off"]);
    assert!(said.contains("restored $CODEX_HOME/config.toml"), "{said}");
    assert_eq!(std::fs::read(&base).unwrap(), BASE.as_bytes(), "the exact bytes");

    // A base config that is not TOML is refused with its line and column, and left alone.
    std::fs::write(&base, "model = \"x\"\n[broken\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["setup", "codex", "--default", "--codex-home", home.path().to_str().unwrap(), "--url", &gate.url("/v1")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.toml is not valid TOML") && err.contains("line 2"), "{err}");
    assert_eq!(std::fs::read_to_string(&base).unwrap(), "model = \"x\"\n[broken\n");
}

/// `codex exec -p codex-gate` in `home`, with nothing but what setup wrote (plus the offline
/// switches of codex-protocol §13).
async fn codex_exec(bin: &str, home: &Path, model: Option<&str>) -> (Option<i32>, Vec<Value>, String) {
    codex_exec_env(bin, home, model, &[]).await
}

async fn codex_exec_env(
    bin: &str,
    home: &Path,
    model: Option<&str>,
    env: &[(&str, &str)],
) -> (Option<i32>, Vec<Value>, String) {
    let work = TempDir::new();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["exec", "--skip-git-repo-check", "-p", "codex-gate", "-s", "read-only"]).args([
        "-c",
        "analytics.enabled=false",
        "-c",
        "features.plugins=false",
        "-c",
        "approval_policy=\"never\"",
    ]);
    if let Some(m) = model {
        cmd.args(["-m", m]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .args(["--json", "Say PONG"])
        .current_dir(work.path())
        .env("CODEX_HOME", home)
        .env("HOME", home)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out).await.expect("codex timed out").unwrap();
    let events = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (out.status.code(), events, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_codex_runs_a_turn_and_a_tool_loop_with_the_profile_setup_wrote() {
    let Some(bin) = codex_bin() else {
        skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
        return;
    };
    let (m, gate) = gateway().await;
    let home = TempDir::new();
    setup(&gate, home.path(), &["--model", "coder"]);
    let items = |events: &[Value], kind: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == kind)
            .map(|e| e["item"].clone())
            .collect()
    };
    let (code, events, stderr) = codex_exec(&bin, home.path(), None).await;
    assert_eq!(code, Some(0), "{events:?}\n{stderr}");
    assert_eq!(items(&events, "agent_message").last().unwrap()["text"], "d0 d1 d2 d3 d4 ");
    // The catalog was read and knew the model: no fallback metadata, no decode error.
    for bad in ["fallback model metadata", "failed to decode models", "model_catalog_json"] {
        assert!(!stderr.contains(bad), "{bad}: {stderr}");
    }
    let (code, events, stderr) = codex_exec(&bin, home.path(), Some("coder-tools")).await;
    assert_eq!(code, Some(0), "{events:?}\n{stderr}");
    let cmd = items(&events, "command_execution");
    assert_eq!(cmd.len(), 1, "{events:?}");
    assert_eq!(cmd[0]["aggregated_output"], "mock-tool-ran\n");
    assert_eq!(items(&events, "agent_message").last().unwrap()["text"], "d0 d1 d2 d3 d4 ");
    assert!(m.last_request().unwrap().json().to_string().contains("mock-tool-ran"), "the output went back");
    assert!(!stderr.contains("fallback model metadata"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_codex_runs_a_pool_turn_with_the_profile_setup_wrote_for_a_zero_config_gateway() {
    let Some(bin) = codex_bin() else {
        skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
        return;
    };
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    m.add_chatgpt_account("acc-p", false);
    let gate =
        Gate::start(&format!("[pool]\nissuer = \"{}\"\nbase_url = \"{}\"\n", m.issuer_url(), m.backend_url())).await;
    gate.add_account(&m, "acc-p", "plus").await;
    gate.app.reload_pool().await.unwrap();
    for _ in 0..100 {
        if gate.app.pool.catalog.get().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let home = TempDir::new();
    let said = setup(&gate, home.path(), &[]);
    assert!(said.contains("model = \"gpt-5.5\""), "the pool's first model is the default: {said}");
    let catalog: Value = serde_json::from_str(&read(home.path(), "codex-gate-models.json", &gate)).unwrap();
    assert_eq!(catalog["models"][0]["base_instructions"], "You are the mock's Codex model.", "the backend's own entry");
    let (code, events, stderr) = codex_exec(&bin, home.path(), None).await;
    assert_eq!(code, Some(0), "{events:?}\n{stderr}");
    let text: Vec<&Value> = events.iter().filter(|e| e["item"]["type"] == "agent_message").collect();
    assert_eq!(text.last().unwrap()["item"]["text"], "d0 d1 d2 d3 d4 ", "{events:?}");
    let turn = m.requests().into_iter().rfind(|r| r.path.ends_with("/codex/responses")).unwrap();
    assert_eq!(turn.header("chatgpt-account-id"), Some("acc-p"), "served by the pool");
    assert!(!stderr.contains("fallback model metadata"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_keys_in_use_setup_gives_codex_a_key_of_its_own_and_undo_revokes_it() {
    let (_m, gate) = gateway().await;
    // The operator's first key: from now on the gateway asks every client for one.
    codex_gate::access::manage::create(&gate.store, serde_json::json!({"name": "ops"}).as_object().unwrap())
        .await
        .unwrap();
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    let home = TempDir::new();
    let cfg = home.path().join("gate.toml");
    std::fs::write(&cfg, format!("[store]\nurl = \"sqlite://{}\"\n", gate.store_path())).unwrap();
    let cfg = cfg.to_str().unwrap();
    let said = setup(&gate, home.path(), &["--config", cfg, "--model", "coder"]);
    assert!(
        said.contains("created client key key_") && said.contains("$CODEX_HOME/codex-gate.env (mode 0600)"),
        "{said}"
    );
    assert!(said.contains("env_key = \"CODEX_GATE_API_KEY\""), "{said}");
    assert!(said.contains("shells: add to ~/.zshrc or ~/.bashrc:  [ -f '$CODEX_HOME/codex-gate.env' ]"), "{said}");
    let env_file = home.path().join("codex-gate.env");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&env_file).unwrap();
    let key = text.lines().find_map(|l| l.strip_prefix("export CODEX_GATE_API_KEY='")).unwrap().trim_end_matches('\'');
    assert!(key.starts_with("cg-"), "{text}");
    assert!(!said.contains(key), "the key is written to the 0600 file, not printed");
    let profile = read(home.path(), "codex-gate.config.toml", &gate);
    assert!(
        profile.contains("env_key = \"CODEX_GATE_API_KEY\"") && profile.contains("env_key_instructions"),
        "{profile}"
    );
    let catalog: Value = serde_json::from_str(&read(home.path(), "codex-gate-models.json", &gate)).unwrap();
    assert_eq!(catalog["models"].as_array().unwrap().len(), 2, "read from the gateway with the key");

    // Again: the working key is kept, not a second one made.
    let said = setup(&gate, home.path(), &["--config", cfg, "--model", "coder"]);
    assert!(said.contains("kept client key"), "{said}");
    assert_eq!(gate.store.list_keys().await.unwrap().len(), 2);

    if let Some(bin) = codex_bin() {
        let (code, events, stderr) = codex_exec_env(&bin, home.path(), None, &[("CODEX_GATE_API_KEY", key)]).await;
        assert_eq!(code, Some(0), "{events:?}\n{stderr}");
        // Without the variable Codex stops before any request and says how to set it.
        let (code, events, stderr) = codex_exec(&bin, home.path(), None).await;
        assert_ne!(code, Some(0));
        let all = format!("{events:?}{stderr}");
        assert!(all.contains("CODEX_GATE_API_KEY") && all.contains("codex-gate.env"), "{all}");
    } else {
        skip("the Codex CLI is not installed (npm install @openai/codex, or set CODEX_GATE_CODEX_BIN)");
    }

    let said = setup(&gate, home.path(), &["--config", cfg, "--undo"]);
    assert!(said.contains("revoked client key key_") && said.contains("removed $CODEX_HOME/codex-gate.env"), "{said}");
    assert!(!env_file.exists());
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    let r =
        common::http::send("GET", &gate.url("/v1/models"), "", &[("authorization", &format!("Bearer {key}"))]).await;
    assert_eq!(r.status, 401, "the key setup made is revoked with it");
}
