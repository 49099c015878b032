//! `codex-gate-bench soak`: minutes of mixed Codex-shaped traffic through codex-gate with ~5 %
//! injected upstream faults, bounded in time and count, all on 127.0.0.1. It reports requests,
//! answers by kind, request-log rows written and lost, RSS at start and end, and panics in the
//! gateway's log; it fails when a row is lost, the gateway panics or stops answering.

use crate::procs::{self, Proc};
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upstream faults the mock plays (a twentieth of the traffic).
const FAULTS: &[&str] =
    &["reset", "500", "truncated", "stall", "no-terminal", "failed", "html-200", "garbage-200", "429", "hang"];

#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    ok: AtomicU64,
    gateway_errors: AtomicU64,
    /// No HTTP answer at all (connection refused or dropped): the gateway failed the client.
    transport_errors: AtomicU64,
}

fn request(i: u64, faulty: bool) -> (&'static str, serde_json::Value) {
    let model = if faulty {
        FAULTS[(i / 20) as usize % FAULTS.len()].to_owned()
    } else if i.is_multiple_of(3) {
        "slow:deltas=30,delay_ms=10".to_owned()
    } else {
        "ok".to_owned()
    };
    let upstream = if i.is_multiple_of(2) { "resp" } else { "chat" };
    let model = format!("{upstream}/{model}");
    let stream = i % 4 != 3;
    // Both client APIs, so half of the traffic is translated.
    if i % 5 < 3 {
        let history: Vec<_> = (0..(i % 8))
            .map(|n| json!({"role": "user", "content": format!("turn {n} {}", "x".repeat(2000))}))
            .collect();
        (
            "/v1/responses",
            json!({"model": model, "stream": stream, "input": history, "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]}),
        )
    } else {
        (
            "/v1/chat/completions",
            json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}),
        )
    }
}

async fn worker(addr: String, counts: Arc<Counts>, until: Instant, next: Arc<AtomicU64>) {
    let mut conn = None;
    while Instant::now() < until {
        let i = next.fetch_add(1, Relaxed);
        let (path, body) = request(i, i % 20 == 19);
        if conn.is_none() {
            conn = crate::load::connect(&addr).await.ok();
        }
        let Some(send) = conn.as_mut() else {
            counts.transport_errors.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        counts.sent.fetch_add(1, Relaxed);
        let req = http::Request::post(path)
            .header(http::header::HOST, &addr)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        let answer = async {
            send.ready().await.map_err(|e| e.to_string())?;
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            resp.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(status)
        };
        match tokio::time::timeout(Duration::from_secs(30), answer).await {
            Ok(Ok(s)) if s.is_success() => counts.ok.fetch_add(1, Relaxed),
            Ok(Ok(_)) => counts.gateway_errors.fetch_add(1, Relaxed),
            _ => {
                conn = None;
                counts.transport_errors.fetch_add(1, Relaxed)
            }
        };
    }
}

/// Run the soak for `duration` with `connections` clients; the report goes to stdout and
/// OUT/soak.json.
pub async fn run(duration: Duration, connections: usize, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mock_addr = procs::free_addr()?;
    let _mock = Proc::spawn_self(
        "mock upstream",
        &mock_addr,
        &["mock".into(), mock_addr.clone(), "--deltas".into(), "20".into()],
        &out.join("soak-mock.log"),
    )?;
    let gate_addr = procs::free_addr()?;
    let db = out.join("soak.db");
    let _ = std::fs::remove_file(&db);
    let timeouts = "first_byte_timeout_ms = 2000\nidle_timeout_ms = 1000\nconnect_timeout_ms = 1000";
    let config = format!(
        "[server]\nlisten = \"{gate_addr}\"\ndrain_timeout_secs = 5\n[store]\nurl = \"sqlite://{}\"\n[pool]\nkey_file = \"{}\"\n\
         [egress]\nenv_proxy = false\n\
         [[providers]]\nname = \"resp\"\nkind = \"responses\"\nbase_url = \"http://{mock_addr}/v1\"\n{timeouts}\n\
         [[providers]]\nname = \"chat\"\nkind = \"chat\"\nbase_url = \"http://{mock_addr}/v1\"\n{timeouts}\n",
        db.display(),
        out.join("soak.key").display()
    );
    let config_path = out.join("soak.toml");
    std::fs::write(&config_path, config)?;
    let log = out.join("soak-gate.log");
    let gate = Proc::spawn_gate("codex-gate", &gate_addr, &config_path, &log)?;
    let rss_start = procs::rss(gate.pid());
    let started = Instant::now();
    let counts = Arc::new(Counts::default());
    let next = Arc::new(AtomicU64::new(0));
    let until = started + duration;
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(worker(gate_addr.clone(), counts.clone(), until, next.clone())))
        .collect();
    let mut rss_peak = rss_start;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_peak = rss_peak.max(procs::rss(gate.pid()));
    }
    for w in workers {
        let _ = w.await;
    }
    let rss_end = procs::rss(gate.pid());
    let metrics = crate::http_get(&format!("http://{gate_addr}/metrics")).await.unwrap_or_default();
    let metric =
        |name: &str| -> u64 { metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0) };
    let dropped = metric("codex_gate_request_log_dropped_total ");
    let failed_writes = metric("codex_gate_request_log_failed_total ");
    // SIGTERM and a clean drain: every row is flushed.
    let _ = std::process::Command::new("kill").arg(gate.pid().to_string()).status();
    let t = Instant::now();
    while std::net::TcpStream::connect(&gate_addr).is_ok() && t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(gate);
    let store = codex_gate::store::Store::open(&format!("sqlite://{}", db.display())).await?;
    let rows = store.count_requests().await? as u64;
    store.close().await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let panics = text.matches("panicked").count();
    let sent = counts.sent.load(Relaxed);
    let answered = counts.ok.load(Relaxed) + counts.gateway_errors.load(Relaxed);
    let report = json!({
        "seconds": started.elapsed().as_secs_f64().round(),
        "connections": connections,
        "requests": sent,
        "answered_2xx": counts.ok.load(Relaxed),
        "answered_error": counts.gateway_errors.load(Relaxed),
        "no_answer": counts.transport_errors.load(Relaxed),
        "fault_share": 0.05,
        "rows_written": rows,
        "rows_lost": answered.saturating_sub(rows),
        "log_queue_dropped": dropped,
        "log_write_failed": failed_writes,
        "rss_mb": {"start": mb(rss_start), "peak": mb(rss_peak), "end": mb(rss_end)},
        "panics": panics,
        "machine": procs::machine(),
    });
    std::fs::write(out.join("soak.json"), serde_json::to_vec_pretty(&report)?)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if panics > 0 {
        bail!("the gateway panicked {panics} time(s); see {}", log.display());
    }
    if rows < answered {
        bail!("{} request-log rows lost", answered - rows);
    }
    if sent == 0 || counts.ok.load(Relaxed) == 0 {
        bail!("no request was served");
    }
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1048576.0 * 10.0).round() / 10.0
}
