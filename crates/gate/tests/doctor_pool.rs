//! `codex-gate doctor` on what the running gateway and its upstreams say: an account that needs
//! a new login (broken, with the command that fixes it), one cooling down (a warning), this
//! machine's clock two hours off the first provider's `Date`, and — once the gateway asks for
//! client keys — whether each Codex provider sends one and whether the gateway accepts it.

mod common;

use codex_gate::pool::Status;
use codex_gate_mock::{MockOptions, MockUpstream};
use common::{Gate, TempDir};
use serde_json::Value;
use std::process::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP server whose `Date` is two hours behind; its address.
async fn skewed_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let past = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
                let head = format!(
                    "HTTP/1.1 404 Not Found\r\ndate: {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    httpdate::fmt_http_date(past)
                );
                let _ = s.write_all(head.as_bytes()).await;
            });
        }
    });
    addr
}

/// A 0600 key file and a gateway config in `dir` for doctor (the gateway at `gate`, plus `extra`).
fn doctor_config(dir: &TempDir, gate: &Gate, extra: &str) -> std::path::PathBuf {
    let key = dir.path().join("key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = dir.path().join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"{}\"\n[store]\nurl = \"sqlite://{}\"\n[pool]\nkey_file = \"{}\"\n{extra}",
            gate.addr,
            dir.path().join("doctor.db").display(),
            key.display()
        ),
    )
    .unwrap();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_that_need_a_login_or_cool_down_and_a_skewed_clock() {
    let skewed = skewed_upstream().await;
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    mock.add_chatgpt_account("acc-2", false);
    let providers = format!(
        "[[providers]]\nname = \"skewed\"\nkind = \"responses\"\nbase_url = \"http://{skewed}/v1\"\nmodels = [\"x\"]\n\
         [[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n",
        mock.backend_url()
    );
    let gate = Gate::start(&format!("{providers}[pool]\nissuer = \"{}\"\n", mock.issuer_url())).await;
    let one = gate.add_account(&mock, "acc-1", "plus").await;
    let two = gate.add_account(&mock, "acc-2", "pro").await;
    let pool = &gate.app.pool;
    pool.set_status(&pool.find(&one).unwrap(), Status::ReauthRequired("refresh_token_expired".into())).await;
    pool.cool_down(&pool.find(&two).unwrap(), Some(codex_gate::now_ms() / 1000 + 600));

    let dir = TempDir::new();
    let cfg = doctor_config(&dir, &gate, &providers);
    let out = Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["--config", cfg.to_str().unwrap(), "doctor", "--json", "--codex-home", dir.path().to_str().unwrap()])
        .env("HOME", dir.path())
        .env_remove("CODEX_GATE_ENCRYPTION_KEY")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "an account needing a login is broken");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    let find = |check: &str, part: &str| {
        findings
            .iter()
            .find(|f| f["check"] == check && f["what"].as_str().is_some_and(|w| w.contains(part)))
            .unwrap_or_else(|| panic!("no {check} finding with {part:?}: {findings:#?}"))
    };
    let login = find("account", "acc-1@example.com needs a new login (refresh_token_expired)");
    assert_eq!(login["level"], "broken");
    assert!(login["fix"].as_str().unwrap().contains(&format!("codex-gate accounts remove {one}")));
    assert_eq!(find("account", "acc-2@example.com is cooling down")["level"], "warn");
    let clock = find("clock", "s off skewed's");
    assert_eq!(clock["level"], "warn");
    let skew: i64 = clock["what"].as_str().unwrap().split_whitespace().find_map(|w| w.parse().ok()).unwrap();
    assert!((7190..=7210).contains(&skew), "{skew}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keys_in_use_the_key_each_codex_provider_sends_is_tried() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = Gate::start(&common::provider("api", "responses", &mock.url(), "models = [\"coder\"]")).await;
    let make = |name: &str| {
        let store = gate.store.clone();
        let name = name.to_owned();
        async move {
            codex_gate::access::manage::create(&store, serde_json::json!({"name": name}).as_object().unwrap())
                .await
                .unwrap()
        }
    };
    let (good, _) = make("good").await;
    let (old, old_row) = make("old").await;
    codex_gate::access::manage::revoke(&gate.store, &old_row.id).await.unwrap();
    gate.app.keys.sync(&gate.store, false).await.unwrap();

    let dir = TempDir::new();
    let home = dir.path().join("codex");
    std::fs::create_dir_all(&home).unwrap();
    let base = gate.url("/v1");
    std::fs::write(
        home.join("config.toml"),
        format!(
            "model = \"coder\"\nmodel_provider = \"codex-gate\"\n[model_providers.codex-gate]\nname = \"codex-gate\"\n\
             base_url = \"{base}\"\nwire_api = \"responses\"\nenv_key = \"CG_DOCTOR_KEY\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        home.join("bare.config.toml"),
        format!(
            "[model_providers.codex-gate]\nname = \"codex-gate\"\nbase_url = \"{base}\"\nwire_api = \"responses\"\n"
        ),
    )
    .unwrap();
    let cfg = doctor_config(&dir, &gate, "");
    let doctor = |key: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_codex-gate"))
            .args(["--config", cfg.to_str().unwrap(), "doctor", "--json", "--codex-home", home.to_str().unwrap()])
            .env("HOME", dir.path())
            .env("CG_DOCTOR_KEY", key)
            .env("CODEX_GATE_API_KEY", &good)
            .env_remove("CODEX_GATE_ENCRYPTION_KEY")
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["findings"].as_array().unwrap().clone()
    };
    let has = |findings: &[Value], level: &str, part: &str| {
        findings.iter().any(|f| f["level"] == level && f["what"].as_str().is_some_and(|w| w.contains(part)))
    };
    let revoked = doctor(&old);
    assert!(has(&revoked, "broken", "the gateway refuses the key in CG_DOCTOR_KEY"), "{revoked:#?}");
    assert!(
        has(&revoked, "broken", "bare.config.toml [model_providers.codex-gate]: sends no client key"),
        "{revoked:#?}"
    );
    let working = doctor(&good);
    assert!(has(&working, "ok", "the gateway accepts the key in CG_DOCTOR_KEY"), "{working:#?}");
    assert!(!has(&working, "broken", "refuses the key"), "{working:#?}");
}
