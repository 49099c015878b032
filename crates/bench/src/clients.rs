//! `codex-gate-bench clients`: the gateway's own HTTP/1.1 upstream client against hyper's client
//! connection API and hyper-util's pooled client, on the same mock: memory per open stream and
//! CPU per small request. Each client runs in a process of its own, so its numbers are its own.

use crate::bodies;
use crate::procs::{self, Proc};
use anyhow::{bail, Context};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use std::path::Path;
use std::time::Duration;

/// The clients compared.
pub const KINDS: [&str; 3] = ["gate", "hyper-conn", "hyper-pooled"];

/// What one client measured.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    pub kind: String,
    pub streams: usize,
    pub rss_per_stream_kb: f64,
    pub requests: usize,
    pub cpu_us_per_request: f64,
}

/// Run every client against one mock with `streams` held open and `requests` small requests.
pub async fn compare(streams: usize, requests: usize, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let addr = procs::free_addr()?;
    // Streams that last a minute: all of them are open while memory is read.
    let args = ["mock", &addr, "--deltas", "600", "--delay-ms", "100"].map(String::from);
    let _mock = Proc::spawn_self("mock", &addr, &args, &out.join("clients-mock.log"))?;
    let exe = std::env::current_exe()?;
    let mut probes = Vec::new();
    for kind in KINDS {
        let o = std::process::Command::new(&exe)
            .args(["client-probe", kind, &addr, &streams.to_string(), &requests.to_string()])
            .output()
            .with_context(|| format!("running the {kind} probe"))?;
        if !o.status.success() {
            bail!("the {kind} probe failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        let p: Probe = serde_json::from_slice(&o.stdout).context("probe output")?;
        eprintln!(
            "  {:<13} {:>6.1} KB per open stream ({} streams), {:>5.1} µs CPU per request ({} requests)",
            p.kind, p.rss_per_stream_kb, p.streams, p.cpu_us_per_request, p.requests
        );
        probes.push(p);
    }
    std::fs::write(out.join("clients.json"), serde_json::to_vec_pretty(&probes)?)?;
    Ok(())
}

type Held = Box<dyn std::any::Any + Send>;

/// One client, in this process: hold `streams` open, then send `requests` small ones.
pub async fn probe(kind: &str, addr: &str, streams: usize, requests: usize) -> anyhow::Result<()> {
    let base = format!("http://{addr}/v1");
    let stream_body = Bytes::from(bodies::responses_body(2_000));
    let small = Bytes::from(bodies::small_chat_body());
    let req = |path: &str, body: &Bytes| {
        Request::post(format!("{base}{path}")).header("content-type", "application/json").body(body.clone())
    };
    let client = Client::new(kind)?;
    // Warm up both paths so one-time allocations are not counted per stream.
    for _ in 0..50 {
        client.whole(req("/chat/completions", &small)?).await?;
    }
    let mut held: Vec<Held> = Vec::with_capacity(streams);
    let rss0 = procs::rss(std::process::id());
    for _ in 0..streams {
        held.push(client.open(req("/responses", &stream_body)?).await?);
    }
    // Let every stream's first deltas arrive and settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = procs::rss(std::process::id());
    drop(held);
    let cpu0 = procs::cpu_secs(std::process::id()).unwrap_or(0.0);
    let workers = 4;
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, small, base) = (client.clone(), small.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..requests / workers {
                let r = Request::post(format!("{base}/chat/completions"))
                    .header("content-type", "application/json")
                    .body(small.clone())?;
                client.whole(r).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let cpu = procs::cpu_secs(std::process::id()).unwrap_or(0.0) - cpu0;
    let done = requests / workers * workers;
    let p = Probe {
        kind: kind.to_owned(),
        streams,
        rss_per_stream_kb: rss1.saturating_sub(rss0) as f64 / 1024.0 / streams.max(1) as f64,
        requests: done,
        cpu_us_per_request: cpu / done.max(1) as f64 * 1e6,
    };
    println!("{}", serde_json::to_string(&p)?);
    Ok(())
}

/// The three clients behind one interface.
#[derive(Clone)]
enum Client {
    Gate(codex_gate::upstream::client::UpstreamClient),
    /// One `http1::SendRequest` per connection, reused through a small free list.
    Conn(std::sync::Arc<std::sync::Mutex<Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>>),
    Pooled(hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>),
}

impl Client {
    fn new(kind: &str) -> anyhow::Result<Client> {
        Ok(match kind {
            "gate" => Client::Gate(codex_gate::upstream::client::UpstreamClient::new(&[])),
            "hyper-conn" => Client::Conn(Default::default()),
            "hyper-pooled" => Client::Pooled(
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            ),
            _ => bail!("unknown client {kind}; one of {KINDS:?}"),
        })
    }

    /// A `SendRequest` of the free list, or a new connection.
    async fn conn(
        free: &std::sync::Mutex<Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>,
        uri: &http::Uri,
    ) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
        loop {
            let next = free.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop();
            let Some(mut s) = next else { break };
            if s.ready().await.is_ok() {
                return Ok(s);
            }
        }
        let addr = format!("{}:{}", uri.host().unwrap_or_default(), uri.port_u16().unwrap_or(80));
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// Send and read the head and the first frame; the rest of the answer is held.
    async fn open(&self, req: Request<Bytes>) -> anyhow::Result<Held> {
        match self {
            Client::Gate(c) => {
                let mut body = c.request(req).await?.into_body();
                body.frame().await;
                Ok(Box::new(body))
            }
            Client::Conn(free) => {
                let mut send = Self::conn(free, req.uri()).await?;
                let mut body = send.send_request(req.map(Full::new)).await?.into_body();
                body.frame().await;
                Ok(Box::new((send, body)))
            }
            Client::Pooled(c) => {
                let mut body = c.request(req.map(Full::new)).await?.into_body();
                body.frame().await;
                Ok(Box::new(body))
            }
        }
    }

    /// Send and read the whole answer (the connection is kept for the next request).
    async fn whole(&self, req: Request<Bytes>) -> anyhow::Result<()> {
        match self {
            Client::Gate(c) => {
                c.request(req).await?.into_body().collect().await?;
            }
            Client::Conn(free) => {
                let mut send = Self::conn(free, req.uri()).await?;
                send.send_request(req.map(Full::new)).await?.into_body().collect().await?;
                free.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(send);
            }
            Client::Pooled(c) => {
                c.request(req.map(Full::new)).await?.into_body().collect().await?;
            }
        }
        Ok(())
    }
}
