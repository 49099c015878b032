//! `codex-gate-bench`: Codex-shaped load sent to the mock upstream directly, through a bare
//! relay and through codex-gate (and any `--target`), measured side by side in one run.
//!
//! The mock, the relay and the gateway run as child processes of this same executable (hidden
//! subcommands), so each one's CPU time and memory are read from its own /proc entry; the load
//! generator runs in this process.

mod bodies;
mod chart;
mod clients;
mod curves;
mod dashboard;
mod load;
mod peers;
mod pool;
mod procs;
mod relay;
mod report;
mod scenarios;
mod soak;
mod tls;
mod ws;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use http::{HeaderName, HeaderValue};
use report::Run;
use scenarios::{Target, Timing};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Benchmark codex-gate against the direct upstream and a bare relay (and other gateways).
///
/// Every scenario starts a mock upstream, a bare relay and codex-gate, then measures each
/// target in alternating rounds. Results go to OUT/results.json, OUT/results.md and one
/// OUT/<scenario>.svg chart per scenario.
#[derive(Debug, Parser)]
#[command(name = "codex-gate-bench", max_term_width = 100, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenarios to run: `all` (every one but i, which needs PostgreSQL and Redis) or letters, e.g. `a,b,g`
    #[arg(long, default_value = "all")]
    scenario: String,
    /// A few seconds in all, tiny counts: proves the harness works (CI); numbers are not comparable
    #[arg(long)]
    smoke: bool,
    /// Seconds per measured round
    #[arg(long)]
    duration: Option<f64>,
    /// Rounds per target (targets alternate within each round)
    #[arg(long)]
    rounds: Option<usize>,
    /// Another gateway to measure: NAME=URL[,key=API_KEY][,pid=PID] (URL is its /v1 base; it must
    /// route model `bench` to the mock at --mock-addr; with pid, its CPU and RSS are read too)
    #[arg(long = "target", value_name = "SPEC")]
    targets: Vec<String>,
    /// Other gateways to install (once, from PyPI, into --peers-dir) and measure in the same
    /// rounds, each on the scenarios it can serve: `litellm`, `ds4codex`, `codex-lb` (Python >= 3.13;
    /// through its pool, on b) (comma-separated)
    #[arg(long)]
    peers: Option<String>,
    /// Cache directory for --peers (default: ~/.cache/codex-gate-bench/peers)
    #[arg(long)]
    peers_dir: Option<PathBuf>,
    /// Where the mock upstream listens (fixed, so other gateways can be pointed at it)
    #[arg(long, default_value = "127.0.0.1:18080")]
    mock_addr: String,
    /// Output directory
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Redraw the charts of a results.json (into the same directory)
    Chart { json: PathBuf },
    /// Only send one scenario's requests to URL (its /v1 base) and print what was measured;
    /// for profiling a gateway you started yourself
    Load {
        url: String,
        #[arg(long, default_value = "a")]
        scenario: String,
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        #[arg(long, default_value_t = 4)]
        connections: usize,
    },
    /// Minutes of mixed Codex-shaped traffic with ~5 % injected upstream faults: reports requests,
    /// request-log rows written and lost, RSS at start and end, panics (OUT/soak.json)
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// The gateway's own HTTP/1.1 upstream client against hyper's connection API and hyper-util's
    /// pooled client: memory per open stream and CPU per small request (OUT/clients.json)
    Clients {
        #[arg(long, default_value_t = 2000)]
        streams: usize,
        #[arg(long, default_value_t = 40000)]
        requests: usize,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// The dashboard's page loads on a store with ROWS request-log rows (filled once, then
    /// reused): time each view's first paint waits for (OUT/dashboard.json)
    Dashboard {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// Codex-shaped sessions of TURNS turns over HTTP (direct, codex-gate) and codex-gate's
    /// Responses WebSocket: bytes sent and received upstream, time to first token and gateway
    /// CPU per turn (OUT/ws.json)
    Ws {
        #[arg(long, default_value_t = 20)]
        sessions: usize,
        #[arg(long, default_value_t = 10)]
        turns: usize,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// How cost grows with the work: CPU and p99 against body size, memory and CPU per stream
    /// against open streams, cost and memory against pool size, insert and retention cost against
    /// request-log rows on SQLite (and PostgreSQL with --pg-url) (OUT/curves.{json,md}, OUT/curve-*.svg)
    Curves {
        /// Only these curves: body, streams, pool, log (or one store: log-sqlite, log-postgres), comma-separated
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Largest request-log size measured (10,000 … 10,000,000)
        #[arg(long, default_value_t = 1_000_000)]
        log_rows: usize,
        /// Also measure the request log on this PostgreSQL database (a schema is made and dropped)
        #[arg(long)]
        pg_url: Option<String>,
        /// Tiny sizes, seconds in all (CI)
        #[arg(long)]
        smoke: bool,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    #[command(hide = true)]
    ClientProbe { kind: String, addr: String, streams: usize, requests: usize },
    #[command(hide = true)]
    Mock {
        addr: String,
        #[arg(long, default_value_t = 200)]
        deltas: usize,
        #[arg(long, default_value_t = 16)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        #[arg(long, default_value_t = 0)]
        ttft_ms: u64,
        /// Open ChatGPT accounts `bench-00000`… that take any token (pools measured through them)
        #[arg(long, default_value_t = 0)]
        open_accounts: usize,
        /// Serve HTTPS with this certificate chain (PEM) and --tls-key
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long)]
        tls_key: Option<PathBuf>,
    },
    #[command(hide = true)]
    Relay {
        listen: String,
        upstream: String,
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// codex-gate itself (`gate -- serve --config …`), the same code as the `codex-gate` binary
    #[command(hide = true)]
    Gate {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = || tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let result = match cli.cmd {
        Some(Cmd::Gate { args }) => {
            let argv = std::iter::once("codex-gate".to_owned()).chain(args);
            return match <codex_gate::cli::Cli as Parser>::try_parse_from(argv) {
                Ok(c) => codex_gate::commands::main(c),
                Err(e) => {
                    let _ = e.print();
                    ExitCode::FAILURE
                }
            };
        }
        Some(Cmd::Mock { addr, deltas, size, delay_ms, ttft_ms, open_accounts, tls_cert, tls_key }) => {
            rt().map_err(Into::into).and_then(|rt| {
                rt.block_on(async {
                    let opts = codex_gate_mock::MockOptions {
                        deltas,
                        delta_bytes: size,
                        delay: Duration::from_millis(delay_ms),
                        ttft: Duration::from_millis(ttft_ms),
                        record: 0,
                    };
                    let mock = match tls_cert.zip(tls_key) {
                        Some((cert, key)) => {
                            let cfg = tls::server_config(&cert, &key)?;
                            codex_gate_mock::MockUpstream::start_tls_on(&addr, opts, cfg).await?
                        }
                        None => codex_gate_mock::MockUpstream::start_on(&addr, opts).await?,
                    };
                    mock.open_chatgpt_accounts((0..open_accounts).map(pool::account_id));
                    std::future::pending::<anyhow::Result<()>>().await
                })
            })
        }
        Some(Cmd::Relay { listen, upstream, ca_file }) => {
            rt().map_err(Into::into).and_then(|rt| rt.block_on(relay::run(&listen, &upstream, ca_file.as_deref())))
        }
        Some(Cmd::Chart { json }) => chart(&json),
        Some(Cmd::Curves { only, log_rows, pg_url, smoke, out }) => rt().map_err(Into::into).and_then(|rt| {
            rt.block_on(curves::run(&out, &only, curves::Sizes::new(smoke, log_rows), pg_url.as_deref()))
        }),
        Some(Cmd::Clients { streams, requests, out }) => {
            rt().map_err(Into::into).and_then(|rt| rt.block_on(clients::compare(streams, requests, &out)))
        }
        Some(Cmd::ClientProbe { kind, addr, streams, requests }) => {
            rt().map_err(Into::into).and_then(|rt| rt.block_on(clients::probe(&kind, &addr, streams, requests)))
        }
        Some(Cmd::Dashboard { rows, rounds, out }) => {
            rt().map_err(Into::into).and_then(|rt| rt.block_on(dashboard::run(rows.max(1), rounds.max(1), &out)))
        }
        Some(Cmd::Ws { sessions, turns, out }) => {
            rt().map_err(Into::into).and_then(|rt| rt.block_on(ws::run(sessions.max(1), turns.max(2), &out)))
        }
        Some(Cmd::Soak { minutes, connections, out }) => rt()
            .map_err(Into::into)
            .and_then(|rt| rt.block_on(soak::run(Duration::from_secs_f64(minutes * 60.0), connections.max(1), &out))),
        Some(Cmd::Load { url, scenario, duration, connections }) => rt().map_err(Into::into).and_then(|rt| {
            rt.block_on(scenarios::load_only(&url, &scenario, Duration::from_secs_f64(duration), connections))
        }),
        None => rt().map_err(Into::into).and_then(|rt| rt.block_on(bench(cli.run))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn chart(json: &std::path::Path) -> anyhow::Result<()> {
    let run: Run =
        serde_json::from_slice(&std::fs::read(json).with_context(|| format!("cannot read {}", json.display()))?)
            .with_context(|| format!("{} is not a results.json", json.display()))?;
    let dir = json.parent().unwrap_or(std::path::Path::new("."));
    for p in chart::write_all(&run, dir)? {
        println!("{}", p.display());
    }
    Ok(())
}

fn parse_target(spec: &str) -> anyhow::Result<Target> {
    let (name, rest) = spec.split_once('=').context("--target wants NAME=URL[,key=K][,pid=P]")?;
    if ["direct", "bare-relay", "codex-gate"].contains(&name) || name.is_empty() {
        bail!("--target {spec}: the name {name:?} is taken or empty");
    }
    let mut parts = rest.split(',');
    let url = parts.next().unwrap_or_default().to_owned();
    url.parse::<http::Uri>()
        .ok()
        .filter(|u| u.scheme_str() == Some("http"))
        .with_context(|| format!("--target {name}: {url:?} is not an http:// URL"))?;
    let mut t = Target { name: name.into(), url, ..Target::default() };
    for p in parts {
        match p.split_once('=') {
            Some(("key", k)) => t.headers.push((
                HeaderName::from_static("authorization"),
                HeaderValue::from_str(&format!("Bearer {k}")).context("--target: bad key")?,
            )),
            Some(("pid", p)) => t.pid = Some(p.parse().with_context(|| format!("--target {name}: bad pid {p:?}"))?),
            _ => bail!("--target {name}: unknown option {p:?} (key=…, pid=…)"),
        }
    }
    Ok(t)
}

async fn bench(args: RunArgs) -> anyhow::Result<()> {
    let external: Vec<Target> = args.targets.iter().map(|s| parse_target(s)).collect::<Result<_, _>>()?;
    let wanted: Vec<String> = args.scenario.split(',').map(|s| s.trim().to_lowercase()).collect();
    let selected: Vec<_> = scenarios::all(args.smoke)
        .into_iter()
        .filter(|s| wanted.iter().any(|w| (w == "all" && !s.cluster) || w == s.id))
        .collect();
    if selected.is_empty() {
        bail!("--scenario {}: no such scenario (a–k, or all: every one but i)", args.scenario);
    }
    let timing = if args.smoke {
        Timing {
            round: Duration::from_secs_f64(args.duration.unwrap_or(0.5)),
            rounds: args.rounds.unwrap_or(1),
            warmup: Duration::from_millis(200),
            ramp: Duration::from_millis(200),
            window: Duration::from_millis(300),
        }
    } else {
        Timing {
            round: Duration::from_secs_f64(args.duration.unwrap_or(6.0)),
            rounds: args.rounds.unwrap_or(2),
            warmup: Duration::from_secs(1),
            ramp: Duration::from_secs(4),
            window: Duration::from_secs(10),
        }
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut run = Run {
        mode: if args.smoke { "smoke" } else { "full" }.into(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        machine: procs::machine(),
        scenarios: vec![],
    };
    let peers = peers::by_names(args.peers.as_deref().unwrap_or_default())?;
    let peers_dir = args.peers_dir.clone().unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache/codex-gate-bench/peers")
    });
    let mut installed = Vec::new();
    for p in &peers {
        eprintln!("peer {}: {}", p.name, p.settings);
        if let Some(exe) = peers::install(&peers_dir, p)? {
            installed.push((*p, exe));
        }
    }
    let logs = args.out.join("logs");
    std::fs::create_dir_all(&logs)?;
    for sc in &selected {
        eprintln!("scenario {}: {}", sc.id, sc.title);
        // Resolved here so the peers are pointed at the port the mock will listen on.
        let mock_addr = if args.mock_addr.ends_with(":0") { procs::free_addr()? } else { args.mock_addr.clone() };
        // The peers serving this scenario, started in front of its mock (stopped at the end).
        let mut running = Vec::new();
        for (p, exe) in installed.iter().filter(|(p, _)| p.serves(sc)) {
            let log = logs.join(format!("{}-{}.log", sc.id, p.name));
            running.push(peers::start(p, exe, sc, &mock_addr, &log).await?);
        }
        let mut external = external.clone();
        external.extend(running.iter().map(|r| r.target.clone()));
        let env = scenarios::Env { out: &args.out, mock_addr: &mock_addr, timing, external: &external };
        let r = scenarios::run(sc, &env).await.with_context(|| format!("scenario {}", sc.id))?;
        drop(running);
        run.scenarios.push(r);
        // Written after every scenario, so a long run that is stopped keeps what it measured.
        std::fs::write(args.out.join("results.json"), serde_json::to_vec_pretty(&run)?)?;
    }
    let md = report::markdown(&run);
    std::fs::write(args.out.join("results.md"), &md)?;
    chart(&args.out.join("results.json"))?;
    println!("{md}");
    Ok(())
}

/// GET `url` (plain http) and return the body as text.
pub async fn http_get(url: &str) -> anyhow::Result<String> {
    http_get_with(url, None).await
}

/// GET `url` (over TLS with `tls`) and return the body as text.
pub async fn http_get_with(
    url: &str,
    tls: Option<&std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
) -> anyhow::Result<String> {
    use http_body_util::BodyExt;
    let uri: http::Uri = url.parse()?;
    let addr = uri.authority().context("no host")?.to_string();
    let mut send = load::connect_with(&addr, tls).await.map_err(anyhow::Error::msg)?;
    let req = http::Request::get(uri.path())
        .header(http::header::HOST, addr)
        .body(http_body_util::Full::new(bytes::Bytes::new()))?;
    let body = send.send_request(req).await?.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
