//! Usage rollups: hourly and daily sums per (key, model, target, account), written in the same
//! transaction as the request-log rows they count, and kept after the raw log is pruned. Reports
//! (`codex-gate usage`, the admin API) and the limits' starting counts read these.

use super::{RequestRecord, Store, StoreError};
use sqlx::Row;
use std::collections::BTreeMap;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// One group's sums.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct UsageSums {
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub cached_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_usd: f64,
}

impl std::ops::AddAssign<&UsageSums> for UsageSums {
    fn add_assign(&mut self, o: &UsageSums) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.input_tokens += o.input_tokens;
        self.cached_tokens += o.cached_tokens;
        self.output_tokens += o.output_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.cost_usd += o.cost_usd;
    }
}

impl UsageSums {
    fn add(&mut self, r: &RequestRecord) {
        self.requests += 1;
        self.errors += i64::from(r.error_code.is_some());
        self.input_tokens += r.input_tokens;
        self.cached_tokens += r.cached_tokens;
        self.output_tokens += r.output_tokens;
        self.reasoning_tokens += r.reasoning_tokens;
        self.cost_usd += r.cost_usd;
    }
}

/// (period, bucket start, key, model, target, account).
type GroupKey<'a> = (&'static str, i64, &'a str, &'a str, &'a str, &'a str);

/// A batch of rows summed into rollup groups, both periods; rows whose id is in `skip` (already
/// logged) are left out.
pub(super) fn aggregate<'a>(rows: &'a [RequestRecord], skip: &[String]) -> BTreeMap<GroupKey<'a>, UsageSums> {
    let mut groups = BTreeMap::new();
    for r in rows.iter().filter(|r| skip.is_empty() || !skip.contains(&r.id)) {
        for (period, len) in [("hour", HOUR_MS), ("day", DAY_MS)] {
            let key = (
                period,
                r.ts_ms - r.ts_ms.rem_euclid(len),
                r.key_id.as_deref().unwrap_or(""),
                r.model.as_str(),
                r.target.as_str(),
                r.account_id.as_deref().unwrap_or(""),
            );
            groups.entry(key).or_insert_with(UsageSums::default).add(r);
        }
    }
    groups
}

pub(super) const UPSERT: &str = "INSERT INTO usage_rollup (period, bucket_ms, key_id, model, target, account_id, \
    requests, errors, input_tokens, cached_tokens, output_tokens, reasoning_tokens, cost_usd) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
    ON CONFLICT (period, bucket_ms, key_id, model, target, account_id) DO UPDATE SET \
    requests = usage_rollup.requests + excluded.requests, errors = usage_rollup.errors + excluded.errors, \
    input_tokens = usage_rollup.input_tokens + excluded.input_tokens, \
    cached_tokens = usage_rollup.cached_tokens + excluded.cached_tokens, \
    output_tokens = usage_rollup.output_tokens + excluded.output_tokens, \
    reasoning_tokens = usage_rollup.reasoning_tokens + excluded.reasoning_tokens, \
    cost_usd = usage_rollup.cost_usd + excluded.cost_usd";

/// Bind one group to [`UPSERT`].
macro_rules! bind_group {
    ($q:expr, $k:expr, $s:expr) => {{
        let (period, bucket, key, model, target, account) = $k;
        $q.bind(*period)
            .bind(*bucket)
            .bind(*key)
            .bind(*model)
            .bind(*target)
            .bind(*account)
            .bind($s.requests)
            .bind($s.errors)
            .bind($s.input_tokens)
            .bind($s.cached_tokens)
            .bind($s.output_tokens)
            .bind($s.reasoning_tokens)
            .bind($s.cost_usd)
    }};
}
pub(super) use bind_group;

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Key,
    Model,
    Account,
    Target,
}

impl GroupBy {
    fn column(self) -> &'static str {
        match self {
            GroupBy::Key => "key_id",
            GroupBy::Model => "model",
            GroupBy::Account => "account_id",
            GroupBy::Target => "target",
        }
    }
}

/// One line of a report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UsageLine {
    /// The group's value (`""`: none, e.g. requests without a key).
    pub group: String,
    #[serde(flatten)]
    pub sums: UsageSums,
}

/// Read [`UsageSums`] from columns 1–7 of a row (column 0 is the group).
macro_rules! read_sums {
    ($r:expr) => {{
        let r = $r;
        UsageSums {
            requests: r.get(1),
            errors: r.get(2),
            input_tokens: r.get(3),
            cached_tokens: r.get(4),
            output_tokens: r.get(5),
            reasoning_tokens: r.get(6),
            cost_usd: r.get(7),
        }
    }};
}
pub(super) use read_sums;

pub(super) const SUMS: &str =
    "CAST(SUM(requests) AS BIGINT), CAST(SUM(errors) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT), \
    CAST(SUM(cached_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(reasoning_tokens) AS BIGINT), \
    CAST(SUM(cost_usd) AS DOUBLE PRECISION)";

impl Store {
    /// Usage since `since_ms`, grouped, biggest cost first, exact to the hour (the start is
    /// rounded down to its hour). Whole days come from the daily rollups and only the first,
    /// partial day from the hourly ones, so a 30-day report reads ~30 rows per group instead of
    /// ~720 (the dashboard's top keys and models on a long window).
    pub async fn usage_report(&self, by: GroupBy, since_ms: i64) -> Result<Vec<UsageLine>, StoreError> {
        let since = since_ms - since_ms.rem_euclid(HOUR_MS);
        let first_day = since + (DAY_MS - since.rem_euclid(DAY_MS)) % DAY_MS;
        let col = by.column();
        let q = format!(
            "SELECT {col}, {SUMS} FROM usage_rollup WHERE (period = 'hour' AND bucket_ms >= $1 AND bucket_ms < $2) \
             OR (period = 'day' AND bucket_ms >= $2) GROUP BY {col} ORDER BY 8 DESC, 2 DESC, 1"
        );
        macro_rules! run {
            ($p:expr) => {
                sqlx::query(&q)
                    .bind(since)
                    .bind(first_day)
                    .fetch_all($p)
                    .await?
                    .iter()
                    .map(|r| UsageLine { group: r.get(0), sums: read_sums!(r) })
                    .collect()
            };
        }
        Ok(match self {
            Store::Sqlite(p) => run!(p),
            Store::Postgres(p) => run!(p),
        })
    }

    /// One key's usage since `since_ms`, from the raw log (exact to the millisecond; limits
    /// read it to start counting a window that is already under way).
    pub async fn key_usage_since(&self, key_id: &str, since_ms: i64) -> Result<UsageSums, StoreError> {
        let q = "SELECT '' AS g, CAST(COUNT(*) AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN error_code IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(reasoning_tokens), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) \
                 FROM request_log WHERE key_id = $1 AND ts_ms >= $2";
        Ok(match self {
            Store::Sqlite(p) => read_sums!(sqlx::query(q).bind(key_id).bind(since_ms).fetch_one(p).await?),
            Store::Postgres(p) => read_sums!(sqlx::query(q).bind(key_id).bind(since_ms).fetch_one(p).await?),
        })
    }

    /// One key's spend since `since_ms` from the rollups, for periods longer than the raw
    /// log keeps (a monthly budget with a 7-day retention): whole hours before the raw log's
    /// oldest row come from the hourly rollup.
    pub async fn key_cost_since(&self, key_id: &str, since_ms: i64) -> Result<f64, StoreError> {
        let q = "SELECT CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) FROM usage_rollup \
                 WHERE period = 'hour' AND key_id = $1 AND bucket_ms >= $2";
        let since = since_ms - since_ms.rem_euclid(HOUR_MS);
        Ok(match self {
            Store::Sqlite(p) => sqlx::query_scalar(q).bind(key_id).bind(since).fetch_one(p).await?,
            Store::Postgres(p) => sqlx::query_scalar(q).bind(key_id).bind(since).fetch_one(p).await?,
        })
    }

    /// Drop hourly rollups older than `before_ms` (daily ones are kept).
    pub async fn prune_rollups(&self, before_ms: i64) -> Result<u64, StoreError> {
        let q = "DELETE FROM usage_rollup WHERE period = 'hour' AND bucket_ms < $1";
        Ok(match self {
            Store::Sqlite(p) => sqlx::query(q).bind(before_ms).execute(p).await?.rows_affected(),
            Store::Postgres(p) => sqlx::query(q).bind(before_ms).execute(p).await?.rows_affected(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_sums_into_hour_and_day_groups() {
        let row = |ts_ms, key: Option<&str>, cost, err: bool| RequestRecord {
            ts_ms,
            key_id: key.map(str::to_owned),
            model: "m".into(),
            target: "p/m".into(),
            input_tokens: 10,
            output_tokens: 2,
            cost_usd: cost,
            error_code: err.then(|| "x".to_owned()),
            ..Default::default()
        };
        let rows = [
            row(HOUR_MS * 30 + 5, Some("k1"), 0.5, false),
            row(HOUR_MS * 30 + 999, Some("k1"), 0.25, true),
            row(HOUR_MS * 31, Some("k1"), 1.0, false),
            row(HOUR_MS * 30, None, 2.0, false),
        ];
        let g = aggregate(&rows, &[]);
        let h30 = &g[&("hour", HOUR_MS * 30, "k1", "m", "p/m", "")];
        assert_eq!((h30.requests, h30.errors, h30.input_tokens, h30.cost_usd), (2, 1, 20, 0.75));
        assert_eq!(g[&("hour", HOUR_MS * 31, "k1", "m", "p/m", "")].requests, 1);
        // Hours 30 and 31 are both in day 1 (24 h … 48 h).
        let d1 = &g[&("day", DAY_MS, "k1", "m", "p/m", "")];
        assert_eq!((d1.requests, d1.cost_usd), (3, 1.75));
        assert_eq!(g[&("day", DAY_MS, "", "m", "p/m", "")].cost_usd, 2.0);
        assert_eq!(g.len(), 5);
    }
}
