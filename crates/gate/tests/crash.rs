//! kill -9 in the middle of traffic: restarted on the same SQLite file, the database passes
//! `integrity_check`, the accounts (and their sealed tokens) are intact, and the gateway serves.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::{get, post, send};
use common::TempDir;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn spawn(cfg: &std::path::Path, home: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .env("HOME", home)
        .env_remove("CODEX_GATE_ENCRYPTION_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_up(base: &str) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_store_is_intact_and_the_gateway_serves() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let db = dir.path().join("gate.db");
    let cfg = dir.path().join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{}\"\n[pool]\nissuer = \"{}\"\nkey_file = \"{}\"\n\
             [[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n\
             [[providers]]\nname = \"api\"\nkind = \"responses\"\nbase_url = \"{}\"\n",
            db.display(),
            mock.issuer_url(),
            dir.path().join("key").display(),
            mock.backend_url(),
            mock.url()
        ),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn(&cfg, dir.path());
    wait_up(&base).await;
    let (access, refresh) = mock.add_chatgpt_account("acc-k", false);
    let auth = json!({"auth_mode": "chatgpt", "tokens": {
        "id_token": codex_gate_mock::chatgpt::id_token("u-k", "acc-k", "k@example.com", "plus"),
        "access_token": access, "refresh_token": refresh}});
    let r =
        send("POST", &format!("{base}/api/accounts/import"), auth.to_string(), &[("content-type", "application/json")])
            .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Traffic in flight (streams and log writes) when the process dies.
    let mut load = Vec::new();
    for i in 0..40 {
        let url = format!("{base}/v1/responses");
        let model = if i % 2 == 0 { "api/slow:deltas=50,delay_ms=20" } else { "pool/gpt-5.5" };
        load.push(tokio::spawn(async move {
            let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
            let body = json!({"model": model, "input": "x", "stream": true}).to_string();
            let req = http::Request::post(url)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap();
            let _ = client.request(req).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = Command::new("kill").args(["-9", &child.id().to_string()]).status();
    let _ = child.wait();
    for l in load {
        l.abort();
    }

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&pool).await.unwrap();
    assert_eq!(check, "ok");
    pool.close().await;

    let mut child = spawn(&cfg, dir.path());
    wait_up(&base).await;
    let accounts = get(&format!("{base}/api/accounts")).await.json();
    let a = &accounts["accounts"][0];
    assert_eq!((a["email"].as_str(), a["status"].as_str()), (Some("k@example.com"), Some("active")), "{accounts}");
    // Its sealed tokens still open: a turn through the pool is served.
    let r = post(&format!("{base}/v1/responses"), &json!({"model": "pool/gpt-5.5", "input": "again", "stream": true}))
        .await;
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.event_types().last().map(String::as_str), Some("response.completed"));
}
