//! `codex-gate keys …` and `usage` as a user runs them, against a `serve` process on the same
//! store: a key made, changed or revoked by the CLI applies to the running gateway within a
//! second; a listener other machines can reach is refused until a key exists; and a key's
//! plaintext never appears in the database files, the trace-level log, `/metrics` or any CLI
//! output after the one line that shows it.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::send;
use common::TempDir;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

struct Env {
    dir: TempDir,
    config: String,
}

impl Env {
    fn new(mock: &MockUpstream) -> Env {
        let dir = TempDir::new();
        let config = dir.path().join("gate.toml").display().to_string();
        let db = dir.path().join("gate.db").display().to_string();
        let toml = format!(
            "[store]\nurl = \"sqlite://{db}\"\n[pool]\nkey_file = \"{}\"\n{}",
            dir.path().join("key").display(),
            common::provider("p", "chat", &mock.url(), "models = [\"ok\"]")
        );
        std::fs::write(&config, toml).unwrap();
        Env { dir, config }
    }

    fn cmd(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_codex-gate"));
        c.env_remove("CODEX_GATE_CONFIG").env("HOME", self.dir.path()).args(["--config", &self.config]);
        c
    }

    /// Run a CLI command: (exit code, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().args(args).output().await.unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Every byte of the store's files.
    fn db_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for f in ["gate.db", "gate.db-wal", "gate.db-shm"] {
            all.extend(std::fs::read(self.dir.path().join(f)).unwrap_or_default());
        }
        all
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn chat(port: u16, key: Option<&str>) -> u16 {
    let body = json!({"model": "ok", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut h = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        h.push(("authorization", a));
    }
    send("POST", &format!("http://127.0.0.1:{port}/v1/chat/completions"), body, &h).await.status.as_u16()
}

/// Wait until something listens on `port`.
async fn wait_up(port: u16) {
    let t = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "gateway did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll until `chat` answers `want` (at most 1 s: the gateway polls its keys every 500 ms).
async fn within_a_second(port: u16, key: Option<&str>, want: u16) {
    let t = Instant::now();
    loop {
        if chat(port, key).await == want {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(1), "not {want} within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn keys_from_the_cli_apply_to_a_running_gateway_and_never_leak() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let env = Env::new(&mock);

    // Reachable from other machines without a key: refused at start, saying what to do.
    let (code, _, err) = env.run(&["serve", "--listen", "0.0.0.0:0"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no client keys exist") && err.contains("keys create --name"), "{err}");

    let port = free_port();
    let serve = env
        .cmd()
        .args(["--log-level", "trace", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_up(port).await;
    assert_eq!(chat(port, None).await, 200, "no keys yet");

    let (code, out, err) = env.run(&["keys", "create", "--name", "ci", "--rpm", "100", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["policy"]["rpm"], 100);
    within_a_second(port, None, 401).await;
    assert_eq!(chat(port, Some(&key)).await, 200);

    // Changed by the CLI: the new limit is in force within a second.
    let (code, out, err) = env.run(&["keys", "update", &id, "--rpm", "1"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rpm 1"), "{out}");
    within_a_second(port, Some(&key), 429).await;
    let (code, _, err) = env.run(&["keys", "update", "ci", "--rpm", "none"]).await;
    assert_eq!(code, 0, "{err}");
    within_a_second(port, Some(&key), 200).await;

    // Listings and reports show the key's prefix and its traffic, never the key.
    let mut printed = String::new();
    for args in
        [&["keys", "list"][..], &["keys", "list", "--json"], &["keys", "show", "ci"], &["keys", "show", &id, "--json"]]
    {
        let (code, out, err) = env.run(args).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains(&key[..9]), "{args:?} shows the prefix: {out}");
        printed.push_str(&out);
        printed.push_str(&err);
    }
    let t = Instant::now();
    let report = loop {
        let (code, out, err) = env.run(&["usage", "--by", "key", "--json"]).await;
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let line = v["lines"].as_array().unwrap().iter().find(|l| l["group"] == id.as_str()).cloned();
        if let Some(l) = line.filter(|l| l["requests"].as_i64() >= Some(2)) {
            break l;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "usage never showed the key: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(report["label"], format!("ci ({id})"));
    assert!(report["input_tokens"].as_i64().unwrap() > 0);
    let (code, csv, _) = env.run(&["usage", "--by", "model", "--csv", "--since", "1h"]).await;
    assert_eq!(code, 0);
    assert!(csv.starts_with("group,label,requests") && csv.contains("\"ok\""), "{csv}");
    let (code, _, err) = env.run(&["usage", "--since", "soon"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("--since"), "{err}");

    let metrics = send("GET", &format!("http://127.0.0.1:{port}/metrics"), "", &[]).await.text();
    printed.push_str(&metrics);

    let (code, out, _) = env.run(&["keys", "revoke", "ci"]).await;
    assert_eq!(code, 0);
    printed.push_str(&out);
    within_a_second(port, Some(&key), 401).await;

    // Bad input names the flag.
    let (code, _, err) = env.run(&["keys", "create", "--name", "x", "--rpm", "lots"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("--rpm"), "{err}");
    let (code, _, err) = env.run(&["keys", "create", "--name", "x", "--expires", "someday"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("expires"), "{err}");

    let _ = tokio::process::Command::new("kill").arg(serve.id().unwrap().to_string()).status().await;
    let out = serve.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("client keys reloaded"), "the running gateway picked the changes up");
    let secret = &key[3..];
    assert!(!log.contains(secret), "the key is in the trace log");
    assert!(!printed.contains(secret), "the key is in CLI output or /metrics");
    let db = env.db_bytes();
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()), "the key is in the database files");

    // With a key in the store, listening on every interface is allowed.
    let port = free_port();
    let mut open = env
        .cmd()
        .args(["serve", "--listen", &format!("0.0.0.0:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_up(port).await;
    assert_eq!(chat(port, None).await, 401, "served, and a key is asked for");
    let _ = open.start_kill();
}
