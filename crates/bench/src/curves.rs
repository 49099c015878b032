//! How cost grows with the work (`codex-gate-bench curves`): CPU per request and p99 against the
//! request body (4 KB → 4 MB of Codex history), memory and CPU per stream against open streams,
//! the pool's per-request cost and memory against its account count, and the request log's
//! insert cost and retention pass against its row count (SQLite and PostgreSQL). Each curve is
//! a table in OUT/curves.md, a chart OUT/curve-NAME.svg, and OUT/curves.json.

use crate::load::{self, Spec};
use crate::procs::{self, Proc};
use anyhow::Context;
use bytes::Bytes;
use memchr::memmem::Finder;
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Serialize)]
pub struct Curve {
    pub name: &'static str,
    pub title: &'static str,
    pub x: &'static str,
    /// Column names of `points[i].1`.
    pub columns: Vec<&'static str>,
    pub points: Vec<(f64, Vec<f64>)>,
    /// What bounded the curve on this machine, when something did.
    pub note: Option<String>,
}

/// Sizes of each curve (`smoke`: tiny, for CI).
pub struct Sizes {
    pub bodies: Vec<usize>,
    pub streams: Vec<usize>,
    pub accounts: Vec<usize>,
    pub log_rows: Vec<usize>,
    pub per_point: Duration,
    /// Each held stream: this many deltas, this far apart.
    pub stream_deltas: usize,
    pub stream_delay_ms: u64,
}

impl Sizes {
    pub fn new(smoke: bool, log_max: usize) -> Sizes {
        if smoke {
            return Sizes {
                bodies: vec![4_000, 40_000],
                streams: vec![10, 40],
                accounts: vec![2, 20],
                log_rows: vec![1_000, 4_000],
                per_point: Duration::from_millis(400),
                stream_deltas: 4,
                stream_delay_ms: 300,
            };
        }
        Sizes {
            bodies: vec![4_000, 40_000, 400_000, 4_000_000],
            // 2 sockets per stream in the gateway: 9,000 is what a 20,000-descriptor limit holds.
            streams: vec![100, 1_000, 3_000, 9_000],
            accounts: vec![10, 100, 1_000, 10_000],
            log_rows: [10_000, 100_000, 1_000_000, 10_000_000].into_iter().filter(|&n| n <= log_max).collect(),
            per_point: Duration::from_secs(4),
            stream_deltas: 20,
            stream_delay_ms: 1000,
        }
    }
}

fn spec(addr: &str, body: Vec<u8>) -> Arc<Spec> {
    Arc::new(Spec {
        addr: addr.into(),
        path: "/v1/responses".into(),
        body: Bytes::from(body),
        headers: vec![],
        expect: Finder::new(b"response.completed").into_owned(),
        tls: None,
    })
}

/// A mock and codex-gate (Responses passthrough, or the pool over `accounts` open accounts).
struct Pair {
    gate: Proc,
    gate_addr: String,
    _mock: Proc,
}

async fn pair(out: &Path, tag: &str, mock_args: &[&str], accounts: usize) -> anyhow::Result<Pair> {
    let (work, logs) = (out.join("work"), out.join("logs"));
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&logs)?;
    let mock_addr = procs::free_addr()?;
    let mut args = vec!["mock".to_owned(), mock_addr.clone(), "--open-accounts".into(), accounts.to_string()];
    args.extend(mock_args.iter().map(|a| a.to_string()));
    let mock = Proc::spawn_self("mock upstream", &mock_addr, &args, &logs.join(format!("curve-{tag}-mock.log")))?;
    let gate_addr = procs::free_addr()?;
    let store = format!("sqlite://{}", work.join(format!("curve-{tag}.db")).display());
    let key = work.join(format!("curve-{tag}.key"));
    let route = if accounts > 0 {
        crate::pool::fill_store(&store, &key, accounts).await?;
        format!(
            "[[providers]]\nname = \"up\"\nkind = \"chatgpt\"\nbase_url = \"http://{mock_addr}/backend-api\"\n\
             [pool]\nkey_file = \"{}\"\nusage_poll_secs = 0\nissuer = \"http://{mock_addr}\"\n",
            key.display()
        )
    } else {
        format!(
            "[[providers]]\nname = \"up\"\nkind = \"responses\"\nbase_url = \"http://{mock_addr}/v1\"\n\
             [pool]\nkey_file = \"{}\"\nusage_poll_secs = 0\n",
            key.display()
        )
    };
    // The default connection cap (2,048) is a safety bound the streams curve must go past; the
    // gateway itself lowers it further to what its open-file limit holds.
    let config = format!(
        "[server]\nlisten = \"{gate_addr}\"\nmax_connections = 10000\n\n[store]\nurl = \"{store}\"\n\n{route}\n\
         [[routes]]\nmodel = \"{m}\"\ntargets = [\"up/{m}\"]\n",
        m = crate::bodies::MODEL
    );
    let path = work.join(format!("curve-{tag}.toml"));
    std::fs::write(&path, config)?;
    let gate = Proc::spawn_gate("codex-gate", &gate_addr, &path, &logs.join(format!("curve-{tag}-gate.log")))?;
    Ok(Pair { gate, gate_addr, _mock: mock })
}

/// Closed loop on `conns` connections: (CPU ms per request, p50 ms, p99 ms, gateway overhead µs).
async fn closed(p: &Pair, s: Arc<Spec>, conns: usize, d: Duration) -> anyhow::Result<[f64; 4]> {
    load::run(s.clone(), conns, d / 4, None).await;
    let cpu0 = p.gate.cpu_secs();
    let (mut t, _) = load::run(s, conns, d, None).await;
    let cpu = p.gate.cpu_secs() - cpu0;
    if t.ok == 0 {
        anyhow::bail!("no answers: {}", t.first_error.unwrap_or_default());
    }
    t.total_us.sort_unstable();
    let overhead =
        t.header_overhead_us.iter().map(|&v| v as f64).sum::<f64>() / t.header_overhead_us.len().max(1) as f64;
    Ok([
        cpu / t.ok as f64 * 1000.0,
        load::percentile_ms(&t.total_us, 50.0),
        load::percentile_ms(&t.total_us, 99.0),
        overhead,
    ])
}

async fn body_curve(out: &Path, z: &Sizes) -> anyhow::Result<Curve> {
    let p = pair(out, "body", &["--deltas", "200", "--size", "16"], 0).await?;
    let mut points = Vec::new();
    for &n in &z.bodies {
        let s = spec(&p.gate_addr, crate::bodies::responses_body(n));
        // Fewer connections for the biggest bodies, so the client is not what is measured.
        let conns = if n >= 1_000_000 { 2 } else { 4 };
        let v = closed(&p, s, conns, z.per_point).await.with_context(|| format!("body {n}"))?;
        eprintln!("  body {n:>9} B: {:.3} ms CPU/request, p99 {:.2} ms", v[0], v[2]);
        points.push((n as f64, v.to_vec()));
    }
    Ok(Curve {
        name: "body",
        title: "Request body size (streaming Responses passthrough, 200 deltas)",
        x: "body bytes",
        columns: vec!["CPU ms / request", "p50 ms", "p99 ms", "gateway overhead µs"],
        points,
        note: None,
    })
}

async fn streams_curve(out: &Path, z: &Sizes) -> anyhow::Result<Curve> {
    // Streams long enough to be held through the whole window.
    let (deltas, delay) = (z.stream_deltas.to_string(), z.stream_delay_ms.to_string());
    let p = pair(out, "streams", &["--deltas", &deltas, "--size", "16", "--delay-ms", &delay], 0).await?;
    let mut points = Vec::new();
    let ramp = if z.per_point < Duration::from_secs(1) { Duration::from_millis(300) } else { Duration::from_secs(6) };
    for &n in &z.streams {
        let s = spec(&p.gate_addr, crate::bodies::responses_body(40_000));
        let rss0 = procs::rss(p.gate.pid());
        let h = load::hold(s, n, ramp);
        let deadline = Instant::now() + ramp + Duration::from_secs(10);
        while h.open.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let open = h.open.load(Ordering::Relaxed);
        let cpu0 = p.gate.cpu_secs();
        let t0 = Instant::now();
        let mut peak = 0;
        while t0.elapsed() < z.per_point {
            peak = peak.max(procs::rss(p.gate.pid()));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cpu = p.gate.cpu_secs() - cpu0;
        let secs = t0.elapsed().as_secs_f64();
        // Every stream ends before the next count starts.
        let t = h.task.await.context("held streams")?;
        if t.errors > 0 {
            anyhow::bail!("{} of {n} streams failed: {}", t.errors, t.first_error.unwrap_or_default());
        }
        let per_stream_kb = peak.saturating_sub(rss0) as f64 / 1024.0 / open.max(1) as f64;
        let cpu_per_stream_us = cpu / secs / open.max(1) as f64 * 1e6;
        eprintln!("  {open:>6} open streams: {per_stream_kb:.1} KB and {cpu_per_stream_us:.1} µs CPU/s each");
        points.push((n as f64, vec![open as f64, peak as f64 / 1048576.0, per_stream_kb, cpu_per_stream_us]));
    }
    Ok(Curve {
        name: "streams",
        title: "Open streams (16-byte deltas, one a second, 40 KB requests)",
        x: "streams",
        columns: vec!["open", "gateway RSS MB", "KB per stream", "CPU µs per stream-second"],
        points,
        note: Some(
            "10,000 streams need more than 20,000 descriptors in the gateway (client and upstream socket \
             each), above this machine's hard limit of 20,000; 9,000 is the largest count it holds."
                .into(),
        ),
    })
}

async fn pool_curve(out: &Path, z: &Sizes) -> anyhow::Result<Curve> {
    let mut points = Vec::new();
    for &n in &z.accounts {
        let t0 = Instant::now();
        let p = pair(out, &format!("pool{n}"), &["--deltas", "20", "--size", "16"], n).await?;
        let loaded = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle_mb = procs::rss(p.gate.pid()) as f64 / 1048576.0;
        let v = closed(&p, spec(&p.gate_addr, crate::bodies::responses_body(4_000)), 4, z.per_point).await?;
        eprintln!("  {n:>6} accounts: {:.3} ms CPU/request, overhead {:.0} µs, idle {idle_mb:.1} MB", v[0], v[3]);
        points.push((n as f64, vec![v[0], v[3], v[2], idle_mb, loaded]));
    }
    Ok(Curve {
        name: "pool",
        title: "Pool size (accounts in codex-gate's pool; 4 KB turns, 20 deltas)",
        x: "accounts",
        columns: vec!["CPU ms / request", "gateway overhead µs", "p99 ms", "idle RSS MB", "store filled + start s"],
        points,
        note: None,
    })
}

/// Rows grow to each size; at each, the cost of one writer batch (500 rows) and of a
/// retention pass that deletes the oldest 1 %.
async fn log_curve(out: &Path, z: &Sizes, sqlite: bool, pg: Option<&str>) -> anyhow::Result<Vec<Curve>> {
    let mut curves = Vec::new();
    let work = out.join("work");
    std::fs::create_dir_all(&work)?;
    let mut stores = Vec::new();
    if sqlite {
        stores.push(("sqlite", format!("sqlite://{}", work.join("curve-log.db").display())));
    }
    if let Some(url) = pg {
        stores.push(("postgres", crate::scenarios::fresh_pg_schema_at(url).await?));
    }
    for (kind, url) in stores {
        let store = codex_gate::store::Store::open(&url).await?;
        let total = *z.log_rows.last().unwrap_or(&0);
        let now = 4_000_000_000_000;
        let (mut have, mut gone, mut points) = (0usize, 0usize, Vec::new());
        for &n in &z.log_rows {
            // Filled in big transactions (fewer commits and rollup upserts per row); only the
            // batches timed below have the writer's size.
            while have < n {
                let batch: Vec<_> =
                    (have..(have + 5_000).min(n)).map(|i| crate::dashboard::row(i, total, now)).collect();
                store.insert_requests(&batch).await?;
                have += batch.len();
            }
            let mut insert_ms = Vec::new();
            for _ in 0..5 {
                let batch: Vec<_> = (0..500).map(|i| crate::dashboard::row(have + i, total, now)).collect();
                let t = Instant::now();
                store.insert_requests(&batch).await?;
                insert_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                have += 500;
            }
            insert_ms.sort_by(f64::total_cmp);
            // Rows are written oldest first; the oldest 1 % of those still present go.
            let oldest = crate::dashboard::row(gone + (have - gone) / 100, total, now).ts_ms;
            // The pass as the log's retention task runs it: the cut-off, then steps until one
            // comes up short. The row cap (`request_log_max_rows`) is set above the log, as a
            // user keeping this many rows has it, so age decides; finding that out walks the
            // whole ts index.
            let t = Instant::now();
            let cutoff = store.retention_cutoff(oldest, 2 * have as i64).await?;
            let cutoff_ms = t.elapsed().as_secs_f64() * 1000.0;
            let (mut deleted, mut longest) = (0, 0.0_f64);
            loop {
                let s = Instant::now();
                let d = store.prune_step(cutoff).await?;
                longest = longest.max(s.elapsed().as_secs_f64() * 1000.0);
                deleted += d;
                if d < codex_gate::store::PRUNE_STEP_ROWS as u64 {
                    break;
                }
            }
            gone += deleted as usize;
            let prune_ms = t.elapsed().as_secs_f64() * 1000.0;
            eprintln!(
                "  {kind} {n:>9} rows: batch of 500 in {:.1} ms, retention pass {prune_ms:.0} ms \
                 (cut-off {cutoff_ms:.0} ms, longest step {longest:.0} ms, {deleted} deleted)",
                insert_ms[2]
            );
            points.push((
                n as f64,
                vec![insert_ms[2] / 500.0 * 1000.0, insert_ms[2], prune_ms, cutoff_ms, longest, deleted as f64],
            ));
        }
        store.close().await;
        if kind == "postgres" {
            crate::scenarios::drop_pg_schema(&url).await?;
        }
        curves.push(Curve {
            name: if kind == "sqlite" { "log-sqlite" } else { "log-postgres" },
            title: if kind == "sqlite" { "Request-log size, SQLite" } else { "Request-log size, PostgreSQL" },
            x: "rows",
            columns: vec![
                "insert µs / row",
                "batch of 500 ms (median of 5)",
                "retention pass ms",
                "cut-off ms",
                "longest step ms",
                "rows deleted",
            ],
            points,
            note: None,
        });
    }
    Ok(curves)
}

/// Run the curves named in `only` (body, streams, pool, log, or log-sqlite / log-postgres for
/// one store; empty: all). The PostgreSQL log curve needs `pg`.
pub async fn run(out: &Path, only: &[String], z: Sizes, pg: Option<&str>) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let want = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    let mut curves = Vec::new();
    if want("body") {
        eprintln!("curve: body size");
        curves.push(body_curve(out, &z).await?);
    }
    if want("streams") {
        eprintln!("curve: open streams");
        curves.push(streams_curve(out, &z).await?);
    }
    if want("pool") {
        eprintln!("curve: pool size");
        curves.push(pool_curve(out, &z).await?);
    }
    let (log_sqlite, log_pg) = (want("log") || want("log-sqlite"), want("log") || want("log-postgres"));
    if pg.is_none() && only.iter().any(|o| o == "log-postgres") {
        anyhow::bail!("the log-postgres curve needs --pg-url");
    }
    if log_sqlite || (log_pg && pg.is_some()) {
        eprintln!("curve: request-log size");
        curves.extend(log_curve(out, &z, log_sqlite, pg.filter(|_| log_pg)).await?);
    }
    let _ = std::fs::remove_dir_all(out.join("work"));
    std::fs::write(out.join("curves.json"), serde_json::to_vec_pretty(&curves)?)?;
    let mut md = String::from("# How cost grows\n\n");
    for c in &curves {
        let _ = writeln!(
            md,
            "## {}\n\n| {} | {} |\n|---:|{}",
            c.title,
            c.x,
            c.columns.join(" | "),
            "---:|".repeat(c.columns.len())
        );
        for (x, v) in &c.points {
            let cells: Vec<String> =
                v.iter().map(|v| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.3}") }).collect();
            let _ = writeln!(md, "| {x} | {} |", cells.join(" | "));
        }
        if let Some(n) = &c.note {
            let _ = writeln!(md, "\n{n}");
        }
        md.push('\n');
        std::fs::write(out.join(format!("curve-{}.svg", c.name)), crate::chart::curve_svg(c))?;
    }
    std::fs::write(out.join("curves.md"), &md)?;
    println!("{md}");
    Ok(())
}
