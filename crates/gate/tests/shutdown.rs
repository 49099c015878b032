//! Shutdown keeps its deadline: at `drain_timeout_secs` an open stream ends with its final
//! failure event and its request-log row, and neither a half-open client nor the pool's usage
//! poller holds the process past it.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::{provider, Gate, TempDir};
use std::time::{Duration, Instant};

#[tokio::test]
async fn at_the_drain_deadline_open_streams_end_with_a_failure_event_and_their_row() {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!("[server]\ndrain_timeout_secs = 1\n{}", provider("p", "responses", &m.url(), ""));
    let mut gate = Gate::start(&cfg).await;
    let url = gate.url("/v1/responses");
    // 100 deltas 100 ms apart: 10 s, far past the deadline.
    let body = serde_json::json!({"model": "p/slow:deltas=100,delay_ms=100", "input": "x", "stream": true});
    let stream = tokio::spawn(async move { common::http::post(&url, &body).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let t = Instant::now();
    gate.stop();
    let resp =
        tokio::time::timeout(Duration::from_secs(5), stream).await.expect("the stream outlived the drain").unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "ended after {took:?}");
    let last = resp.events().last().cloned().unwrap();
    assert_eq!(last["type"], "response.failed", "{}", resp.text());
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert!(last["response"]["error"]["message"].as_str().unwrap().contains("shutting down"));
    let rows = gate.records(1).await;
    assert_eq!(rows[0].error_code.as_deref(), Some("gateway_shutdown"));
}

#[test]
fn the_process_exits_on_time_with_a_half_open_client_and_a_pool_configured() {
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = dir.path().join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndrain_timeout_secs = 2\n[pool]\nusage_poll_secs = 1\nkey_file = \"{}\"\n\
             [[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"http://127.0.0.1:9/backend-api\"\n",
            dir.path().join("key").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut half = None;
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            s.write_all(b"POST /v1/responses HTTP/1.1\r\nhost: 127.0.0.1\r\n").unwrap();
            half = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if half.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the gateway did not start");
    }
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let _ = std::process::Command::new("kill").arg(child.id().to_string()).status();
    let mut exited = None;
    while t.elapsed() < Duration::from_secs(15) {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some((status, t.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let (status, took) = exited.expect("still running 15 s after SIGTERM");
    assert!(status.success(), "{status:?}");
    // Nothing is in flight, so nothing waits for the 2 s drain.
    assert!(took < Duration::from_millis(1500), "exit took {took:?}");
}
