//! The dashboard's read APIs under `/api/*` (behind the admin gate): the overview (usage over
//! time, latency percentiles, top keys and models), pages of the request log and one request's
//! attempts, and each route's targets with their health. Every read is a rollup or an indexed
//! query (see `store::views`).

use crate::app::App;
use crate::error::GateError;
use crate::store::{Bucket, GroupBy, RequestFilter, RequestRecord, UsageSums, Width};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Requests the latency percentiles are taken over (the newest in the window).
const TIMING_SAMPLE: i64 = 5_000;

fn internal(e: crate::store::StoreError) -> GateError {
    GateError::Internal(e.to_string())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverviewQuery {
    window: Option<String>,
    key: Option<String>,
}

/// A window's span and bucket width.
fn window(w: &str) -> Option<(i64, Width, i64)> {
    Some(match w {
        "1h" => (HOUR, Width::Minute, MINUTE),
        "24h" => (DAY, Width::Hour, HOUR),
        "7d" => (7 * DAY, Width::Hour, HOUR),
        "30d" => (30 * DAY, Width::Day, DAY),
        _ => return None,
    })
}

fn total(buckets: &[Bucket]) -> UsageSums {
    let mut t = UsageSums::default();
    for b in buckets {
        t += &b.sums;
    }
    t
}

fn key_name(app: &App, id: &str) -> Option<String> {
    app.keys.current().get(id).map(|k| k.name.clone())
}

/// `GET /api/overview?window=1h|24h|7d|30d[&key=ID]`.
pub async fn overview(State(app): State<Arc<App>>, Query(q): Query<OverviewQuery>) -> Result<Json<Value>, GateError> {
    let w = q.window.as_deref().unwrap_or("24h");
    let (span, width, bucket_ms) =
        window(w).ok_or_else(|| GateError::bad_request("window must be 1h, 24h, 7d or 30d", Some("window".into())))?;
    let now = crate::now_ms();
    let since = now - span;
    let buckets = app.store.buckets(since, width, q.key.as_deref()).await.map_err(internal)?;
    let timings = app.store.timings(since, TIMING_SAMPLE).await.map_err(internal)?;
    let top = |by| {
        let app = app.clone();
        async move {
            let lines = app.store.usage_report(by, since).await.map_err(internal)?;
            Ok::<_, GateError>(
                lines
                    .into_iter()
                    .take(8)
                    .map(|l| {
                        let name = (by == GroupBy::Key).then(|| key_name(&app, &l.group)).flatten();
                        json!({"group": l.group, "name": name, "sums": l.sums})
                    })
                    .collect::<Vec<_>>(),
            )
        }
    };
    let (top_keys, top_models) =
        if q.key.is_some() { (Vec::new(), Vec::new()) } else { (top(GroupBy::Key).await?, top(GroupBy::Model).await?) };
    let accounts = app.pool.accounts();
    let usable = accounts
        .iter()
        .filter(|a| {
            *a.status.read() == crate::pool::Status::Active
                && a.cooldown_until_ms.load(std::sync::atomic::Ordering::Relaxed) <= now
        })
        .count();
    Ok(Json(json!({
        "window": w, "since_ms": since, "now_ms": now, "bucket_ms": bucket_ms,
        "totals": total(&buckets), "series": buckets, "timings": timings,
        "top_keys": top_keys, "top_models": top_models,
        "live": {
            "in_flight": app.metrics.in_flight.load(std::sync::atomic::Ordering::Relaxed),
            "accounts": accounts.len(), "accounts_usable": usable,
        },
    })))
}

/// One log row as the dashboard shows it; `trail` only in the detail.
fn row(app: &App, r: &RequestRecord, trail: bool) -> Value {
    let mut v = json!({
        "id": r.id, "ts_ms": r.ts_ms, "api": r.api, "route": r.route, "target": r.target, "model": r.model,
        "stream": r.stream, "status": r.status, "error_code": r.error_code, "attempts": r.attempts,
        "input_tokens": r.input_tokens, "cached_tokens": r.cached_tokens, "output_tokens": r.output_tokens,
        "reasoning_tokens": r.reasoning_tokens, "latency_ms": r.latency_ms, "ttfb_ms": r.ttfb_ms,
        "overhead_ms": r.overhead_us as f64 / 1000.0, "key_id": r.key_id,
        "key_name": r.key_id.as_deref().and_then(|k| key_name(app, k)), "account_id": r.account_id,
        "cost_usd": r.cost_usd,
    });
    if trail {
        v["trail"] = json!(r.trail);
    }
    v
}

/// `GET /api/requests?key=&model=&target=&account=&status=&since_ms=&until_ms=&before=&limit=`.
pub async fn requests(State(app): State<Arc<App>>, Query(f): Query<RequestFilter>) -> Result<Json<Value>, GateError> {
    let rows = app
        .store
        .list_requests(&f)
        .await
        .map_err(internal)?
        .map_err(|field| GateError::bad_request(format!("cannot read the {field} filter"), Some(field)))?;
    let full = rows.len() as i64 == f.limit.unwrap_or(50).clamp(1, crate::store::MAX_PAGE);
    let next = rows.last().filter(|_| full).map(|r| format!("{}:{}", r.ts_ms, r.id));
    Ok(Json(json!({"requests": rows.iter().map(|r| row(&app, r, false)).collect::<Vec<_>>(), "next": next})))
}

/// `GET /api/requests/{id}`: the row, its attempts, and the route's targets it did not try.
pub async fn request(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, GateError> {
    let r = app.store.get_request(&id).await.map_err(internal)?.ok_or_else(|| {
        GateError::NotFound(format!("no request {id} in the log (it may not be written yet, or was pruned)"))
    })?;
    let resolved = app.router.resolve_or_pool(&r.model, |m| app.pool.catalog.offers(m));
    let (targets, fallback) = resolved.map_or((Vec::new(), true), |res| {
        (res.targets.iter().map(|t| t.label.to_string()).collect::<Vec<_>>(), res.fallback)
    });
    let served = r.error_code.is_none();
    let skipped: Vec<Value> = targets
        .iter()
        .filter(|t| !r.trail.iter().any(|a| &a.target == *t))
        .map(|t| {
            let why = if served {
                "not tried: an earlier target answered"
            } else if !fallback {
                "not tried: the route has fallback = false"
            } else {
                "not tried: the failure was not one another target could fix"
            };
            json!({"target": t, "why": why})
        })
        .collect();
    Ok(Json(json!({"request": row(&app, &r, true), "route_targets": targets, "skipped": skipped})))
}

/// `GET /api/routes`: each route's targets with health and failures, the providers, and the
/// newest failed requests.
pub async fn routes(State(app): State<Arc<App>>) -> Result<Json<Value>, GateError> {
    let stats = app.metrics.by_target();
    let now = crate::now_ms();
    let mut routes = Vec::new();
    let mut seen_targets: Vec<String> = Vec::new();
    for m in app.router.listed() {
        if m.id.contains('/') {
            continue; // `provider/model` refs are their own target
        }
        let Some(r) = app.router.resolve(&m.id) else { continue };
        let targets: Vec<String> = r.targets.iter().map(|t| t.label.to_string()).collect();
        for t in &targets {
            if !seen_targets.contains(t) {
                seen_targets.push(t.clone());
            }
        }
        routes.push(json!({"model": m.id, "fallback": r.fallback, "targets": targets}));
    }
    if let Some(p) = app.router.pool_provider() {
        let target = format!("{}/*", p.name);
        routes.push(json!({"model": "(pool catalog)", "fallback": true, "targets": [target]}));
    }
    // Targets seen in traffic (the pool's `chatgpt/<model>`, `provider/any` refs) count too.
    for t in stats.keys() {
        if t != "-" && t != "other" && !seen_targets.contains(t) {
            seen_targets.push(t.clone());
        }
    }
    let recent: std::collections::HashMap<String, (i64, i64)> = app
        .store
        .recent_by_target(now - 15 * MINUTE)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|(t, n, f)| (t, (n, f)))
        .collect();
    for t in recent.keys() {
        if !seen_targets.contains(t) {
            seen_targets.push(t.clone());
        }
    }
    let mut targets = Vec::new();
    for t in &seen_targets {
        let (n, failed) = recent.get(t).copied().unwrap_or_default();
        let health = match (n, failed) {
            (0, _) => "idle",
            (_, 0) => "healthy",
            (n, f) if f == n && n >= 3 => "failing",
            _ => "degraded",
        };
        let s = stats.get(t).cloned().unwrap_or_default();
        targets.push(json!({
            "target": t, "health": health, "recent_requests": n, "recent_errors": failed,
            "answered": s.answered, "ok": s.ok, "failures": s.failures, "errors": s.errors,
        }));
    }
    let providers: Vec<Value> = app
        .config
        .providers
        .iter()
        .map(|p| {
            json!({"name": p.name, "kind": format!("{:?}", p.kind).to_lowercase(), "base_url": crate::commands::redact_url(&p.base_url),
                   "models": p.models, "proxy": p.proxy.is_some()})
        })
        .collect();
    let errors = RequestFilter { status: Some("error".into()), limit: Some(20), ..Default::default() };
    let recent_errors = app.store.list_requests(&errors).await.map_err(internal)?.unwrap_or_default();
    Ok(Json(json!({
        "routes": routes, "targets": targets, "providers": providers,
        "failovers": app.metrics.failovers.load(std::sync::atomic::Ordering::Relaxed),
        "recent_errors": recent_errors.iter().map(|r| row(&app, r, false)).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn windows_have_fixed_spans_and_buckets() {
        assert_eq!(super::window("1h").map(|w| w.2), Some(super::MINUTE));
        assert_eq!(super::window("30d").map(|w| w.1), Some(crate::store::Width::Day));
        assert!(super::window("2h").is_none());
    }
}
