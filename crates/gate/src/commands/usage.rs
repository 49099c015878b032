//! `codex-gate usage [--by key|model|account|target] [--since 7d] [--json|--csv]`: requests,
//! tokens and cost from the usage rollups (kept after the raw request log is pruned).

use crate::config::Config;
use crate::store::{GroupBy, Store};
use anyhow::Context;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// What each line sums
    #[arg(long, value_enum, default_value_t = GroupBy::Key)]
    by: GroupBy,
    /// How far back: 7d, 24h, 30m
    #[arg(long, default_value = "7d")]
    since: String,
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    #[arg(long)]
    csv: bool,
}

pub async fn run(path: Option<&Path>, args: UsageArgs) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let span = crate::routes::admin::usage::parse_since(&args.since)
        .with_context(|| format!("--since {:?}: use 7d, 24h or 30m", args.since))?;
    let store = Store::open(&config.store.url)
        .await
        .with_context(|| format!("cannot open the store at {}", super::redact_url(&config.store.url)))?;
    let lines = store.usage_report(args.by, crate::now_ms() - span).await?;
    // Keys by name as well as id; accounts by email.
    let mut names: HashMap<String, String> = HashMap::new();
    match args.by {
        GroupBy::Key => names.extend(store.list_keys().await?.into_iter().map(|k| (k.id, k.name))),
        GroupBy::Account => {
            names.extend(store.list_accounts().await?.into_iter().filter_map(|a| a.email.map(|e| (a.id, e))))
        }
        _ => {}
    }
    store.close().await;
    let label = |g: &str| match (g, names.get(g)) {
        ("", _) => match args.by {
            GroupBy::Key => "(no key)".to_owned(),
            GroupBy::Account => "(not the pool)".to_owned(),
            _ => "-".to_owned(),
        },
        (g, Some(n)) => format!("{n} ({g})"),
        (g, None) => g.to_owned(),
    };
    if args.json {
        let v: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| {
                let mut v = serde_json::to_value(l).unwrap_or_default();
                v["label"] = label(&l.group).into();
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"since": args.since, "by": args.by, "lines": v}))?
        );
        return Ok(());
    }
    if args.csv {
        println!("group,label,requests,errors,input_tokens,cached_tokens,output_tokens,reasoning_tokens,cost_usd");
        for l in &lines {
            let s = &l.sums;
            let q = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
            println!(
                "{},{},{},{},{},{},{},{},{:.6}",
                q(&l.group),
                q(&label(&l.group)),
                s.requests,
                s.errors,
                s.input_tokens,
                s.cached_tokens,
                s.output_tokens,
                s.reasoning_tokens,
                s.cost_usd
            );
        }
        return Ok(());
    }
    if lines.is_empty() {
        println!("no requests in the last {}", args.since);
        return Ok(());
    }
    println!(
        "{:<40} {:>9} {:>7} {:>12} {:>12} {:>12} {:>11}",
        "", "REQUESTS", "ERRORS", "INPUT", "CACHED", "OUTPUT", "COST USD"
    );
    let mut total = crate::store::UsageSums::default();
    for l in &lines {
        let s = &l.sums;
        println!(
            "{:<40} {:>9} {:>7} {:>12} {:>12} {:>12} {:>11.4}",
            label(&l.group),
            s.requests,
            s.errors,
            s.input_tokens,
            s.cached_tokens,
            s.output_tokens,
            s.cost_usd
        );
        total += s;
    }
    let t = &total;
    println!(
        "{:<40} {:>9} {:>7} {:>12} {:>12} {:>12} {:>11.4}",
        "total", t.requests, t.errors, t.input_tokens, t.cached_tokens, t.output_tokens, t.cost_usd
    );
    Ok(())
}
