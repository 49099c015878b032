//! Client connections are bounded in time and number: a request head or body that trickles in is
//! cut, idle keep-alive connections close, and a flood of half-open connections on a process
//! with few file descriptors still leaves room for `/health`.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::{provider, Gate, TempDir};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup() -> (MockUpstream, Gate) {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "[server]\nheader_read_timeout_secs = 1\nbody_read_timeout_secs = 1\n{}",
        provider("p", "responses", &m.url(), "models = [\"ok\"]")
    );
    (m, Gate::start(&cfg).await)
}

/// Read until the server closes (or `limit` passes: then the test fails).
async fn read_to_close(tcp: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let t = Instant::now();
    let mut out = Vec::new();
    let r = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(r.is_ok(), "the gateway kept the connection open for {limit:?}: {}", String::from_utf8_lossy(&out));
    (out, t.elapsed())
}

#[tokio::test]
async fn half_sent_heads_and_idle_keep_alive_connections_are_closed() {
    let (_m, gate) = setup().await;
    let mut half = TcpStream::connect(gate.addr).await.unwrap();
    half.write_all(b"POST /v1/responses HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-ty").await.unwrap();
    let (_, took) = read_to_close(&mut half, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(900), "cut only after the header timeout: {took:?}");

    let mut silent = TcpStream::connect(gate.addr).await.unwrap();
    read_to_close(&mut silent, Duration::from_secs(5)).await;

    // Idle after a whole request and answer.
    let mut idle = TcpStream::connect(gate.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.unwrap();
    let (out, _) = read_to_close(&mut idle, Duration::from_secs(5)).await;
    assert!(out.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out));
}

#[tokio::test]
async fn a_body_sent_one_byte_at_a_time_gets_408() {
    let (m, gate) = setup().await;
    let body = br#"{"model":"ok","input":"slow"}"#;
    let mut tcp = TcpStream::connect(gate.addr).await.unwrap();
    let head = format!(
        "POST /v1/responses HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let (mut rx, tx) = tokio::io::split(tcp);
    let trickle = tokio::spawn(async move {
        let mut tx = tx;
        for b in body {
            if tx.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut out = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    assert!(got.is_ok(), "no answer while the body trickled in");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(m.hits(), 0);
}

#[test]
fn a_flood_of_half_open_connections_leaves_room_for_health() {
    // A real process with 128 file descriptors, and 300 clients that connect and say nothing.
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bin = env!("CARGO_BIN_EXE_codex-gate");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n 128 && exec {bin} serve --listen 127.0.0.1:{port}"))
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env_remove("CODEX_GATE_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let health = || -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let mut up = false;
    for _ in 0..100 {
        if health().is_some_and(|h| h.starts_with("HTTP/1.1 200")) {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut flood = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            flood.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let answered: Vec<bool> = (0..5).map(|_| health().is_some_and(|h| h.starts_with("HTTP/1.1 200"))).collect();
    drop(flood);
    let _ = std::process::Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    assert!(up, "the gateway did not start");
    assert!(answered.iter().all(|a| *a), "/health during the flood: {answered:?}");
}
