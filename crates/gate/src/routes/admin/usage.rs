//! `GET /api/usage?by=key|model|account|target&since=7d`: the usage rollups, grouped, with cost.

use crate::app::App;
use crate::error::GateError;
use crate::store::GroupBy;
use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    by: Option<GroupBy>,
    since: Option<String>,
}

/// `7d`, `24h`, `30m` → milliseconds.
pub fn parse_since(s: &str) -> Option<i64> {
    let (n, unit) = s.trim().split_at(s.trim().len().checked_sub(1)?);
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    Some(
        n * match unit {
            "d" => 86_400_000,
            "h" => 3_600_000,
            "m" => 60_000,
            _ => return None,
        },
    )
}

pub async fn report(
    State(app): State<Arc<App>>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, GateError> {
    let Query(q) =
        q.map_err(|e| GateError::bad_request(format!("{e}; use ?by=key|model|account|target&since=7d"), None))?;
    let since = q.since.as_deref().unwrap_or("7d");
    let span = parse_since(since)
        .ok_or_else(|| GateError::bad_request(format!("since {since:?}: use 7d, 24h or 30m"), Some("since".into())))?;
    let by = q.by.unwrap_or(GroupBy::Key);
    let lines =
        app.store.usage_report(by, crate::now_ms() - span).await.map_err(|e| GateError::Internal(e.to_string()))?;
    Ok(Json(json!({"by": by, "since": since, "lines": lines})))
}
