//! `codex-gate keys …`: create, list, show, update, revoke and rotate client keys. Works on the
//! store directly; a running gateway on the same store applies the change within a second.
//! A key is printed once, at creation or rotation; everything else shows its prefix only.

use crate::access::manage;
use crate::config::Config;
use crate::store::{KeyRow, Store};
use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Map, Value};
use std::path::Path;

/// Limits and rules of a key. On `update`, `none` clears one.
#[derive(Debug, Default, clap::Args)]
pub struct PolicyArgs {
    /// Models this key may use: exact names and `prefix*` patterns (comma-separated or repeated)
    #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "PATTERN")]
    models: Option<Vec<String>>,
    /// Requests per minute
    #[arg(long, value_name = "N")]
    rpm: Option<String>,
    /// Tokens (input + output) per minute
    #[arg(long, value_name = "N")]
    tpm: Option<String>,
    /// Requests in flight at once
    #[arg(long, value_name = "N")]
    concurrency: Option<String>,
    /// Spend limit in USD per --budget-period (subscription traffic counts its API price)
    #[arg(long, value_name = "USD")]
    budget_usd: Option<String>,
    /// day, week or month (UTC calendar periods)
    #[arg(long, value_name = "PERIOD")]
    budget_period: Option<String>,
    /// Percent of the subscription pool's 5-hour and weekly windows this key may use
    #[arg(long, value_name = "PERCENT")]
    pool_share: Option<String>,
    /// any, pool (subscription accounts only) or providers (API-key providers only)
    #[arg(long, value_name = "WHICH")]
    targets: Option<String>,
    /// What a request for service_tier "priority" gets: allow, strip or refuse
    #[arg(long, value_name = "RULE")]
    service_tier: Option<String>,
    /// This key's own pool strategy (usage_aware, round_robin, primary_first, priority_order, fill_first)
    #[arg(long, value_name = "STRATEGY")]
    pool_strategy: Option<String>,
    /// The pool accounts (ids or emails) this key may use
    #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "ACCOUNT")]
    pool_accounts: Option<Vec<String>>,
    /// When the key stops working: 2027-01-31, 2027-01-31T12:00Z or 90d
    #[arg(long, value_name = "WHEN")]
    expires: Option<String>,
}

impl PolicyArgs {
    /// The flags given, as a merge patch.
    fn patch(&self) -> anyhow::Result<Map<String, Value>> {
        let mut m = Map::new();
        let number = |flag: &str, v: &str| -> anyhow::Result<Value> {
            if v == "none" {
                return Ok(Value::Null);
            }
            let n: f64 = v.parse().with_context(|| format!("--{flag} {v:?} is not a number"))?;
            Ok(if n.fract() == 0.0 && (0.0..1e15).contains(&n) { json!(n as u64) } else { json!(n) })
        };
        let text = |v: &str| if v == "none" { Value::Null } else { json!(v) };
        let list = |v: &[String]| if v == ["none"] { Value::Null } else { json!(v) };
        for (field, flag, v) in [
            ("rpm", "rpm", &self.rpm),
            ("tpm", "tpm", &self.tpm),
            ("concurrency", "concurrency", &self.concurrency),
            ("budget_usd", "budget-usd", &self.budget_usd),
            ("pool_share", "pool-share", &self.pool_share),
        ] {
            if let Some(v) = v {
                m.insert(field.into(), number(flag, v)?);
            }
        }
        for (field, v) in [
            ("budget_period", &self.budget_period),
            ("targets", &self.targets),
            ("service_tier", &self.service_tier),
            ("pool_strategy", &self.pool_strategy),
            ("expires", &self.expires),
        ] {
            if let Some(v) = v {
                m.insert(field.into(), text(v));
            }
        }
        if let Some(v) = &self.models {
            m.insert("models".into(), list(v));
        }
        if let Some(v) = &self.pool_accounts {
            m.insert("pool_accounts".into(), list(v));
        }
        Ok(m)
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Create a key (printed once: store it then)
    Create {
        #[arg(long)]
        name: String,
        /// An admin key: it may use the admin API (/api/*, /metrics) from any address
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Print the key and its settings as JSON
        #[arg(long)]
        json: bool,
    },
    /// List keys (prefixes only, never a key)
    List {
        #[arg(long)]
        json: bool,
    },
    /// One key's settings and its usage in the current windows
    Show {
        /// Key id, name or prefix
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a key's name, limits or rules (`none` clears a limit)
    Update {
        key: String,
        #[arg(long)]
        name: Option<String>,
        /// Make it an admin key (true) or a client key (false)
        #[arg(long, value_name = "BOOL")]
        admin: Option<bool>,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Revoke a key: refused everywhere within a second
    Revoke { key: String },
    /// Replace a key's secret (same id, name and limits); the old one stops working
    Rotate {
        key: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(path: Option<&Path>, cmd: KeysCmd) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let store = Store::open(&config.store.url)
        .await
        .with_context(|| format!("cannot open the store at {}", super::redact_url(&config.store.url)))?;
    let now = crate::now_ms();
    match cmd {
        KeysCmd::Create { name, admin, policy, json } => {
            let mut spec = policy.patch()?;
            spec.insert("name".into(), json!(name));
            spec.insert("admin".into(), json!(admin));
            let (key, row) = manage::create(&store, &spec).await?;
            if json {
                let mut v = manage::view(&row, now);
                v["key"] = json!(key);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("created {} {:?}{}", row.id, row.name, if row.admin { " (admin)" } else { "" });
                println!("\n    {key}\n");
                println!("This is the only time the key is shown; store it now. Limits: {}.", summary(&row));
                println!("Clients send it as `Authorization: Bearer <key>` (Codex: env_key; OpenClaw: apiKey).");
                if !config.server.require_keys && store.list_keys().await?.len() == 1 {
                    println!("From now on every API request to this gateway needs a key.");
                }
            }
        }
        KeysCmd::List { json } => {
            let rows = store.list_keys().await?;
            if json {
                let v: Vec<Value> = rows.iter().map(|r| manage::view(r, now)).collect();
                println!("{}", serde_json::to_string_pretty(&json!({"keys": v}))?);
            } else if rows.is_empty() {
                println!("no keys; the gateway serves loopback clients without one (create one: codex-gate keys create --name NAME)");
            } else {
                println!("{:<17} {:<20} {:<14} {:<8} LIMITS", "ID", "NAME", "KEY", "STATE");
                for r in &rows {
                    let v = manage::view(r, now);
                    let state = v["state"].as_str().unwrap_or("?");
                    let name = if r.admin { format!("{} (admin)", r.name) } else { r.name.clone() };
                    println!("{:<17} {:<20} {:<14} {:<8} {}", r.id, name, r.prefix, state, summary(r));
                }
            }
        }
        KeysCmd::Show { key, json } => {
            let row = manage::find(&store, &key).await?;
            let mut v = manage::view(&row, now);
            v["usage"] = usage_now(&store, &row, now).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{} {:?} {} ({})", row.id, row.name, row.prefix, v["state"].as_str().unwrap_or("?"));
                println!("  limits: {}", summary(&row));
                let u = &v["usage"];
                println!(
                    "  last minute: {} requests, {} tokens; spent ${:.4} since {}",
                    u["requests_last_minute"],
                    u["tokens_last_minute"],
                    u["spent_usd"].as_f64().unwrap_or(0.0),
                    u["budget_period"].as_str().unwrap_or("the period's start")
                );
            }
        }
        KeysCmd::Update { key, name, admin, policy } => {
            let mut patch = policy.patch()?;
            if let Some(n) = name {
                patch.insert("name".into(), json!(n));
            }
            if let Some(a) = admin {
                patch.insert("admin".into(), json!(a));
            }
            anyhow::ensure!(!patch.is_empty(), "nothing to change; see `codex-gate keys update --help`");
            let row = manage::update(&store, &key, &patch).await?;
            println!("updated {} {:?}: {}", row.id, row.name, summary(&row));
        }
        KeysCmd::Revoke { key } => {
            let row = manage::revoke(&store, &key).await?;
            println!(
                "revoked {} {:?} ({}); gateways on this store refuse it within a second",
                row.id, row.name, row.prefix
            );
        }
        KeysCmd::Rotate { key, json } => {
            let (secret, row) = manage::rotate(&store, &key).await?;
            if json {
                let mut v = manage::view(&row, now);
                v["key"] = json!(secret);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "rotated {} {:?}; the old key stops working within a second\n\n    {secret}\n",
                    row.id, row.name
                );
                println!("This is the only time the new key is shown; store it now.");
            }
        }
    }
    store.close().await;
    Ok(())
}

/// The key's usage as the store records it: the last minute and the budget period.
async fn usage_now(store: &Store, row: &KeyRow, now: i64) -> anyhow::Result<Value> {
    let policy: crate::access::keys::Policy = serde_json::from_str(&row.policy).unwrap_or_default();
    let minute = store.key_usage_since(&row.id, now - 60_000).await?;
    let start = crate::access::limits::period_start(now, policy.budget_period);
    let spent = store.key_cost_since(&row.id, start).await?;
    Ok(json!({
        "requests_last_minute": minute.requests,
        "tokens_last_minute": minute.input_tokens + minute.output_tokens,
        "spent_usd": spent,
        "budget_period": format!("{:?} start ({} UTC)", policy.budget_period, httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(start as u64))),
    }))
}

/// `rpm 60, tpm 100000, budget $5/day, models gpt-5*` (or `none`).
pub fn summary(row: &KeyRow) -> String {
    let p: crate::access::keys::Policy = serde_json::from_str(&row.policy).unwrap_or_default();
    let mut parts = Vec::new();
    if !p.models.is_empty() {
        parts.push(format!("models {}", p.models.join(",")));
    }
    for (what, v) in [("rpm", p.rpm.map(u64::from)), ("tpm", p.tpm), ("concurrency", p.concurrency.map(u64::from))] {
        if let Some(v) = v {
            parts.push(format!("{what} {v}"));
        }
    }
    if let Some(b) = p.budget_usd {
        parts.push(format!("budget ${b}/{}", format!("{:?}", p.budget_period).to_lowercase()));
    }
    if let Some(s) = p.pool_share {
        parts.push(format!("pool share {s}%"));
    }
    match p.targets {
        crate::access::keys::Targets::Any => {}
        t => parts.push(format!("targets {}", format!("{t:?}").to_lowercase())),
    }
    match p.service_tier {
        crate::access::keys::TierRule::Allow => {}
        t => parts.push(format!("priority tier {}", format!("{t:?}").to_lowercase())),
    }
    if let Some(s) = &p.pool_strategy {
        parts.push(format!("pool strategy {s}"));
    }
    if !p.pool_accounts.is_empty() {
        parts.push(format!("pool accounts {}", p.pool_accounts.join(",")));
    }
    if let Some(e) = row.expires_ms {
        parts.push(format!(
            "expires {}",
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.max(0) as u64))
        ));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}
