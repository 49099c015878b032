//! The dashboard's page-load benchmark (`codex-gate-bench dashboard`): a SQLite store filled with
//! N request-log rows spread over 30 days (8 keys, 6 models, 5 targets, 3 % errors, an attempt
//! trail on one row in ten) through the store's own batched insert (rows and rollups in one
//! transaction, 500 rows per batch as the writer does), then codex-gate serving it, and the time
//! each view's first paint waits for: the page and its assets, the session, and the view's API
//! calls, over fresh connections. Reports p50 and max over the rounds (OUT/dashboard.json).

use crate::procs::{self, Proc};
use anyhow::Context;
use codex_gate::store::{Attempt, RequestRecord, Store};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const DAY_MS: i64 = 86_400_000;
const KEYS: usize = 8;
const MODELS: [&str; 6] = ["gpt-5.5", "gpt-5.4", "coder", "deepseek-chat", "qwen3-coder", "kimi-k2"];
const TARGETS: [&str; 5] =
    ["chatgpt/gpt-5.5", "chatgpt/gpt-5.4", "ds/deepseek-chat", "qwen/qwen3-coder", "kimi/kimi-k2"];

pub(crate) fn row(i: usize, n: usize, now: i64) -> RequestRecord {
    // Newest last, evenly over 30 days, as a gateway writes them.
    let ts_ms = now - 30 * DAY_MS + (30 * DAY_MS * i as i64) / n as i64;
    let failed = i.is_multiple_of(33);
    let target = TARGETS[i % TARGETS.len()];
    RequestRecord {
        id: format!("req_{:011x}{:013x}", ts_ms, i),
        ts_ms,
        api: if i.is_multiple_of(4) { "chat" } else { "responses" }.into(),
        route: MODELS[i % MODELS.len()].into(),
        target: target.into(),
        model: MODELS[i % MODELS.len()].into(),
        stream: true,
        status: if failed { 502 } else { 200 },
        error_code: failed.then(|| "upstream_error".into()),
        attempts: 1 + u32::from(i.is_multiple_of(10)),
        input_tokens: 20_000 + (i % 7_000) as i64,
        cached_tokens: 15_000,
        output_tokens: 400 + (i % 900) as i64,
        reasoning_tokens: 120,
        latency_ms: 3_000 + (i % 4_000) as i64,
        ttfb_ms: Some(300 + (i % 700) as i64),
        overhead_us: 150 + (i % 300) as i64,
        key_id: Some(format!("key_{}", i % KEYS)),
        account_id: target.starts_with("chatgpt/").then(|| format!("acct_{:02}", i % 12)),
        cost_usd: 0.01 + (i % 50) as f64 / 1000.0,
        trail: if i.is_multiple_of(10) {
            vec![
                Attempt {
                    target: "ds/deepseek-chat".into(),
                    why: "first of the route's 2 targets".into(),
                    error: Some("timeout".into()),
                    ms: 30_000,
                    ..Default::default()
                },
                Attempt {
                    target: target.into(),
                    why: "failover: the previous target failed before answering (timeout)".into(),
                    at_ms: 30_000,
                    ms: 3_000,
                    ..Default::default()
                },
            ]
        } else {
            Vec::new()
        },
    }
}

/// GET over a fresh connection: (status, body bytes, elapsed).
async fn get(addr: &str, path: &str) -> anyhow::Result<(u16, usize, Duration)> {
    use http_body_util::BodyExt;
    let t = Instant::now();
    let mut send = crate::load::connect(addr).await.map_err(anyhow::Error::msg)?;
    let req = http::Request::get(path)
        .header(http::header::HOST, addr)
        .body(http_body_util::Full::new(bytes::Bytes::new()))?;
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body.len(), t.elapsed()))
}

/// What each view's first paint waits for, in order.
fn views() -> Vec<(&'static str, Vec<&'static str>)> {
    let shell = ["/", "/dashboard/assets/app.js", "/dashboard/assets/app.css", "/dashboard/api/session"];
    let with = |extra: &[&'static str]| shell.iter().copied().chain(extra.iter().copied()).collect::<Vec<_>>();
    vec![
        ("overview 1h", with(&["/api/overview?window=1h"])),
        ("overview 24h", with(&["/api/overview?window=24h"])),
        ("overview 7d", with(&["/api/overview?window=7d"])),
        ("overview 30d", with(&["/api/overview?window=30d"])),
        ("accounts", with(&["/api/pool"])),
        ("keys", with(&["/api/keys"])),
        ("requests", with(&["/api/requests"])),
        ("requests, one key", with(&["/api/requests?key=key_3"])),
        ("requests, one model", with(&["/api/requests?model=coder"])),
        ("requests, errors only", with(&["/api/requests?status=error"])),
        ("routes & providers", with(&["/api/routes"])),
        ("key chart (7 d)", with(&["/api/overview?window=7d&key=key_3"])),
    ]
}

pub async fn run(rows: usize, rounds: usize, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let db = out.join(format!("dashboard-{rows}.db"));
    let url = format!("sqlite://{}", db.display());
    let store = Store::open(&url).await?;
    let have = store.count_requests().await? as usize;
    let mut fill = None;
    if have < rows {
        let now = codex_gate::now_ms();
        let t = Instant::now();
        let batch = 500;
        let mut i = have;
        while i < rows {
            let end = (i + batch).min(rows);
            let chunk: Vec<RequestRecord> = (i..end).map(|j| row(j, rows, now)).collect();
            store.insert_requests(&chunk).await?;
            i = end;
            if i % 100_000 < batch {
                eprintln!("  {i} rows written ({:.0} rows/s)", i as f64 / t.elapsed().as_secs_f64());
            }
        }
        let secs = t.elapsed().as_secs_f64();
        fill = Some(json!({"rows": rows - have, "secs": secs, "rows_per_sec": (rows - have) as f64 / secs}));
    }
    store.close().await;
    let size_mb = std::fs::metadata(&db).map_or(0, |m| m.len()) as f64 / 1e6;
    let addr = procs::free_addr()?;
    let config = format!(
        "[server]\nlisten = \"{addr}\"\n[store]\nurl = \"{url}\"\n\
         # Keep every row: the benchmark reads the store as filled.\n\
         request_log_retention_days = 3650\nrequest_log_max_rows = 100000000\n[pool]\nkey_file = \"{}\"\n[egress]\nenv_proxy = false\n\
         [[providers]]\nname = \"ds\"\nkind = \"chat\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"deepseek-chat\"]\n",
        out.join("dashboard.key").display()
    );
    let config_path = out.join("dashboard.toml");
    std::fs::write(&config_path, config)?;
    let gate = Proc::spawn_gate("codex-gate", &addr, &config_path, &out.join("dashboard-gate.log"))?;
    let mut results = Vec::new();
    println!("| view ({rows} log rows, {size_mb:.0} MB SQLite) | p50 ms | max ms | slowest call (p50 ms) |\n|---|---:|---:|---|");
    for (name, paths) in views() {
        let mut totals = Vec::with_capacity(rounds);
        let mut per_call: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
        for _ in 0..rounds {
            let mut sum = 0.0;
            for (k, p) in paths.iter().enumerate() {
                let (status, _, took) = get(&addr, p).await?;
                anyhow::ensure!(status == 200, "GET {p} answered {status}");
                let ms = took.as_secs_f64() * 1000.0;
                per_call[k].push(ms);
                sum += ms;
            }
            totals.push(sum);
        }
        let p50 = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let max = totals.iter().copied().fold(0.0, f64::max);
        let total_p50 = p50(&mut totals);
        let (slow_i, slow_ms) =
            per_call
                .iter_mut()
                .map(p50)
                .enumerate()
                .fold((0, 0.0), |best, (i, v)| if v > best.1 { (i, v) } else { best });
        println!("| {name} | {total_p50:.1} | {max:.1} | `{}` ({slow_ms:.1}) |", paths[slow_i]);
        results.push(json!({"view": name, "p50_ms": total_p50, "max_ms": max, "slowest": paths[slow_i], "slowest_p50_ms": slow_ms}));
    }
    let rss_mb = procs::rss(gate.pid()) as f64 / 1e6;
    drop(gate);
    let report = json!({"rows": rows, "rounds": rounds, "db_mb": size_mb, "fill": fill, "gate_rss_mb": rss_mb,
                        "machine": procs::machine(), "views": results});
    std::fs::write(out.join("dashboard.json"), serde_json::to_vec_pretty(&report)?)?;
    if let Some(f) = report.get("fill").filter(|f| !f.is_null()) {
        println!(
            "\nfilled {} rows in {:.1} s ({:.0} rows/s, rows and rollups)",
            f["rows"],
            f["secs"].as_f64().unwrap_or(0.0),
            f["rows_per_sec"].as_f64().unwrap_or(0.0)
        );
    }
    println!("codex-gate RSS after the rounds: {rss_mb:.1} MB");
    Ok(())
}
