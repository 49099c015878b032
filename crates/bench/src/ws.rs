//! The WebSocket benchmark (`codex-gate-bench ws`): Codex-shaped sessions of N turns with a
//! growing history (a ~40 KB first request — base instructions and tools — then each turn adds
//! the user's message and the model's answer), sent six ways: straight to the mock over HTTP;
//! through codex-gate to a Responses provider over HTTP (the whole history every turn) and over
//! codex-gate's Responses WebSocket (`previous_response_id` and only the new items), once with a
//! provider that has no WebSocket (HTTP upstream) and once with one that has (the gateway's own
//! socket carries only the new items upstream too); and to a pool account (the mock ChatGPT
//! backend) over HTTP and over WebSocket. Per turn: bytes the client sent,
//! bytes the upstream received (the mock runs in this process and records them), time to the
//! first text delta, and codex-gate's CPU. Bytes on the client's wire are counted too, both
//! ways: the WebSocket client offers permessage-deflate as Codex does. Writes OUT/ws.json.

use crate::procs::{self, Proc};
use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::SinkExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context as Cx, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use yawc::frame::{Frame, OpCode};

#[derive(Default, Clone)]
struct Turn {
    sent: usize,
    upstream: usize,
    ttft_ms: f64,
    /// Bytes on the client's connection, out and in (headers, framing, compression included).
    wire_up: usize,
    wire_down: usize,
}

/// A client connection that counts the bytes it writes and reads.
struct Counted {
    tcp: tokio::net::TcpStream,
    up: Arc<AtomicUsize>,
    down: Arc<AtomicUsize>,
}

#[derive(Clone, Default)]
struct Meter {
    up: Arc<AtomicUsize>,
    down: Arc<AtomicUsize>,
}

impl Meter {
    async fn connect(&self, addr: &str) -> anyhow::Result<Counted> {
        let tcp = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        tcp.set_nodelay(true)?;
        Ok(Counted { tcp, up: self.up.clone(), down: self.down.clone() })
    }

    fn read(&self) -> (usize, usize) {
        (self.up.load(Relaxed), self.down.load(Relaxed))
    }
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Cx<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.tcp).poll_read(cx, buf);
        this.down.fetch_add(buf.filled().len() - before, Relaxed);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Cx<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            this.up.fetch_add(n, Relaxed);
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Cx<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Cx<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

fn base_input() -> Vec<Value> {
    // Codex's first request: a ~17 KB developer message and ~20 KB of tool definitions' worth.
    let developer = "You are a coding agent. ".repeat(720);
    let context = "<environment_context>cwd, shell, sandbox</environment_context> ".repeat(300);
    vec![
        json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": developer}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": context}]}),
    ]
}

fn user(turn: usize) -> Value {
    let text = format!("turn {turn}: change the parser so that it accepts the new syntax, then run the tests");
    json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
}

fn body(model: &str, input: &[Value]) -> Value {
    json!({"model": model, "stream": true, "input": input, "tools": [], "tool_choice": "auto",
           "parallel_tool_calls": true, "store": false, "prompt_cache_key": "bench-session"})
}

/// One streamed HTTP turn: the time to the first delta, and the output items of the answer.
type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>;

async fn http_turn(send: &mut Sender, addr: &str, path: &str, payload: Bytes) -> anyhow::Result<(f64, Vec<Value>)> {
    send.ready().await?;
    let t = Instant::now();
    let req = http::Request::post(path)
        .header(http::header::HOST, addr)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(payload))?;
    let resp = send.send_request(req).await?;
    if !resp.status().is_success() {
        bail!("{path}: {}", resp.status());
    }
    let mut body = resp.into_body();
    let (mut ttft, mut all) = (None, Vec::new());
    while let Some(f) = body.frame().await {
        if let Ok(d) = f?.into_data() {
            if ttft.is_none() && memchr::memmem::find(&d, b"output_text.delta").is_some() {
                ttft = Some(t.elapsed().as_secs_f64() * 1e3);
            }
            all.extend_from_slice(&d);
        }
    }
    Ok((ttft.unwrap_or(f64::NAN), output_items(&String::from_utf8_lossy(&all))))
}

fn output_items(sse: &str) -> Vec<Value> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| e["item"].clone())
        .collect()
}

async fn http_session(addr: &str, path: &str, model: &str, turns: usize, out: &mut Vec<Turn>) -> anyhow::Result<()> {
    // One connection for the session, as Codex keeps one.
    let meter = Meter::default();
    let io = hyper_util::rt::TokioIo::new(meter.connect(addr).await?);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let mut input = base_input();
    for i in 0..turns {
        input.push(user(i));
        let payload = Bytes::from(body(model, &input).to_string());
        let sent = payload.len();
        let (up0, down0) = meter.read();
        let (ttft_ms, output) = http_turn(&mut send, addr, path, payload).await?;
        let (up1, down1) = meter.read();
        input.extend(output);
        out.push(Turn { sent, ttft_ms, wire_up: up1 - up0, wire_down: down1 - down0, ..Default::default() });
    }
    Ok(())
}

type Ws = yawc::WebSocket<Counted>;

/// A client WebSocket to the gateway, offering permessage-deflate (keeping its context, as
/// Codex's does) or not.
async fn ws_open(addr: &str, deflate: bool) -> anyhow::Result<(Ws, Meter)> {
    let meter = Meter::default();
    let url = format!("ws://{addr}/v1/responses").parse()?;
    let mut options = yawc::Options::default().with_max_payload_read(64 << 20);
    if deflate {
        options = options.with_balanced_compression();
    }
    Ok((yawc::WebSocket::handshake(url, meter.connect(addr).await?, options).await?, meter))
}

/// One turn: the time to the first delta and the response's id.
async fn ws_turn(ws: &mut Ws, text: String) -> anyhow::Result<(Option<f64>, Option<String>)> {
    let t = Instant::now();
    ws.send(Frame::text(text)).await?;
    let mut ttft = None;
    loop {
        let msg = ws.next_frame().await.context("the gateway closed the WebSocket")?;
        match msg.opcode() {
            OpCode::Text => {}
            OpCode::Close => bail!("the gateway closed the WebSocket"),
            _ => continue,
        }
        let s = std::str::from_utf8(msg.payload())?;
        if ttft.is_none() && s.contains("output_text.delta") {
            ttft = Some(t.elapsed().as_secs_f64() * 1e3);
        }
        if s.contains("\"response.completed\"") {
            let v: Value = serde_json::from_str(s)?;
            return Ok((ttft, v.pointer("/response/id").and_then(Value::as_str).map(str::to_owned)));
        }
        if s.contains("\"type\":\"error\"") {
            bail!("the turn failed: {s}");
        }
    }
}

async fn ws_session(addr: &str, model: &str, turns: usize, out: &mut Vec<Turn>) -> anyhow::Result<()> {
    let (mut ws, meter) = ws_open(addr, true).await?;
    let mut previous: Option<String> = None;
    for i in 0..turns {
        let items = if i == 0 {
            let mut b = base_input();
            b.push(user(0));
            b
        } else {
            vec![user(i)]
        };
        let mut frame = body(model, &items);
        frame["type"] = json!("response.create");
        if let Some(p) = &previous {
            frame["previous_response_id"] = json!(p);
        }
        let text = frame.to_string();
        let sent = text.len();
        let (up0, down0) = meter.read();
        let (ttft, id) = ws_turn(&mut ws, text).await.with_context(|| format!("turn {i}"))?;
        previous = id;
        let (up1, down1) = meter.read();
        let (wire_up, wire_down) = (up1 - up0, down1 - down0);
        out.push(Turn { sent, ttft_ms: ttft.unwrap_or(f64::NAN), wire_up, wire_down, ..Default::default() });
    }
    Ok(())
}

/// The gateway's memory per open, idle WebSocket session (one pool turn done, so its socket to
/// the backend is open too), without compression and with it: KB of RSS per connection.
async fn idle_cost(addr: &str, gate_pid: u32, n: usize) -> anyhow::Result<Value> {
    let mut open = Vec::new();
    let mut per = Vec::new();
    for deflate in [false, true] {
        let rss0 = procs::rss(gate_pid);
        for _ in 0..n {
            let (mut ws, _) = ws_open(addr, deflate).await?;
            let mut frame = body("pool/gpt-5.5", &[user(0)]);
            frame["type"] = json!("response.create");
            ws_turn(&mut ws, frame.to_string()).await?;
            open.push(ws);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        per.push((procs::rss(gate_pid) as f64 - rss0 as f64) / n as f64 / 1e3);
    }
    println!(
        "idle sessions ({n} each): {:.1} KB per connection plain, {:.1} KB with permessage-deflate",
        per[0], per[1]
    );
    drop(open);
    Ok(json!({"connections": n, "plain_kb_per_connection": per[0], "deflate_kb_per_connection": per[1]}))
}

fn summary(name: &str, turns: &[Turn], per_session: usize, cpu: Option<f64>) -> Value {
    let n = turns.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Turn) -> f64| turns.iter().map(f).sum::<f64>() / n;
    let at = |k: usize| {
        let v: Vec<&Turn> = turns.iter().skip(k).step_by(per_session).collect();
        let m = v.len().max(1) as f64;
        json!({"turn": k + 1, "sent_kb": v.iter().map(|t| t.sent as f64).sum::<f64>() / m / 1e3,
               "upstream_kb": v.iter().map(|t| t.upstream as f64).sum::<f64>() / m / 1e3,
               "ttft_ms": v.iter().map(|t| t.ttft_ms).sum::<f64>() / m})
    };
    json!({"mode": name, "turns": turns.len(),
           "sent_kb_per_turn": mean(&|t| t.sent as f64) / 1e3,
           "upstream_kb_per_turn": mean(&|t| t.upstream as f64) / 1e3,
           "wire_up_kb_per_turn": mean(&|t| t.wire_up as f64) / 1e3,
           "wire_down_kb_per_turn": mean(&|t| t.wire_down as f64) / 1e3,
           "ttft_ms_mean": mean(&|t| t.ttft_ms),
           "gate_cpu_ms_per_turn": cpu.map(|c| c * 1e3 / n),
           "by_turn": [at(0), at(per_session / 2), at(per_session - 1)]})
}

/// The modes measured: name, model, over WebSocket, the provider offers WebSocket.
const MODES: [(&str, &str, bool, bool); 6] = [
    ("direct HTTP", "ok", false, false),
    ("codex-gate HTTP", "resp/ok", false, false),
    // Before the provider without WebSocket: the gateway remembers a refused upgrade.
    ("provider WebSocket", "resp/ok", true, true),
    ("codex-gate WebSocket", "resp/ok", true, false),
    ("pool HTTP", "pool/gpt-5.5", false, false),
    ("pool WebSocket", "pool/gpt-5.5", true, false),
];

/// Puts one mock ChatGPT account into the gateway's store with `accounts import`, as a user would.
fn import_account(mock: &codex_gate_mock::MockUpstream, config: &Path, out: &Path) -> anyhow::Result<()> {
    let (access, refresh) = mock.add_chatgpt_account("acc-bench", false);
    let id = codex_gate_mock::chatgpt::id_token("user-bench", "acc-bench", "bench@example.com", "pro");
    let auth = json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null, "last_refresh": "2026-12-01T00:00:00Z",
                      "tokens": {"id_token": id, "access_token": access, "refresh_token": refresh,
                                 "account_id": "acc-bench"}});
    let file = out.join("ws-bench-auth.json");
    std::fs::write(&file, auth.to_string())?;
    let exe = std::env::current_exe().context("cannot find the benchmark's own executable")?;
    let o = std::process::Command::new(exe)
        .args(["gate", "--config"])
        .arg(config)
        .args(["accounts", "import"])
        .arg(&file)
        .output()
        .context("cannot run `accounts import`")?;
    if !o.status.success() {
        bail!("accounts import failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

pub async fn run(sessions: usize, turns: usize, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let opts = codex_gate_mock::MockOptions { deltas: 50, delta_bytes: 16, record: 100_000, ..Default::default() };
    let mock = codex_gate_mock::MockUpstream::start(opts).await?;
    let addr = procs::free_addr()?;
    let db = out.join("ws-bench.db");
    let _ = std::fs::remove_file(&db);
    let config = format!(
        "[server]\nlisten = \"{addr}\"\n[store]\nurl = \"sqlite://{}\"\n[pool]\nkey_file = \"{}\"\nissuer = \"{}\"\n\
         [egress]\nenv_proxy = false\n\
         [[providers]]\nname = \"resp\"\nkind = \"responses\"\nbase_url = \"{}\"\napi_key = \"sk-bench\"\n\
         [[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n",
        db.display(),
        out.join("ws-bench.key").display(),
        mock.issuer_url(),
        mock.url(),
        mock.backend_url()
    );
    let config_path = out.join("ws-bench.toml");
    std::fs::write(&config_path, config)?;
    import_account(&mock, &config_path, out)?;
    let gate = Proc::spawn_gate("codex-gate", &addr, &config_path, &out.join("ws-gate.log"))?;
    let mock_addr = mock.addr().to_string();
    let mut results = Vec::new();
    for (mode, model, ws, offered) in MODES {
        mock.set_api_websocket(offered);
        let mut all = Vec::new();
        let cpu0 = gate.cpu_secs();
        let before = mock.requests().len();
        let t = Instant::now();
        for _ in 0..sessions {
            let mut turns_of = Vec::new();
            let target = if mode == "direct HTTP" { &mock_addr } else { &addr };
            if ws {
                ws_session(target, model, turns, &mut turns_of).await?;
            } else {
                http_session(target, "/v1/responses", model, turns, &mut turns_of).await?;
            }
            all.extend(turns_of);
        }
        let wall = t.elapsed();
        // What the upstream received for each turn, in order (the pool's usage and catalog
        // calls are not turns).
        let reqs = mock.requests();
        let upstream_turns = reqs.iter().skip(before).filter(|r| r.method != "GET" && r.path.ends_with("/responses"));
        for (turn, req) in all.iter_mut().zip(upstream_turns) {
            turn.upstream = req.body.len();
        }
        let cpu = (mode != "direct HTTP").then(|| gate.cpu_secs() - cpu0);
        let s = summary(mode, &all, turns, cpu);
        println!(
            "{mode:<22} sent {:>6.1} KB/turn  upstream {:>6.1} KB/turn  client wire {:>6.1} up {:>6.1} down KB/turn  TTFT {:>5.2} ms  gateway CPU {} ms/turn  ({:.1} s)",
            s["sent_kb_per_turn"].as_f64().unwrap_or(0.0),
            s["upstream_kb_per_turn"].as_f64().unwrap_or(0.0),
            s["wire_up_kb_per_turn"].as_f64().unwrap_or(0.0),
            s["wire_down_kb_per_turn"].as_f64().unwrap_or(0.0),
            s["ttft_ms_mean"].as_f64().unwrap_or(0.0),
            s["gate_cpu_ms_per_turn"].as_f64().map_or("–".into(), |c| format!("{c:.3}")),
            wall.as_secs_f64()
        );
        results.push(s);
    }
    let idle = idle_cost(&addr, gate.pid(), 200).await?;
    drop(gate);
    let doc = json!({"date": codex_gate::now_ms(), "machine": procs::machine(), "sessions": sessions,
                     "turns_per_session": turns, "results": results, "idle": idle});
    std::fs::write(out.join("ws.json"), serde_json::to_vec_pretty(&doc)?)?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
