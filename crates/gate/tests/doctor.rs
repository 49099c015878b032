//! `codex-gate doctor` against a fixture Codex home holding the broken configs of seed 000's
//! troubleshooting table (no `/v1`, `wire_api = "chat"`, an unset key variable, a model the
//! gateway does not route, smart quotes, a trailing comma in auth.json) and a key file others
//! can read: the findings (snapshot), the exit code, and what `--fix` repairs and leaves.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::{provider, Gate, TempDir};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const BASE: &str = r#"# my Codex config
model = "nope-model"
model_provider = "codex-gate"

[model_providers.codex-gate]
name = "codex-gate"
base_url = "http://127.0.0.1:PORT"   # copied from a guide
wire_api = "chat"
env_key = "CODEX_GATE_DOCTOR_TEST_UNSET"

[model_providers.elsewhere]
name = "Elsewhere"
base_url = "https://example.com/v1"
"#;

const PROFILE: &str = "model = \u{201c}coder\u{201d}\nmodel_provider = \"old\"\n\n[model_providers.old]\nname = \"codex-gate\"\nbase_url = \"http://localhost:9/v1\"\nwire_api = \"responses\"\n";

fn doctor(cfg: &Path, home: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["--config", cfg.to_str().unwrap(), "doctor", "--codex-home", home.to_str().unwrap()])
        .args(args)
        .env("HOME", home)
        .env_remove("CODEX_GATE_DOCTOR_TEST_UNSET")
        .env_remove("CODEX_GATE_ENCRYPTION_KEY")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_seed_troubles_and_fixes_what_is_safe() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = Gate::start(&format!(
        "{}[[routes]]\nmodel = \"coder\"\ntargets = [\"api/ok\"]\n",
        provider("api", "responses", &mock.url(), "")
    ))
    .await;
    let port = gate.addr.port();
    let dir = TempDir::new();
    let home = dir.path().join("codex");
    std::fs::create_dir_all(&home).unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let cfg = dir.path().join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{}\"\n[pool]\nkey_file = \"{}\"\n{}",
            dir.path().join("g.db").display(),
            key.display(),
            provider("api", "responses", &mock.url(), "")
        ),
    )
    .unwrap();
    let base = BASE.replace("PORT", &port.to_string());
    std::fs::write(home.join("config.toml"), &base).unwrap();
    std::fs::write(home.join("work.config.toml"), PROFILE).unwrap();
    std::fs::write(home.join("auth.json"), "{\"auth_mode\": \"chatgpt\",}\n").unwrap();

    let stable = |s: &str| {
        s.replace(dir.path().to_str().unwrap(), "$DIR")
            .replace(&port.to_string(), "PORT")
            .replace(&mock.addr().port().to_string(), "MOCKPORT")
    };
    let (code, text) = doctor(&cfg, &home, &[]);
    assert_ne!(code, Some(0), "broken things make a non-zero exit:\n{text}");
    insta::assert_snapshot!("doctor_findings", stable(&text));

    let (code, json) = doctor(&cfg, &home, &["--fix", "--json"]);
    assert_ne!(code, Some(0), "the unset variable and auth.json are not repaired automatically");
    let v: Value = serde_json::from_str(&json).unwrap();
    let fixed: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["fixed"] == true)
        .map(|f| f["what"].as_str().unwrap())
        .collect();
    assert_eq!(fixed.len(), 5, "key mode, smart quotes, /v1, wire_api, old port: {fixed:?}");
    let now = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(now.contains(&format!("base_url = \"http://127.0.0.1:{port}/v1\"   # copied from a guide")), "{now}");
    assert!(now.contains("wire_api = \"responses\"") && now.contains("# my Codex config"), "{now}");
    assert!(now.contains("base_url = \"https://example.com/v1\""), "other providers are left alone: {now}");
    let profile = std::fs::read_to_string(home.join("work.config.toml")).unwrap();
    assert!(profile.contains("model = \"coder\"") && profile.contains(&format!("127.0.0.1:{port}/v1")), "{profile}");
    #[cfg(unix)]
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions()) & 0o777, 0o600);

    // What is left: the variable, the model, auth.json; a second --fix changes nothing more.
    let (_, text) = doctor(&cfg, &home, &["--fix"]);
    assert!(!text.contains("fixed "), "{text}");
    let broken: Vec<&str> = text.lines().filter(|l| l.starts_with("BROKEN")).collect();
    assert_eq!(broken.len(), 2, "{text}");
    assert!(text.contains("CODEX_GATE_DOCTOR_TEST_UNSET is not set") && text.contains("trailing comma"), "{text}");
    assert!(text.contains("model \"nope-model\" is not routed by the gateway"), "{text}");

    // With the gateway down, that is the first thing said.
    drop(gate);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (code, text) = doctor(&cfg, &home, &[]);
    assert_ne!(code, Some(0));
    assert!(text.contains(&format!("BROKEN gateway  nothing answers at http://127.0.0.1:{port}/v1")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_and_fixes_an_openclaw_config_pointed_at_the_gateway() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = Gate::start(&format!(
        "{}[[routes]]\nmodel = \"coder\"\ntargets = [\"api/ok\"]\n",
        provider("api", "responses", &mock.url(), "")
    ))
    .await;
    let port = gate.addr.port();
    let dir = TempDir::new();
    let cfg = dir.path().join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{}\"\n[pool]\nkey_file = \"{}\"\n{}",
            dir.path().join("g.db").display(),
            dir.path().join("key").display(),
            provider("api", "responses", &mock.url(), "")
        ),
    )
    .unwrap();
    let claw = dir.path().join("openclaw.json");
    let text = format!(
        "{{\n  // mine\n  agents: {{ defaults: {{ model: {{ primary: 'codex-lb/gpt-5.3-codex' }} }} }},\n  models: {{\n    mode: 'merge',\n    providers: {{\n      'codex-gate': {{ baseUrl: 'http://127.0.0.1:{port}', apiKey: 'dummy', api: 'openai-chat', models: [{{ id: 'nope' }}], }},\n    }},\n  }},\n}}\n"
    );
    std::fs::write(&claw, &text).unwrap();
    let run = |fix: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_codex-gate"));
        c.args(["--config", cfg.to_str().unwrap(), "doctor", "--json", "--openclaw-config", claw.to_str().unwrap()])
            .args(["--codex-home", dir.path().join("no-codex").to_str().unwrap()])
            .env("HOME", dir.path());
        if fix {
            c.arg("--fix");
        }
        let out = c.output().unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let v = run(false);
    let claw_findings: Vec<String> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "openclaw")
        .map(|f| format!("{} {}", f["level"].as_str().unwrap(), f["what"].as_str().unwrap()))
        .collect();
    let joined = claw_findings.join("\n");
    assert_eq!(claw_findings.len(), 4, "{joined}");
    assert!(joined.contains("does not end in /v1") && joined.contains("api \"openai-chat\""), "{joined}");
    assert!(joined.contains("does not route [\"nope\"]") && joined.contains("provider \"codex-lb\""), "{joined}");
    assert_eq!(v["ok"], false);

    let v = run(true);
    let fixed = v["findings"].as_array().unwrap().iter().filter(|f| f["fixed"] == true).count();
    assert_eq!(fixed, 2, "baseUrl and api: {v}");
    let now = std::fs::read_to_string(&claw).unwrap();
    assert!(now.contains("// mine") && now.contains("mode: 'merge'"), "comments and quoting stay: {now}");
    let parsed: Value = jsonc_parser::parse_to_serde_value(&now, &jsonc_parser::ParseOptions::default()).unwrap();
    let p = &parsed["models"]["providers"]["codex-gate"];
    assert_eq!(p["baseUrl"], format!("http://127.0.0.1:{port}/v1"));
    assert_eq!(p["api"], "openai-responses");
}
