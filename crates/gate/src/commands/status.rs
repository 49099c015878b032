//! `codex-gate status`: what OpenClaw's `/codex status` shows, for the gateway — up or not and
//! its version, each account with its plan, both windows with their reset countdowns and any
//! cooldown, and the last hour's requests, errors and failovers from the request log. The live
//! numbers come from the running gateway; without one, the store still says what it knows.

use crate::config::Config;
use crate::store::Store;
use anyhow::Context;
use serde_json::{json, Value};
use std::path::Path;

pub async fn run(path: Option<&Path>, as_json: bool) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let listen = config.server.listen;
    let (base_url, _) = super::setup::client_base_url(None, listen)?;
    let health = super::gateway_get(listen, "/health").await;
    let pool = match &health {
        Some(_) => super::gateway_get(listen, "/api/pool").await,
        None => None,
    };
    let store = Store::open(&config.store.url)
        .await
        .with_context(|| format!("cannot open the store at {}", super::redact_url(&config.store.url)))?;
    let now_ms = crate::now_ms();
    let hour_ago = now_ms - 3_600_000;
    let (requests, errors, failovers) = store.request_summary(hour_ago).await?;
    let recent = store.recent_failovers(hour_ago, 5).await?;
    // Without a running gateway, the accounts as stored (no live windows).
    let accounts: Vec<Value> = match pool.as_ref().and_then(|p| p["accounts"].as_array()) {
        Some(a) => a.clone(),
        None => store
            .list_accounts()
            .await?
            .into_iter()
            .map(|r| json!({"id": r.id, "email": r.email, "plan_type": r.plan_type, "status": r.status}))
            .collect(),
    };
    let keys = keys_summary(&store, now_ms, hour_ago).await?;
    store.close().await;
    let v = json!({
        "gateway": {"url": base_url, "up": health.is_some(), "version": health.as_ref().map(|h| h["version"].clone()),
                    "in_flight": health.as_ref().map(|h| h["in_flight"].clone())},
        "accounts": accounts,
        "keys": keys,
        "last_hour": {"requests": requests, "errors": errors, "failovers": failovers},
        "recent_failovers": recent.iter().map(|r| json!({"ts_ms": r.ts_ms, "route": r.route, "target": r.target,
            "attempts": r.attempts, "status": r.status, "error_code": r.error_code})).collect::<Vec<_>>(),
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", text(&v, now_ms / 1000));
    }
    Ok(())
}

/// Keys by state, and the last hour's traffic per key (busiest first, at most 10).
async fn keys_summary(store: &Store, now_ms: i64, since_ms: i64) -> anyhow::Result<Value> {
    let rows = store.list_keys().await?;
    let state =
        |r: &crate::store::KeyRow| crate::access::manage::view(r, now_ms)["state"].as_str().unwrap_or("").to_owned();
    let count = |s: &str| rows.iter().filter(|r| state(r) == s).count();
    let admin = rows.iter().filter(|r| r.admin && state(r) == "active").count();
    let usage = store.usage_report(crate::store::GroupBy::Key, since_ms).await?;
    let last_hour: Vec<Value> = usage
        .iter()
        .filter_map(|l| {
            let k = rows.iter().find(|r| r.id == l.group)?;
            Some(json!({"id": k.id, "name": k.name, "prefix": k.prefix, "requests": l.sums.requests,
                        "errors": l.sums.errors, "cost_usd": l.sums.cost_usd}))
        })
        .take(10)
        .collect();
    Ok(json!({"total": rows.len(), "active": count("active"), "revoked": count("revoked"),
              "expired": count("expired"), "admin": admin, "last_hour": last_hour}))
}

/// The human view of the status object.
fn text(v: &Value, now_s: i64) -> String {
    let g = &v["gateway"];
    let mut s = match g["up"].as_bool() {
        Some(true) => format!(
            "gateway  up at {} (version {}, {} in flight)\n",
            g["url"].as_str().unwrap_or("?"),
            g["version"].as_str().unwrap_or("?"),
            g["in_flight"]
        ),
        _ => format!(
            "gateway  DOWN: nothing answers at {} (start it with `codex-gate serve`)\n",
            g["url"].as_str().unwrap_or("?")
        ),
    };
    let accounts = v["accounts"].as_array().cloned().unwrap_or_default();
    s.push_str(&format!("accounts {}\n", accounts.len()));
    for a in &accounts {
        let window = |w: &Value, label: &str| -> String {
            let Some(used) = w["used_percent"].as_f64() else { return format!("{label} ?") };
            let reset =
                w["reset_at"].as_i64().map(|r| format!(" (resets in {})", countdown(r - now_s))).unwrap_or_default();
            format!("{label} {used:.0}%{reset}")
        };
        let rl = &a["rate_limit"];
        let mut line = format!(
            "  {:<18} {:<28} {:<8} {:<16}",
            a["id"].as_str().unwrap_or("?"),
            a["email"].as_str().unwrap_or(""),
            a["plan_type"].as_str().unwrap_or("?"),
            a["status"].as_str().unwrap_or("?"),
        );
        if rl.is_object() {
            line.push_str(&format!(
                " {}  {}",
                window(&rl["primary_window"], "5h"),
                window(&rl["secondary_window"], "week")
            ));
        }
        if let Some(until) = a["cooldown_until"].as_i64() {
            line.push_str(&format!("  cooling down {}", countdown(until - now_s)));
        }
        if let Some(r) = a["status_reason"].as_str() {
            line.push_str(&format!("  ({r})"));
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    if accounts.is_empty() {
        s.push_str("  none: `codex-gate accounts import` adds Codex's own login\n");
    }
    let k = &v["keys"];
    if k["total"].as_i64().unwrap_or(0) == 0 {
        s.push_str(
            "keys     none: loopback clients are served without one (`codex-gate keys create` makes the first)\n",
        );
    } else {
        s.push_str(&format!(
            "keys     {} active ({} admin), {} revoked, {} expired\n",
            k["active"], k["admin"], k["revoked"], k["expired"]
        ));
        for t in k["last_hour"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "  {:<20} {} requests, {} errors, ${:.4}\n",
                t["name"].as_str().unwrap_or("?"),
                t["requests"],
                t["errors"],
                t["cost_usd"].as_f64().unwrap_or(0.0)
            ));
        }
    }
    let h = &v["last_hour"];
    s.push_str(&format!(
        "last hour {} requests, {} errors, {} failovers\n",
        h["requests"], h["errors"], h["failovers"]
    ));
    for f in v["recent_failovers"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "  {} ago  {} -> {} ({} attempts, status {}{})\n",
            countdown(now_s - f["ts_ms"].as_i64().unwrap_or(0) / 1000),
            f["route"].as_str().unwrap_or("?"),
            f["target"].as_str().unwrap_or("?"),
            f["attempts"],
            f["status"],
            f["error_code"].as_str().map(|c| format!(", {c}")).unwrap_or_default()
        ));
    }
    s
}

/// `3d4h`, `1h12m`, `4m12s`, `9s`.
fn countdown(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn countdowns() {
        assert_eq!(super::countdown(-5), "0s");
        assert_eq!(super::countdown(252), "4m12s");
        assert_eq!(super::countdown(4320), "1h12m");
        assert_eq!(super::countdown(273_600), "3d4h");
    }
}
