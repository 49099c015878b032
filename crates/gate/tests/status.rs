//! `codex-gate status` and `codex-gate models` against a gateway process with a pool account and
//! a route that fails over: live windows, the last hour's requests, errors and failovers from
//! the request log; and the same commands once the gateway is down.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::{post, send};
use common::TempDir;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

fn cli(cfg: &std::path::Path, home: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["--config", cfg.to_str().unwrap()])
        .args(args)
        .env("HOME", home)
        .env_remove("CODEX_GATE_ENCRYPTION_KEY")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_models_while_up_and_when_down() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = dir.path().join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{}\"\n[pool]\nissuer = \"{}\"\nkey_file = \"{}\"\n\
             [[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n\
             [[providers]]\nname = \"api\"\nkind = \"responses\"\nbase_url = \"{}\"\n\
             [[routes]]\nmodel = \"flaky\"\ntargets = [\"api/reset\", \"api/ok\"]\n",
            dir.path().join("gate.db").display(),
            mock.issuer_url(),
            dir.path().join("key").display(),
            mock.backend_url(),
            mock.url()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .env("HOME", dir.path())
        .env_remove("CODEX_GATE_ENCRYPTION_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (access, refresh) = mock.add_chatgpt_account("acc-s", false);
    mock.set_usage("acc-s", 42.0);
    let auth = json!({"auth_mode": "chatgpt", "tokens": {
        "id_token": codex_gate_mock::chatgpt::id_token("u-s", "acc-s", "s@example.com", "plus"),
        "access_token": access, "refresh_token": refresh}});
    let r =
        send("POST", &format!("{base}/api/accounts/import"), auth.to_string(), &[("content-type", "application/json")])
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for model in ["pool/gpt-5.5", "flaky", "api/500"] {
        post(&format!("{base}/v1/responses"), &json!({"model": model, "input": "x", "stream": true})).await;
    }
    // The request log is written in batches.
    let mut v = Value::Null;
    for _ in 0..50 {
        let (ok, out) = cli(&cfg, dir.path(), &["status", "--json"]);
        assert!(ok, "{out}");
        v = serde_json::from_str(&out).unwrap();
        if v["last_hour"]["requests"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(v["gateway"]["up"], true, "{v}");
    assert_eq!(v["gateway"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["gateway"]["url"], format!("{base}/v1"));
    assert_eq!(v["last_hour"], json!({"requests": 3, "errors": 1, "failovers": 1}), "{v}");
    assert_eq!(v["recent_failovers"][0]["route"], "flaky");
    assert_eq!(v["recent_failovers"][0]["target"], "api/ok");
    let acc = &v["accounts"][0];
    assert_eq!((acc["plan_type"].as_str(), acc["email"].as_str()), (Some("plus"), Some("s@example.com")));
    assert_eq!(acc["rate_limit"]["primary_window"]["used_percent"], 42.0, "the window the turn reported");

    let (ok, text) = cli(&cfg, dir.path(), &["status"]);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("gateway  up at {base}/v1")), "{text}");
    assert!(text.contains("5h 42% (resets in"), "{text}");
    assert!(text.contains("last hour 3 requests, 1 errors, 1 failovers"), "{text}");
    assert!(text.contains("flaky -> api/ok (2 attempts"), "{text}");
    let (ok, models) = cli(&cfg, dir.path(), &["models", "--json"]);
    assert!(ok, "{models}");
    let ids: Vec<String> = serde_json::from_str::<Value>(&models).unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.contains(&"flaky".to_owned()), "{ids:?}");

    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let (ok, text) = cli(&cfg, dir.path(), &["status"]);
    assert!(ok, "{text}");
    assert!(text.contains("gateway  DOWN"), "{text}");
    assert!(text.contains("s@example.com"), "accounts come from the store: {text}");
    assert!(text.contains("last hour 3 requests"), "{text}");
    let (ok, text) = cli(&cfg, dir.path(), &["models"]);
    assert!(ok && text.contains("not running") && text.contains("flaky"), "{text}");

    // Keys: counted by state.
    let (ok, text) = cli(&cfg, dir.path(), &["status"]);
    assert!(ok && text.contains("keys     none: loopback clients are served without one"), "{text}");
    for args in [
        &["keys", "create", "--name", "a"][..],
        &["keys", "create", "--name", "ops", "--admin"],
        &["keys", "create", "--name", "old"],
    ] {
        let (ok, out) = cli(&cfg, dir.path(), args);
        assert!(ok, "{out}");
    }
    let (ok, _) = cli(&cfg, dir.path(), &["keys", "revoke", "old"]);
    assert!(ok);
    let (ok, text) = cli(&cfg, dir.path(), &["status", "--json"]);
    assert!(ok, "{text}");
    let k = &serde_json::from_str::<Value>(&text).unwrap()["keys"];
    assert_eq!((k["active"].as_u64(), k["admin"].as_u64(), k["revoked"].as_u64()), (Some(2), Some(1), Some(1)), "{k}");
    let (ok, text) = cli(&cfg, dir.path(), &["status"]);
    assert!(ok && text.contains("keys     2 active (1 admin), 1 revoked, 0 expired"), "{text}");
}
