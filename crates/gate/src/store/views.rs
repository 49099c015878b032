//! What the dashboard reads, each from a rollup or an index, never a scan of the log: usage per
//! time bucket (the raw log by minute for the last hour, hourly and daily rollups beyond it), a
//! bounded sample of the newest rows for latency percentiles, filtered pages of the log (one
//! index per filter, see migration 5), one request with its attempts, and the newest errors.

use super::usage::{read_sums, SUMS};
use super::{row_pg, row_sqlite, RequestRecord, Store, StoreError, UsageSums, COLUMNS};
use sqlx::Row;

/// Usage in one time bucket.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Bucket {
    pub start_ms: i64,
    #[serde(flatten)]
    pub sums: UsageSums,
}

/// How wide each bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// From the raw log (only for recent windows: the rows are read through the time index).
    Minute,
    Hour,
    Day,
}

/// p50, p90, p99 of the newest requests in a window.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    /// Requests the percentiles were taken over (the newest in the window, at most the sample size).
    pub sample: usize,
    pub ttfb_ms: [f64; 3],
    pub overhead_ms: [f64; 3],
    pub latency_ms: [f64; 3],
}

/// A page of the request log: every field narrows it; `before` is the cursor (the last row of
/// the previous page).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFilter {
    /// A key id, or `none` for requests without a key.
    pub key: Option<String>,
    pub model: Option<String>,
    pub target: Option<String>,
    pub account: Option<String>,
    /// `ok`, `error`, or an HTTP status.
    pub status: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// `ts_ms:id` of the last row already shown.
    pub before: Option<String>,
    pub limit: Option<i64>,
}

/// Rows per page at most.
pub const MAX_PAGE: i64 = 200;

#[derive(Debug)]
enum Arg {
    Text(String),
    Int(i64),
}

impl RequestFilter {
    /// The WHERE clause and its arguments; `Err` names the field that cannot be read.
    fn clause(&self) -> Result<(String, Vec<Arg>), String> {
        let mut conds: Vec<String> = Vec::new();
        let mut args = Vec::new();
        let mut arg = |conds: &mut Vec<String>, sql: &str, a: Arg| {
            args.push(a);
            conds.push(sql.replace('?', &format!("${}", args.len())));
        };
        match self.key.as_deref() {
            Some("none") => conds.push("key_id IS NULL".into()),
            Some(k) => arg(&mut conds, "key_id = ?", Arg::Text(k.into())),
            None => {}
        }
        for (col, v) in [("model", &self.model), ("target", &self.target), ("account_id", &self.account)] {
            if let Some(v) = v {
                arg(&mut conds, &format!("{col} = ?"), Arg::Text(v.clone()));
            }
        }
        match self.status.as_deref() {
            None | Some("") | Some("all") => {}
            Some("ok") => conds.push("error_code IS NULL".into()),
            Some("error") => conds.push("error_code IS NOT NULL".into()),
            Some(s) => {
                let code: i64 = s.parse().ok().filter(|c| (100..600).contains(c)).ok_or("status")?;
                // Failed statuses go through the errors index.
                let sql = if code >= 400 { "error_code IS NOT NULL AND status = ?" } else { "status = ?" };
                arg(&mut conds, sql, Arg::Int(code));
            }
        }
        if let Some(t) = self.since_ms {
            arg(&mut conds, "ts_ms >= ?", Arg::Int(t));
        }
        if let Some(t) = self.until_ms {
            arg(&mut conds, "ts_ms < ?", Arg::Int(t));
        }
        if let Some(b) = &self.before {
            let (ts, id) = b.split_once(':').ok_or("before")?;
            let ts: i64 = ts.parse().map_err(|_| "before")?;
            arg(&mut conds, "ts_ms <= ?", Arg::Int(ts));
            let n = args.len();
            args.push(Arg::Int(ts));
            args.push(Arg::Text(id.to_owned()));
            conds.push(format!("(ts_ms < ${} OR id < ${})", n + 1, n + 2));
        }
        let clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
        Ok((clause, args))
    }
}

fn percentiles(mut v: Vec<f64>) -> [f64; 3] {
    if v.is_empty() {
        return [0.0; 3];
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    [at(0.5), at(0.9), at(0.99)]
}

macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}

impl Store {
    /// Usage per bucket since `since_ms`, oldest first, for one key or all; empty buckets are
    /// left out.
    pub async fn buckets(&self, since_ms: i64, width: Width, key: Option<&str>) -> Result<Vec<Bucket>, StoreError> {
        let (sql, period, since) = match width {
            Width::Minute => (
                "SELECT (ts_ms / 60000) * 60000, CAST(COUNT(*) AS BIGINT), \
                 CAST(SUM(CASE WHEN error_code IS NULL THEN 0 ELSE 1 END) AS BIGINT), \
                 CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(cached_tokens) AS BIGINT), \
                 CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(reasoning_tokens) AS BIGINT), \
                 CAST(SUM(cost_usd) AS DOUBLE PRECISION) FROM request_log WHERE ts_ms >= $1"
                    .to_owned(),
                "",
                since_ms,
            ),
            Width::Hour | Width::Day => (
                format!("SELECT bucket_ms, {SUMS} FROM usage_rollup WHERE bucket_ms >= $1 AND period = $2"),
                if width == Width::Hour { "hour" } else { "day" },
                since_ms - since_ms.rem_euclid(if width == Width::Hour { 3_600_000 } else { 86_400_000 }),
            ),
        };
        // The key is the last placeholder: $2 on the raw log, $3 after the rollups' period.
        let key_arg = if period.is_empty() { 2 } else { 3 };
        let key_sql = if key.is_some() { format!(" AND key_id = ${key_arg}") } else { String::new() };
        let sql = format!("{sql}{key_sql} GROUP BY 1 ORDER BY 1");
        macro_rules! run {
            ($p:expr) => {{
                let q = sqlx::query(&sql).bind(since);
                let q = if period.is_empty() { q } else { q.bind(period) };
                let q = match key {
                    Some(k) => q.bind(k),
                    None => q,
                };
                q.fetch_all($p).await?.iter().map(|r| Bucket { start_ms: r.get(0), sums: read_sums!(r) }).collect()
            }};
        }
        Ok(match self {
            Store::Sqlite(p) => run!(p),
            Store::Postgres(p) => run!(p),
        })
    }

    /// Percentiles over the newest `sample` requests since `since_ms` (through the time index).
    pub async fn timings(&self, since_ms: i64, sample: i64) -> Result<Timings, StoreError> {
        let q = "SELECT ttfb_ms, overhead_us, latency_ms FROM request_log WHERE ts_ms >= $1 \
                 ORDER BY ts_ms DESC LIMIT $2";
        let rows: Vec<(Option<i64>, i64, i64)> = match self {
            Store::Sqlite(p) => sqlx::query_as(q).bind(since_ms).bind(sample).fetch_all(p).await?,
            Store::Postgres(p) => sqlx::query_as(q).bind(since_ms).bind(sample).fetch_all(p).await?,
        };
        Ok(Timings {
            sample: rows.len(),
            ttfb_ms: percentiles(rows.iter().filter_map(|r| r.0).map(|t| t as f64).collect()),
            overhead_ms: percentiles(rows.iter().map(|r| r.1 as f64 / 1000.0).collect()),
            latency_ms: percentiles(rows.iter().map(|r| r.2 as f64).collect()),
        })
    }

    /// One page of the log, newest first; a filter that cannot be read is `Ok(Err(field))`.
    pub async fn list_requests(&self, f: &RequestFilter) -> Result<Result<Vec<RequestRecord>, String>, StoreError> {
        let (clause, args) = match f.clause() {
            Ok(c) => c,
            Err(field) => return Ok(Err(field)),
        };
        let limit = f.limit.unwrap_or(50).clamp(1, MAX_PAGE);
        let sql = format!(
            "SELECT {COLUMNS} FROM request_log {clause} ORDER BY ts_ms DESC, id DESC LIMIT ${}",
            args.len() + 1
        );
        Ok(Ok(match self {
            Store::Sqlite(p) => {
                bind_args!(sqlx::query(&sql), &args).bind(limit).fetch_all(p).await?.iter().map(row_sqlite).collect()
            }
            Store::Postgres(p) => {
                bind_args!(sqlx::query(&sql), &args).bind(limit).fetch_all(p).await?.iter().map(row_pg).collect()
            }
        }))
    }

    /// Requests and failed requests per target since `since_ms` (the routes view's health), in
    /// one grouped read over the `(target, ts)` index.
    pub async fn recent_by_target(&self, since_ms: i64) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let q = "SELECT target, CAST(COUNT(*) AS BIGINT), \
                 CAST(SUM(CASE WHEN error_code IS NULL THEN 0 ELSE 1 END) AS BIGINT) \
                 FROM request_log WHERE ts_ms >= $1 GROUP BY target";
        Ok(match self {
            Store::Sqlite(p) => sqlx::query_as(q).bind(since_ms).fetch_all(p).await?,
            Store::Postgres(p) => sqlx::query_as(q).bind(since_ms).fetch_all(p).await?,
        })
    }

    /// One request by id.
    pub async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM request_log WHERE id = $1");
        Ok(match self {
            Store::Sqlite(p) => sqlx::query(&sql).bind(id).fetch_optional(p).await?.as_ref().map(row_sqlite),
            Store::Postgres(p) => sqlx::query(&sql).bind(id).fetch_optional(p).await?.as_ref().map(row_pg),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_number_their_placeholders_in_order() {
        let f = RequestFilter {
            key: Some("none".into()),
            model: Some("m".into()),
            status: Some("429".into()),
            before: Some("1700:req_9".into()),
            ..Default::default()
        };
        let (sql, args) = f.clause().unwrap();
        assert_eq!(
            sql,
            "WHERE key_id IS NULL AND model = $1 AND error_code IS NOT NULL AND status = $2 AND ts_ms <= $3 \
             AND (ts_ms < $4 OR id < $5)"
        );
        assert_eq!(args.len(), 5);
        let bad = |f: RequestFilter| f.clause().unwrap_err();
        assert_eq!(bad(RequestFilter { status: Some("teapot".into()), ..Default::default() }), "status");
        assert_eq!(bad(RequestFilter { before: Some("x".into()), ..Default::default() }), "before");
        assert_eq!(RequestFilter::default().clause().unwrap().0, "");
    }

    #[test]
    fn percentiles_of_a_sample() {
        assert_eq!(percentiles(vec![]), [0.0; 3]);
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentiles(v), [51.0, 90.0, 99.0]);
    }
}
