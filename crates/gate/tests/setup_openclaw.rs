//! `codex-gate setup openclaw` on the Codex-LB config of seed 003 (JSON5, with a comment and a
//! trailing comma): the merged file (snapshot) keeps the user's provider and comments, a second
//! run with `--primary` replaces rather than duplicates, and `--undo` restores the exact bytes.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::{provider, Gate, TempDir, SEED_003};
use std::process::Command;

fn setup(gate: &Gate, file: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["setup", "openclaw", "--config-file", file.to_str().unwrap(), "--url", &gate.url("/v1")])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .replace(&gate.addr.to_string(), "GATEWAY")
        .replace(file.to_str().unwrap(), "$FILE")
}

#[tokio::test(flavor = "multi_thread")]
async fn merges_into_the_codex_lb_config_and_undoes_it() {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = Gate::start(&format!(
        "{}[[routes]]\nmodel = \"coder\"\ntargets = [\"api/ok\"]\n",
        provider("api", "responses", &m.url(), "models = [\"gpt-5.5\"]")
    ))
    .await;
    let dir = TempDir::new();
    let file = dir.path().join(".openclaw/openclaw.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, SEED_003).unwrap();

    let said = setup(&gate, &file, &[]);
    insta::assert_snapshot!("openclaw_stdout", said);
    let merged = std::fs::read_to_string(&file).unwrap().replace(&gate.addr.to_string(), "GATEWAY");
    insta::assert_snapshot!("openclaw_merged", merged);
    let v: serde_json::Value =
        jsonc_parser::parse_to_serde_value(&merged, &jsonc_parser::ParseOptions::default()).unwrap();
    assert_eq!(v["models"]["providers"]["codex-lb"]["api"], "openai-completions", "the user's provider stays");
    assert_eq!(v["agents"]["defaults"]["model"]["primary"], "codex-lb/gpt-5.3-codex", "no --primary: untouched");
    let ids: Vec<&str> = v["models"]["providers"]["codex-gate"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["coder", "gpt-5.5"], "the gateway's models, without provider/model references");

    setup(&gate, &file, &["--primary", "--model", "gpt-5.5", "--api", "completions"]);
    let again = std::fs::read_to_string(&file).unwrap();
    let v: serde_json::Value =
        jsonc_parser::parse_to_serde_value(&again, &jsonc_parser::ParseOptions::default()).unwrap();
    assert_eq!(v["agents"]["defaults"]["model"]["primary"], "codex-gate/gpt-5.5");
    assert_eq!(v["models"]["providers"]["codex-gate"]["api"], "openai-completions");
    assert_eq!(again.matches("\"codex-gate\"").count(), 1, "replaced, not added twice");

    let said = setup(&gate, &file, &["--undo"]);
    assert!(said.contains("restored $FILE"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), SEED_003, "the exact bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_keys_in_use_openclaw_gets_a_key_of_its_own_and_undo_revokes_it() {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = Gate::start(&provider("api", "responses", &m.url(), "models = [\"gpt-5.5\"]")).await;
    codex_gate::access::manage::create(&gate.store, serde_json::json!({"name": "ops"}).as_object().unwrap())
        .await
        .unwrap();
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    let dir = TempDir::new();
    let cfg = dir.path().join("gate.toml");
    std::fs::write(&cfg, format!("[store]\nurl = \"sqlite://{}\"\n", gate.store_path())).unwrap();
    let file = dir.path().join("openclaw.json");
    std::fs::write(&file, SEED_003).unwrap();
    let said = setup(&gate, &file, &["--config", cfg.to_str().unwrap()]);
    assert!(said.contains("created client key key_"), "{said}");
    let v: serde_json::Value = jsonc_parser::parse_to_serde_value(
        &std::fs::read_to_string(&file).unwrap(),
        &jsonc_parser::ParseOptions::default(),
    )
    .unwrap();
    let key = v["models"]["providers"]["codex-gate"]["apiKey"].as_str().unwrap().to_owned();
    assert!(key.starts_with("cg-") && !said.contains(&key), "{said}");
    assert_eq!(v["models"]["providers"]["codex-gate"]["models"][0]["id"], "gpt-5.5", "listed with the key");
    assert_eq!(v["models"]["providers"]["codex-lb"]["apiKey"], "dummy", "the user's provider is untouched");
    let said = setup(&gate, &file, &["--config", cfg.to_str().unwrap()]);
    assert!(said.contains("kept client key"), "{said}");
    let said = setup(&gate, &file, &["--config", cfg.to_str().unwrap(), "--undo"]);
    assert!(said.contains("revoked client key"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), SEED_003, "the exact bytes");
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    let r =
        common::http::send("GET", &gate.url("/v1/models"), "", &[("authorization", &format!("Bearer {key}"))]).await;
    assert_eq!(r.status, 401);
}
