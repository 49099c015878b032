//! The scenarios (a–k) and how each is run: start the mock with the scenario's answer shape, a
//! bare relay and codex-gate in front of it, then measure every target in alternating rounds.

use crate::bodies;
use crate::load::{self, Spec, Tally};
use crate::procs::{self, Proc};
use crate::report::{Agreement, Pcts, ScenarioResult, TargetResult};
use anyhow::Context;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use memchr::memmem::Finder;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Api {
    Responses,
    Chat,
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::Responses => "/responses",
            Api::Chat => "/chat/completions",
        }
    }
    fn kind(self) -> &'static str {
        match self {
            Api::Responses => "responses",
            Api::Chat => "chat",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// Connections sending back to back.
    Closed { connections: usize },
    /// Connections sending `rate` requests per second in total.
    Paced { connections: usize, rate: f64 },
    /// Streams held open together.
    Hold { streams: usize },
}

#[derive(Debug, Clone, Copy)]
pub enum BodyShape {
    SmallChat,
    Responses(usize),
    Chat(usize),
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub id: &'static str,
    pub title: &'static str,
    /// The API the client speaks (and the one the mock answers directly / through the bare relay).
    pub client: Api,
    /// The API codex-gate's provider speaks (different from `client`: translation).
    pub upstream: Api,
    pub body: BodyShape,
    pub deltas: usize,
    pub delta_bytes: usize,
    pub delay_ms: u64,
    pub ttft_ms: u64,
    pub load: Load,
    /// codex-gate's requests carry a client key with rpm, tpm and budget limits.
    pub keyed: bool,
    /// Also measure codex-gate's subscription pool (a second instance) over this many of the
    /// mock's open ChatGPT accounts, and pooling peers the same way (0: not measured).
    pub pool_accounts: usize,
    /// The mock serves HTTPS (a test CA codex-gate trusts through `[egress] ca_file`).
    pub tls: bool,
    /// codex-gate runs with `[cluster]` on Redis and a PostgreSQL store
    /// (`CODEX_GATE_BENCH_REDIS_URL`, `CODEX_GATE_BENCH_PG_URL`); only when asked for by id.
    pub cluster: bool,
}

/// Run lengths.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub round: Duration,
    pub rounds: usize,
    pub warmup: Duration,
    /// Hold scenario: ramp to open all streams, then the measuring window.
    pub ramp: Duration,
    pub window: Duration,
}

/// The scenarios; `smoke` shrinks counts so the whole set runs in seconds.
pub fn all(smoke: bool) -> Vec<Scenario> {
    let s = |full: usize, small: usize| if smoke { small } else { full };
    let base = Scenario {
        id: "",
        title: "",
        client: Api::Responses,
        upstream: Api::Responses,
        body: BodyShape::Responses(40_000),
        deltas: 200,
        delta_bytes: 16,
        delay_ms: 0,
        ttft_ms: 0,
        load: Load::Closed { connections: s(16, 2) },
        keyed: false,
        pool_accounts: 0,
        tls: false,
        cluster: false,
    };
    vec![
        Scenario {
            id: "a",
            title: "non-streaming chat, small body",
            client: Api::Chat,
            upstream: Api::Chat,
            body: BodyShape::SmallChat,
            deltas: 5,
            ..base.clone()
        },
        Scenario {
            id: "h",
            title: "scenario a with a client key (rpm, tpm and budget limits) on every request",
            client: Api::Chat,
            upstream: Api::Chat,
            body: BodyShape::SmallChat,
            deltas: 5,
            keyed: true,
            ..base.clone()
        },
        Scenario {
            id: "i",
            title: "scenario h with [cluster] on Redis and a PostgreSQL store (only when asked for: --scenario i)",
            client: Api::Chat,
            upstream: Api::Chat,
            body: BodyShape::SmallChat,
            deltas: 5,
            keyed: true,
            cluster: true,
            ..base.clone()
        },
        Scenario {
            id: "b",
            title:
                "streaming /v1/responses passthrough, 40 KB Codex body, 200 deltas (and through a pool of 10 accounts)",
            pool_accounts: s(10, 2),
            ..base.clone()
        },
        Scenario {
            id: "c",
            title: "Responses in → Chat upstream (translated), 40 KB body, 200 deltas",
            upstream: Api::Chat,
            ..base.clone()
        },
        Scenario {
            id: "d",
            title: "Chat in → Responses upstream (translated), 40 KB body, 200 deltas",
            client: Api::Chat,
            upstream: Api::Responses,
            body: BodyShape::Chat(40_000),
            ..base.clone()
        },
        Scenario {
            id: "e",
            title: "400 KB Codex bodies, streaming /v1/responses passthrough, 200 deltas",
            body: BodyShape::Responses(400_000),
            load: Load::Closed { connections: s(8, 2) },
            ..base.clone()
        },
        Scenario {
            id: "f",
            title: "2,000 concurrent slow streams (1 delta/s), 40 KB bodies",
            deltas: s(25, 4),
            delay_ms: s(1000, 300) as u64,
            load: Load::Hold { streams: s(2000, 20) },
            ..base.clone()
        },
        Scenario {
            id: "g",
            title: "light load (20 req/s), mock time to first token 50 ms, 40 KB body, 20 deltas",
            deltas: 20,
            ttft_ms: 50,
            load: Load::Paced { connections: s(4, 2), rate: s(20, 10) as f64 },
            ..base.clone()
        },
        Scenario {
            id: "j",
            title: "scenario g over TLS: the mock serves HTTPS with a test CA's certificate",
            deltas: 20,
            ttft_ms: 50,
            load: Load::Paced { connections: s(4, 2), rate: s(20, 10) as f64 },
            tls: true,
            ..base.clone()
        },
        Scenario {
            id: "k",
            title: "Codex turns over TLS: one client connection, one streamed turn (40 KB, 200 deltas) after another",
            load: Load::Closed { connections: 1 },
            tls: true,
            ..base
        },
    ]
}

/// Where a scenario sends its requests.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub name: String,
    /// Base URL ending in `/v1` (or wherever `/responses` lives).
    pub url: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A process whose CPU and memory are measured (the bare relay, codex-gate, or `pid=`).
    pub pid: Option<u32>,
    /// An `https://` URL is reached with this client config (the TLS mock, directly).
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

fn spec(sc: &Scenario, t: &Target, body: &Bytes) -> anyhow::Result<Spec> {
    let u: http::Uri = format!("{}{}", t.url.trim_end_matches('/'), sc.client.path()).parse()?;
    let addr = u.authority().map(|a| a.to_string()).context("target URL has no host")?;
    let stream = !matches!(sc.body, BodyShape::SmallChat);
    let expect: &[u8] = match (sc.client, stream) {
        (Api::Chat, true) => b"[DONE]",
        (Api::Chat, false) => b"\"chat.completion\"",
        (Api::Responses, _) => b"response.completed",
    };
    let mut headers = t.headers.clone();
    if sc.client == Api::Responses {
        // What Codex sends with every turn (codex-protocol §2.2).
        for (k, v) in [
            ("originator", "codex_cli_rs"),
            ("user-agent", "codex_cli_rs/0.169.0 (Linux 6.1; x86_64) bench"),
            ("session_id", "0199a6a1-5b1c-7e52-bench-000000000001"),
            ("accept", "text/event-stream"),
        ] {
            headers.push((HeaderName::from_static(k), HeaderValue::from_static(v)));
        }
    }
    Ok(Spec {
        addr,
        path: u.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        body: body.clone(),
        headers,
        expect: Finder::new(expect).into_owned(),
        tls: t.tls.clone(),
    })
}

/// Send scenario `id`'s requests to `url` for `duration` and print the outcome (no processes
/// are started: the mock and the gateway under test are already running).
pub async fn load_only(url: &str, id: &str, duration: Duration, connections: usize) -> anyhow::Result<()> {
    let sc = all(false).into_iter().find(|s| s.id == id).with_context(|| format!("no scenario {id:?}"))?;
    let t = Target { name: "target".into(), url: url.into(), ..Target::default() };
    let body = Bytes::from(body_for(&sc));
    let (mut tally, elapsed) = load::run(Arc::new(spec(&sc, &t, &body)?), connections, duration, None).await;
    let p = pcts(&mut tally.total_us);
    println!(
        "{} ok, {} errors in {:.2} s: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms{}",
        tally.ok,
        tally.errors,
        elapsed.as_secs_f64(),
        tally.ok as f64 / elapsed.as_secs_f64(),
        p.p50,
        p.p99,
        tally.first_error.map(|e| format!("; first error: {e}")).unwrap_or_default()
    );
    Ok(())
}

fn body_for(sc: &Scenario) -> Vec<u8> {
    match sc.body {
        BodyShape::SmallChat => bodies::small_chat_body(),
        BodyShape::Responses(n) => bodies::responses_body(n),
        BodyShape::Chat(n) => bodies::chat_body(n),
    }
}

/// The scenario's mock: its process, and how to read its counters.
struct Mock {
    proc: Proc,
    addr: String,
    /// The client config of an HTTPS mock.
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    stats: tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>>>,
}

impl Mock {
    fn cpu_secs(&self) -> f64 {
        self.proc.cpu_secs()
    }

    /// TLS handshakes the HTTPS mock has completed (`None` for a plain one), read over one
    /// connection kept for the scenario, so reading adds none.
    async fn handshakes(&self) -> Option<u64> {
        use http_body_util::BodyExt;
        let tls = self.tls.as_ref()?;
        let mut conn = self.stats.lock().await;
        if conn.is_none() {
            *conn = Some(load::connect_with(&self.addr, Some(tls)).await.ok()?);
        }
        let send = conn.as_mut()?;
        send.ready().await.ok()?;
        let req = http::Request::get("/mock/stats")
            .header(http::header::HOST, &self.addr)
            .body(http_body_util::Full::new(Bytes::new()))
            .ok()?;
        let body = send.send_request(req).await.ok()?.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice::<serde_json::Value>(&body).ok()?["tls_handshakes"].as_u64()
    }
}

/// Samples a process's RSS every 50 ms until stopped; yields the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: Option<u32>) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let task = tokio::spawn(async move {
            while let Some(pid) = pid.filter(|_| !s.load(Ordering::Relaxed)) {
                p.fetch_max(procs::rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        RssSampler { stop, peak, task }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// One target's measurements summed over its rounds.
#[derive(Default)]
struct Acc {
    tally: Tally,
    secs: f64,
    cpu: f64,
    mock_cpu: f64,
    rss_peak: u64,
    round_rps: Vec<f64>,
    /// TLS handshakes the mock saw during the rounds (an HTTPS mock).
    handshakes: Option<u64>,
}

fn mb(b: u64) -> f64 {
    (b as f64 / 1048576.0 * 10.0).round() / 10.0
}

fn pcts(v: &mut [u32]) -> Pcts {
    let mean = if v.is_empty() { 0.0 } else { v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64 / 1000.0 };
    v.sort_unstable();
    Pcts {
        p50: load::percentile_ms(v, 50.0),
        p90: load::percentile_ms(v, 90.0),
        p99: load::percentile_ms(v, 99.0),
        mean,
    }
}

/// The gateway's own overhead histogram: (sum seconds, count) over all series.
async fn gate_overhead(url: &str) -> Option<(f64, f64)> {
    let base = url.trim_end_matches("/v1");
    let text = crate::http_get(&format!("{base}/metrics")).await.ok()?;
    let (mut sum, mut count) = (0.0, 0.0);
    for line in text.lines() {
        let value = || line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        if line.starts_with("codex_gate_overhead_seconds_sum") {
            sum += value();
        } else if line.starts_with("codex_gate_overhead_seconds_count") {
            count += value();
        }
    }
    Some((sum, count))
}

pub struct Env<'a> {
    pub out: &'a Path,
    pub mock_addr: &'a str,
    pub timing: Timing,
    pub external: &'a [Target],
}

/// Start the mock, the bare relay and codex-gate for `sc`, measure every target, stop them.
pub async fn run(sc: &Scenario, env: &Env<'_>) -> anyhow::Result<ScenarioResult> {
    let logs = env.out.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mock_addr = if env.mock_addr.ends_with(":0") { procs::free_addr()? } else { env.mock_addr.to_owned() };
    let num = |n: u64| n.to_string();
    let work = env.out.join("work");
    std::fs::create_dir_all(&work)?;
    // A TLS scenario's mock serves HTTPS with a certificate of a CA made for this run.
    let pki = if sc.tls { Some(crate::tls::Pki::create(&work.join("pki"))?) } else { None };
    let mut args: Vec<String> = vec![
        "mock".into(),
        mock_addr.clone(),
        "--deltas".into(),
        num(sc.deltas as u64),
        "--size".into(),
        num(sc.delta_bytes as u64),
        "--delay-ms".into(),
        num(sc.delay_ms),
        "--ttft-ms".into(),
        num(sc.ttft_ms),
        "--open-accounts".into(),
        num(sc.pool_accounts as u64),
    ];
    if let Some(p) = &pki {
        let path = |p: &Path| p.display().to_string();
        args.extend(["--tls-cert".into(), path(&p.cert_pem), "--tls-key".into(), path(&p.key_pem)]);
    }
    let mock = Mock {
        proc: Proc::spawn_self("mock upstream", &mock_addr, &args, &logs.join(format!("{}-mock.log", sc.id)))?,
        addr: mock_addr.clone(),
        tls: pki.as_ref().map(|p| p.client(&[b"http/1.1"])).transpose()?,
        stats: Default::default(),
    };
    let scheme = if sc.tls { "https" } else { "http" };
    let mock_url = format!("{scheme}://{mock_addr}/v1");
    let relay_addr = procs::free_addr()?;
    let mut args = vec!["relay".into(), relay_addr.clone(), format!("{scheme}://{mock_addr}")];
    if let Some(p) = &pki {
        args.extend(["--ca-file".into(), p.ca_pem.display().to_string()]);
    }
    let relay = Proc::spawn_self("bare relay", &relay_addr, &args, &logs.join(format!("{}-relay.log", sc.id)))?;
    let gate_addr = procs::free_addr()?;
    let store_url = if sc.cluster { fresh_pg_schema().await? } else { sqlite_url(&work, sc) };
    let ca_file = pki.as_ref().map(|p| p.ca_pem.as_path());
    let config = gate_config(sc, &gate_addr, &mock_url, &work, &store_url, ca_file);
    let config_path = work.join(format!("gate-{}.toml", sc.id));
    std::fs::write(&config_path, config)?;
    // A key whose limits are checked on every request but never reached.
    let key = if sc.keyed { Some(create_key(&store_url).await?) } else { None };
    let gate = Proc::spawn_gate("codex-gate", &gate_addr, &config_path, &logs.join(format!("{}-gate.log", sc.id)))?;
    let mut targets = vec![
        Target { name: "direct".into(), url: mock_url.clone(), tls: mock.tls.clone(), ..Target::default() },
        Target {
            name: "bare-relay".into(),
            url: format!("http://{relay_addr}/v1"),
            pid: Some(relay.pid()),
            ..Target::default()
        },
        Target {
            name: "codex-gate".into(),
            url: format!("http://{gate_addr}/v1"),
            headers: key
                .iter()
                .map(|k| Ok((http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {k}"))?)))
                .collect::<anyhow::Result<_>>()?,
            pid: Some(gate.pid()),
            ..Target::default()
        },
    ];
    // codex-gate's pool: its own instance, so its CPU and memory are its own.
    let pool_gate = if sc.pool_accounts > 0 {
        let addr = procs::free_addr()?;
        let store_url = format!("sqlite://{}", work.join(format!("gate-{}-pool.db", sc.id)).display());
        let key_file = work.join("encryption-pool.key");
        crate::pool::fill_store(&store_url, &key_file, sc.pool_accounts).await?;
        let path = work.join(format!("gate-{}-pool.toml", sc.id));
        std::fs::write(&path, pool_gate_config(&addr, &mock_addr, &store_url, &key_file))?;
        let p = Proc::spawn_gate("codex-gate (pool)", &addr, &path, &logs.join(format!("{}-gate-pool.log", sc.id)))?;
        targets.push(Target {
            name: "codex-gate-pool".into(),
            url: format!("http://{addr}/v1"),
            pid: Some(p.pid()),
            ..Target::default()
        });
        Some(p)
    } else {
        None
    };
    targets.extend(env.external.iter().cloned());
    // Idle: right after start, before any request.
    let idle: Vec<Option<u64>> = targets.iter().map(|t| t.pid.map(procs::rss)).collect();
    let body = Bytes::from(body_for(sc));
    let mut results = match sc.load {
        Load::Hold { streams } => hold_all(sc, env, &targets, &body, streams, &mock).await?,
        Load::Closed { connections } => rounds(sc, env, &targets, &body, connections, None, &mock).await?,
        Load::Paced { connections, rate } => rounds(sc, env, &targets, &body, connections, Some(rate), &mock).await?,
    };
    for (r, idle) in results.iter_mut().zip(idle) {
        r.rss_idle_mb = idle.map(mb);
    }
    let agreement = agreement(&results);
    let _ = std::fs::remove_dir_all(&work);
    drop((pool_gate, gate, relay, mock));
    Ok(ScenarioResult::new(sc, results, agreement))
}

fn sqlite_url(work: &Path, sc: &Scenario) -> String {
    format!("sqlite://{}", work.join(format!("gate-{}.db", sc.id)).display())
}

/// A new schema in the benchmark's PostgreSQL database; its URL (the schema as search path).
async fn fresh_pg_schema() -> anyhow::Result<String> {
    let base =
        std::env::var("CODEX_GATE_BENCH_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    fresh_pg_schema_at(&base).await
}

/// A new schema in the PostgreSQL database at `base`; its URL (the schema as search path).
pub async fn fresh_pg_schema_at(base: &str) -> anyhow::Result<String> {
    let schema = format!("bench_{:016x}", rand::random::<u64>());
    let admin = sqlx::PgPool::connect(base).await.with_context(|| format!("PostgreSQL at {base}"))?;
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await?;
    admin.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

/// Drop the schema a [`fresh_pg_schema_at`] URL names, with its rows.
pub async fn drop_pg_schema(url: &str) -> anyhow::Result<()> {
    let (base, schema) = url.rsplit_once("search_path%3D").context("not a bench schema URL")?;
    let base = base.trim_end_matches("options=-c%20").trim_end_matches(['?', '&']);
    let admin = sqlx::PgPool::connect(base).await?;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin).await?;
    admin.close().await;
    Ok(())
}

/// A client key in the store at `url`, with limits far above what the load reaches.
async fn create_key(url: &str) -> anyhow::Result<String> {
    let store = codex_gate::store::Store::open(url).await?;
    let spec = serde_json::json!({"name": "bench", "rpm": 100_000_000u64, "tpm": 100_000_000_000u64,
                                  "budget_usd": 1_000_000_000.0, "budget_period": "day"});
    let (key, _) = codex_gate::access::manage::create(&store, spec.as_object().context("spec")?).await?;
    store.close().await;
    Ok(key)
}

fn gate_config(sc: &Scenario, listen: &str, mock_url: &str, work: &Path, store_url: &str, ca: Option<&Path>) -> String {
    let egress = ca.map(|f| format!("[egress]\nca_file = \"{}\"\n\n", f.display())).unwrap_or_default();
    let cluster = if sc.cluster {
        let redis = std::env::var("CODEX_GATE_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        format!("[cluster]\nredis_url = \"{redis}\"\n\n")
    } else {
        String::new()
    };
    format!(
        "# codex-gate for benchmark scenario {id}: one provider (the mock), one route.\n\
         [server]\nlisten = \"{listen}\"\n\n[store]\nurl = \"{store_url}\"\n\n{cluster}{egress}\
         [pool]\nkey_file = \"{key}\"\nusage_poll_secs = 0\n\n\
         [[providers]]\nname = \"mock\"\nkind = \"{kind}\"\nbase_url = \"{mock_url}\"\n\n\
         [[routes]]\nmodel = \"{model}\"\ntargets = [\"mock/{model}\"]\n{prices}",
        id = sc.id,
        key = work.join("encryption.key").display(),
        kind = sc.upstream.kind(),
        model = bodies::MODEL,
        // Keyed requests are priced too (the budget reads their cost).
        prices = if sc.keyed {
            format!("\n[prices.\"{}\"]\ninput = 1.25\noutput = 10.0\n", bodies::MODEL)
        } else {
            String::new()
        },
    )
}

/// codex-gate in front of the mock's ChatGPT backend, `bench` routed to the pool.
fn pool_gate_config(listen: &str, mock_addr: &str, store_url: &str, key_file: &Path) -> String {
    format!(
        "# codex-gate's subscription pool for the benchmark: the mock's open accounts.\n\
         [server]\nlisten = \"{listen}\"\n\n[store]\nurl = \"{store_url}\"\n\n\
         [pool]\nkey_file = \"{key}\"\nusage_poll_secs = 0\nissuer = \"http://{mock_addr}\"\n\n\
         [[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"http://{mock_addr}/backend-api\"\n\n\
         [[routes]]\nmodel = \"{model}\"\ntargets = [\"pool/{model}\"]\n",
        key = key_file.display(),
        model = bodies::MODEL,
    )
}

/// Closed-loop or paced rounds, alternating targets: direct, bare relay, codex-gate, …
async fn rounds(
    sc: &Scenario,
    env: &Env<'_>,
    targets: &[Target],
    body: &Bytes,
    connections: usize,
    rate: Option<f64>,
    mock: &Mock,
) -> anyhow::Result<Vec<TargetResult>> {
    let specs: Vec<Arc<Spec>> = targets.iter().map(|t| spec(sc, t, body).map(Arc::new)).collect::<Result<_, _>>()?;
    for s in &specs {
        load::run(s.clone(), connections, env.timing.warmup, rate).await;
    }
    let before = gate_overhead(&targets[2].url).await;
    let mut acc: Vec<Acc> = targets.iter().map(|_| Acc::default()).collect();
    for round in 0..env.timing.rounds {
        for (i, t) in targets.iter().enumerate() {
            let cpu0 = t.pid.and_then(procs::cpu_secs);
            let mock0 = mock.cpu_secs();
            let hs0 = mock.handshakes().await;
            let sampler = RssSampler::start(t.pid);
            let (tally, elapsed) = load::run(specs[i].clone(), connections, env.timing.round, rate).await;
            let a = &mut acc[i];
            if let Some((h1, h0)) = mock.handshakes().await.zip(hs0) {
                *a.handshakes.get_or_insert(0) += h1.saturating_sub(h0);
            }
            a.rss_peak = a.rss_peak.max(sampler.finish().await);
            a.cpu += t.pid.and_then(procs::cpu_secs).zip(cpu0).map(|(c1, c0)| c1 - c0).unwrap_or(0.0);
            a.mock_cpu += mock.cpu_secs() - mock0;
            a.secs += elapsed.as_secs_f64();
            a.round_rps.push(tally.ok as f64 / elapsed.as_secs_f64().max(1e-9));
            eprintln!(
                "  {}: round {} {:<12} {:>9.0} req/s  {} errors",
                sc.id,
                round + 1,
                t.name,
                tally.ok as f64 / elapsed.as_secs_f64(),
                tally.errors
            );
            a.tally.merge(tally);
        }
    }
    let after = gate_overhead(&targets[2].url).await;
    let mut out: Vec<TargetResult> = targets.iter().zip(acc).map(|(t, a)| finish(t, a)).collect();
    if let (Some((s0, c0)), Some((s1, c1))) = (before, after) {
        if c1 > c0 {
            out[2].metrics_overhead_us = Some((s1 - s0) / (c1 - c0) * 1e6);
        }
    }
    Ok(out)
}

fn finish(t: &Target, mut a: Acc) -> TargetResult {
    let n = a.tally.ok.max(1) as f64;
    let mut hdr = std::mem::take(&mut a.tally.header_overhead_us);
    TargetResult {
        name: t.name.clone(),
        requests: a.tally.ok,
        errors: a.tally.errors,
        first_error: a.tally.first_error.take(),
        seconds: a.secs,
        rps: a.tally.ok as f64 / a.secs.max(1e-9),
        latency_ms: pcts(&mut a.tally.total_us),
        ttfb_ms: pcts(&mut a.tally.ttfb_us),
        cpu_s_per_1k: t.pid.map(|_| a.cpu / n * 1000.0),
        mock_cpu_s_per_1k: a.mock_cpu / n * 1000.0,
        rss_peak_mb: t.pid.map(|_| mb(a.rss_peak)),
        header_overhead_ms: (!hdr.is_empty()).then(|| pcts(&mut hdr)),
        round_rps: a.round_rps.iter().map(|r| r.round()).collect(),
        upstream_handshakes_per_100: a.handshakes.map(|h| h as f64 / n * 100.0),
        ..TargetResult::default()
    }
}

/// Scenario f: per target, warm up, then hold `streams` open and read CPU and memory while
/// they all are.
async fn hold_all(
    sc: &Scenario,
    env: &Env<'_>,
    targets: &[Target],
    body: &Bytes,
    streams: usize,
    mock: &Mock,
) -> anyhow::Result<Vec<TargetResult>> {
    let mut out = Vec::new();
    let stream_secs = sc.deltas as f64 * sc.delay_ms as f64 / 1000.0;
    for t in targets {
        let s = Arc::new(spec(sc, t, body)?);
        // Warm up on a quick answer path so one-time allocations are not counted per stream.
        load::run(s.clone(), 4, env.timing.warmup.min(Duration::from_millis(500)), None).await;
        let rss0 = t.pid.map(procs::rss);
        let mock0 = mock.cpu_secs();
        let h = load::hold(s, streams, env.timing.ramp);
        let deadline = tokio::time::Instant::now() + env.timing.ramp + Duration::from_secs_f64(stream_secs / 2.0);
        while h.open.load(Ordering::Relaxed) < streams && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let open = h.open.load(Ordering::Relaxed);
        let cpu0 = t.pid.and_then(procs::cpu_secs);
        let sampler = RssSampler::start(t.pid);
        tokio::time::sleep(env.timing.window).await;
        let peak = sampler.finish().await;
        let cpu = t.pid.and_then(procs::cpu_secs).zip(cpu0).map(|(c1, c0)| c1 - c0);
        let mut tally = h.task.await.context("hold task")?;
        let mock_cpu = mock.cpu_secs() - mock0;
        eprintln!("  {}: {:<12} {open} streams open, {} completed, {} errors", sc.id, t.name, tally.ok, tally.errors);
        let n = tally.ok.max(1) as f64;
        out.push(TargetResult {
            name: t.name.clone(),
            requests: tally.ok,
            errors: tally.errors,
            first_error: tally.first_error.take(),
            seconds: stream_secs,
            latency_ms: pcts(&mut tally.total_us),
            ttfb_ms: pcts(&mut tally.ttfb_us),
            mock_cpu_s_per_1k: mock_cpu / n * 1000.0,
            rss_peak_mb: t.pid.map(|_| mb(peak)),
            rss_per_stream_kb: rss0
                .filter(|_| open > 0)
                .map(|r0| (peak.saturating_sub(r0)) as f64 / 1024.0 / open as f64),
            open_streams: Some(open),
            cpu_percent: cpu.map(|c| c / env.timing.window.as_secs_f64() * 100.0),
            ..TargetResult::default()
        });
    }
    Ok(out)
}

/// How the gateway's own overhead numbers compare with what the harness saw.
fn agreement(results: &[TargetResult]) -> Option<Agreement> {
    let (direct, bare, gate) = (&results[0], &results[1], &results[2]);
    let header = gate.header_overhead_ms.as_ref()?;
    Some(Agreement {
        header_mean_us: header.mean * 1000.0,
        header_p99_us: header.p99 * 1000.0,
        metrics_mean_us: gate.metrics_overhead_us,
        ttfb_added_vs_bare_p50_us: (gate.ttfb_ms.p50 - bare.ttfb_ms.p50) * 1000.0,
        ttfb_added_vs_direct_p50_us: (gate.ttfb_ms.p50 - direct.ttfb_ms.p50) * 1000.0,
    })
}
