//! Persistent state behind one interface with two real backends: SQLite (embedded default, WAL)
//! and PostgreSQL. Each backend has its own migrations; the queries are shared where the SQL is.
//!
//! Nothing on the request path awaits the store: request-log records reach it through the
//! batched writer in `crate::ledger`.

mod accounts;
mod keys;
mod migrations;
mod usage;
mod views;

pub use accounts::AccountRow;
pub use keys::KeyRow;
pub use usage::{GroupBy, UsageLine, UsageSums};
pub use views::{Bucket, RequestFilter, Timings, Width, MAX_PAGE};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// One row of the request log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestRecord {
    pub id: String,
    /// Unix milliseconds when the request arrived.
    pub ts_ms: i64,
    /// `responses` or `chat` (the client's API).
    pub api: String,
    pub route: String,
    /// `provider/model` that answered (or was tried last).
    pub target: String,
    /// The model the client asked for.
    pub model: String,
    pub stream: bool,
    pub status: u16,
    pub error_code: Option<String>,
    pub attempts: u32,
    pub input_tokens: i64,
    pub cached_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub latency_ms: i64,
    pub ttfb_ms: Option<i64>,
    pub overhead_us: i64,
    /// The client key that asked (`None`: a loopback client without a key).
    pub key_id: Option<String>,
    /// The pool account that served (pool targets only).
    pub account_id: Option<String>,
    /// What the request cost, in USD (for subscription traffic: its API-equivalent price).
    pub cost_usd: f64,
    /// Each attempt: where it went, why, and how it ended (the dashboard's request detail).
    pub trail: Vec<Attempt>,
}

/// One attempt of a request on one target (and, for the pool, one account).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Attempt {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Why this target was chosen (or, after a failure, another account on it).
    pub why: std::borrow::Cow<'static, str>,
    /// Why the pool picked the account, kept structured (formatted only where it is shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick: Option<AccountPick>,
    /// The error code it ended with; `None`: it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was sent, in ms after the request arrived.
    #[serde(default)]
    pub at_ms: u64,
    /// Time from sending to its answer (or failure).
    pub ms: u64,
}

/// The pool's reason for an account, and how many accounts could have served.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct AccountPick {
    pub why: std::borrow::Cow<'static, str>,
    pub usable: u32,
    pub of: u32,
}

impl std::fmt::Display for AccountPick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} of {} accounts usable)", self.why, self.usable, self.of)
    }
}

impl RequestRecord {
    /// PostgreSQL refuses NUL in text; clients and upstreams choose some of these strings.
    fn without_nul(&self) -> std::borrow::Cow<'_, RequestRecord> {
        let has = |s: &str| memchr::memchr(0, s.as_bytes()).is_some();
        let texts = [&self.id, &self.api, &self.route, &self.target, &self.model];
        if !texts.iter().any(|s| has(s)) && !self.error_code.as_deref().is_some_and(has) {
            return std::borrow::Cow::Borrowed(self);
        }
        let clean = |s: &str| s.replace('\0', "\u{fffd}");
        let mut r = self.clone();
        for f in [&mut r.id, &mut r.api, &mut r.route, &mut r.target, &mut r.model] {
            *f = clean(f);
        }
        r.error_code = r.error_code.as_deref().map(clean);
        std::borrow::Cow::Owned(r)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store url {0:?} is not sqlite://… or postgres://…")]
    BadUrl(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database schema: {0}")]
    Schema(String),
}

/// The store: one of the two backends.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

const COLUMNS: &str = "id, ts_ms, api, route, target, model, stream, status, error_code, attempts, input_tokens, \
     cached_tokens, output_tokens, reasoning_tokens, latency_ms, ttfb_ms, overhead_us, key_id, account_id, cost_usd, detail";

impl Store {
    /// Open (creating if needed) the store at `url` and bring its schema up to date.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                // A batch of the request log is inserted under a savepoint, so SQLite keeps a
                // statement journal of the pages it changes; in a temporary file that was
                // about one write() per logged request (docs/benchmarks.md, profiling item 10).
                .pragma("temp_store", "memory");
            let path = opts.get_filename();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                private_dir(dir).map_err(|source| StoreError::DataDir { path: dir.display().to_string(), source })?;
            }
            // The database holds emails, plans and the request log. SQLite creates its -wal and
            // -shm files with the database file's mode, so creating that one 0600 covers all three.
            private_file(path).map_err(|source| StoreError::DataDir { path: path.display().to_string(), source })?;
            Store::Sqlite(SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            Store::Postgres(PgPoolOptions::new().max_connections(8).connect_with(opts).await?)
        } else {
            return Err(StoreError::BadUrl(url.to_owned()));
        };
        store.migrate().await?;
        Ok(store)
    }

    /// A PostgreSQL store from ready connect options (tests use a private schema this way).
    pub async fn open_postgres(opts: PgConnectOptions) -> Result<Store, StoreError> {
        let store = Store::Postgres(PgPoolOptions::new().max_connections(4).connect_with(opts).await?);
        store.migrate().await?;
        Ok(store)
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(p) => migrations::run_sqlite(p).await,
            Store::Postgres(p) => migrations::run_postgres(p).await,
        }
    }

    /// The schema version (number of applied migrations).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let q = "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";
        Ok(match self {
            Store::Sqlite(p) => sqlx::query_scalar(q).fetch_one(p).await?,
            Store::Postgres(p) => sqlx::query_scalar(q).fetch_one(p).await?,
        })
    }

    /// Insert a batch of request-log rows, and add them to the usage rollups, in one transaction.
    pub async fn insert_requests(&self, rows: &[RequestRecord]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite(p) => {
                let mut tx = p.begin().await?;
                let mut skipped = Vec::new();
                for chunk in chunks(rows) {
                    insert_chunk!(tx, chunk, false, skipped);
                }
                for (k, s) in &usage::aggregate(rows, &skipped) {
                    usage::bind_group!(sqlx::query(usage::UPSERT), k, s).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Store::Postgres(p) => {
                let clean: Vec<std::borrow::Cow<'_, RequestRecord>> = rows.iter().map(|r| r.without_nul()).collect();
                let cleaned;
                let rows = if clean.iter().all(|c| matches!(c, std::borrow::Cow::Borrowed(_))) {
                    rows
                } else {
                    cleaned = clean.into_iter().map(std::borrow::Cow::into_owned).collect::<Vec<_>>();
                    &cleaned
                };
                let mut tx = p.begin().await?;
                let mut skipped = Vec::new();
                for chunk in chunks(rows) {
                    insert_chunk!(tx, chunk, true, skipped);
                }
                for (k, s) in &usage::aggregate(rows, &skipped) {
                    usage::bind_group!(sqlx::query(usage::UPSERT), k, s).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// The newest `limit` rows, newest first.
    pub async fn recent_requests(&self, limit: i64) -> Result<Vec<RequestRecord>, StoreError> {
        let q = format!("SELECT {COLUMNS} FROM request_log ORDER BY ts_ms DESC, id DESC LIMIT $1");
        Ok(match self {
            Store::Sqlite(p) => sqlx::query(&q).bind(limit).fetch_all(p).await?.iter().map(row_sqlite).collect(),
            Store::Postgres(p) => sqlx::query(&q).bind(limit).fetch_all(p).await?.iter().map(row_pg).collect(),
        })
    }

    /// Requests since `since_ms`: (all, failed, failed over to a later target or account).
    pub async fn request_summary(&self, since_ms: i64) -> Result<(i64, i64, i64), StoreError> {
        let q = "SELECT COUNT(*), COALESCE(SUM(CASE WHEN error_code IS NOT NULL THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN attempts > 1 THEN 1 ELSE 0 END), 0) FROM request_log WHERE ts_ms >= $1";
        Ok(match self {
            Store::Sqlite(p) => sqlx::query_as(q).bind(since_ms).fetch_one(p).await?,
            Store::Postgres(p) => sqlx::query_as(q).bind(since_ms).fetch_one(p).await?,
        })
    }

    /// The newest `limit` requests since `since_ms` that took more than one attempt.
    pub async fn recent_failovers(&self, since_ms: i64, limit: i64) -> Result<Vec<RequestRecord>, StoreError> {
        let q = format!(
            "SELECT {COLUMNS} FROM request_log WHERE ts_ms >= $1 AND attempts > 1 ORDER BY ts_ms DESC, id DESC LIMIT $2"
        );
        Ok(match self {
            Store::Sqlite(p) => {
                sqlx::query(&q).bind(since_ms).bind(limit).fetch_all(p).await?.iter().map(row_sqlite).collect()
            }
            Store::Postgres(p) => {
                sqlx::query(&q).bind(since_ms).bind(limit).fetch_all(p).await?.iter().map(row_pg).collect()
            }
        })
    }

    /// Number of rows in the request log.
    pub async fn count_requests(&self) -> Result<i64, StoreError> {
        let q = "SELECT COUNT(*) FROM request_log";
        Ok(match self {
            Store::Sqlite(p) => sqlx::query_scalar(q).fetch_one(p).await?,
            Store::Postgres(p) => sqlx::query_scalar(q).fetch_one(p).await?,
        })
    }

    /// Enforce retention in one go: delete rows older than `before_ms`, and all but the newest
    /// `max_rows`, step by step ([`Store::prune_step`]). Returns the number of rows deleted.
    pub async fn prune_requests(&self, before_ms: i64, max_rows: i64) -> Result<u64, StoreError> {
        let cutoff = self.retention_cutoff(before_ms, max_rows).await?;
        let mut deleted = 0;
        loop {
            let n = self.prune_step(cutoff).await?;
            deleted += n;
            if n < PRUNE_STEP_ROWS as u64 {
                return Ok(deleted);
            }
        }
    }

    /// Where a retention pass cuts: rows older than the result go. That is `before_ms`, or the
    /// time of the `max_rows`-th newest row when that is later. Found once per pass: it walks
    /// `max_rows` index entries.
    pub async fn retention_cutoff(&self, before_ms: i64, max_rows: i64) -> Result<i64, StoreError> {
        let q = "SELECT ts_ms FROM request_log ORDER BY ts_ms DESC LIMIT 1 OFFSET $1";
        let nth: Option<i64> = match self {
            Store::Sqlite(p) => sqlx::query_scalar(q).bind(max_rows.max(1) - 1).fetch_optional(p).await?,
            Store::Postgres(p) => sqlx::query_scalar(q).bind(max_rows.max(1) - 1).fetch_optional(p).await?,
        };
        Ok(nth.map_or(before_ms, |t| t.max(before_ms)))
    }

    /// One retention step: delete the oldest rows before `cutoff`, at most [`PRUNE_STEP_ROWS`].
    /// Returns the rows deleted (fewer than the step: the pass is done).
    pub async fn prune_step(&self, cutoff: i64) -> Result<u64, StoreError> {
        let sqlite = "DELETE FROM request_log WHERE rowid IN \
                      (SELECT rowid FROM request_log WHERE ts_ms < $1 ORDER BY ts_ms LIMIT $2)";
        let postgres = "DELETE FROM request_log WHERE id IN \
                        (SELECT id FROM request_log WHERE ts_ms < $1 ORDER BY ts_ms LIMIT $2)";
        Ok(match self {
            Store::Sqlite(p) => {
                sqlx::query(sqlite).bind(cutoff).bind(PRUNE_STEP_ROWS).execute(p).await?.rows_affected()
            }
            Store::Postgres(p) => {
                sqlx::query(postgres).bind(cutoff).bind(PRUNE_STEP_ROWS).execute(p).await?.rows_affected()
            }
        })
    }

    /// Close the pool (waits for connections to be returned).
    pub async fn close(&self) {
        match self {
            Store::Sqlite(p) => p.close().await,
            Store::Postgres(p) => p.close().await,
        }
    }
}

/// Rows one retention step deletes at most. A pass over a 10M-row log deleted 100,000 rows in
/// one 9 s statement, during which the log's writer wrote nothing (and, on SQLite, held the
/// write lock); in steps the writer writes its batches between them.
pub const PRUNE_STEP_ROWS: i64 = 2_000;

/// Multi-row INSERTs come in these sizes only, so each size's SQL is parsed once per connection
/// and then reused from the statement cache (a statement per batch length was re-parsed every
/// time: most of the writer's CPU). 256 rows × 21 columns is within both backends' bind limits.
const CHUNK_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

fn chunks(rows: &[RequestRecord]) -> impl Iterator<Item = &[RequestRecord]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let n = CHUNK_SIZES.into_iter().find(|&c| c <= rest.len())?;
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

/// Columns written per row (the length of [`COLUMNS`]).
const NCOLS: usize = 21;

/// The multi-row INSERT for `n` rows (one of [`CHUNK_SIZES`]), built once per backend and size:
/// sqlx's `QueryBuilder` formatted every placeholder of every batch anew.
fn insert_sql(n: usize, postgres: bool) -> &'static str {
    static SQL: std::sync::OnceLock<[Vec<String>; 2]> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        [false, true].map(|pg| {
            CHUNK_SIZES
                .iter()
                .map(|&rows| {
                    let mut sql = format!("INSERT INTO request_log ({COLUMNS}) VALUES ");
                    for r in 0..rows {
                        sql.push_str(if r == 0 { "(" } else { ", (" });
                        for c in 0..NCOLS {
                            if c > 0 {
                                sql.push_str(", ");
                            }
                            if pg {
                                sql.push_str(&format!("${}", r * NCOLS + c + 1));
                            } else {
                                sql.push('?');
                            }
                        }
                        sql.push(')');
                    }
                    sql.push_str(" ON CONFLICT (id) DO NOTHING");
                    sql
                })
                .collect()
        })
    });
    let i = CHUNK_SIZES.iter().position(|&c| c == n).expect("chunks() only yields CHUNK_SIZES");
    &all[usize::from(postgres)][i]
}

/// Insert one chunk inside a savepoint. Rows already in the log (a batch written twice) must
/// not be counted in the rollups again: when the chunk did not insert every row, it is undone
/// and written row by row, and the ids that were there already go to `skipped`. The common
/// case stays one statement, with no ids read back.
macro_rules! insert_chunk {
    ($tx:expr, $chunk:expr, $pg:expr, $skipped:expr) => {{
        let chunk = $chunk;
        let details = details(chunk);
        let mut sp = sqlx::Acquire::begin(&mut $tx).await?;
        let n = bind_rows(sqlx::query(insert_sql(chunk.len(), $pg)), chunk, &details)
            .execute(&mut *sp)
            .await?
            .rows_affected();
        if n as usize == chunk.len() {
            sp.commit().await?;
        } else {
            sp.rollback().await?;
            for (r, d) in chunk.iter().zip(&details) {
                let (one, d) = (std::slice::from_ref(r), std::slice::from_ref(d));
                if bind_rows(sqlx::query(insert_sql(1, $pg)), one, d).execute(&mut *$tx).await?.rows_affected() == 0 {
                    $skipped.push(r.id.clone());
                }
            }
        }
    }};
}
use insert_chunk;

type Insert<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>;

/// Each row's attempt trail as JSON, serialized in the writer task rather than on the request path.
fn details(rows: &[RequestRecord]) -> Vec<Option<String>> {
    rows.iter().map(|r| (!r.trail.is_empty()).then(|| serde_json::to_string(&r.trail).unwrap_or_default())).collect()
}

fn bind_rows<'a, DB>(mut q: Insert<'a, DB>, rows: &'a [RequestRecord], details: &'a [Option<String>]) -> Insert<'a, DB>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    for (r, d) in rows.iter().zip(details) {
        q = q
            .bind(r.id.as_str())
            .bind(r.ts_ms)
            .bind(r.api.as_str())
            .bind(r.route.as_str())
            .bind(r.target.as_str())
            .bind(r.model.as_str())
            .bind(r.stream)
            .bind(i32::from(r.status))
            .bind(r.error_code.as_deref())
            .bind(r.attempts as i32)
            .bind(r.input_tokens)
            .bind(r.cached_tokens)
            .bind(r.output_tokens)
            .bind(r.reasoning_tokens)
            .bind(r.latency_ms)
            .bind(r.ttfb_ms)
            .bind(r.overhead_us)
            .bind(r.key_id.as_deref())
            .bind(r.account_id.as_deref())
            .bind(r.cost_usd)
            .bind(d.as_deref());
    }
    q
}

macro_rules! read_row {
    ($row:expr) => {{
        let r = $row;
        RequestRecord {
            id: r.get("id"),
            ts_ms: r.get("ts_ms"),
            api: r.get("api"),
            route: r.get("route"),
            target: r.get("target"),
            model: r.get("model"),
            stream: r.get("stream"),
            status: r.get::<i32, _>("status") as u16,
            error_code: r.get("error_code"),
            attempts: r.get::<i32, _>("attempts") as u32,
            input_tokens: r.get("input_tokens"),
            cached_tokens: r.get("cached_tokens"),
            output_tokens: r.get("output_tokens"),
            reasoning_tokens: r.get("reasoning_tokens"),
            latency_ms: r.get("latency_ms"),
            ttfb_ms: r.get("ttfb_ms"),
            overhead_us: r.get("overhead_us"),
            key_id: r.get("key_id"),
            account_id: r.get("account_id"),
            cost_usd: r.get("cost_usd"),
            trail: r.get::<Option<String>, _>("detail").and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default(),
        }
    }};
}

fn row_sqlite(r: &sqlx::sqlite::SqliteRow) -> RequestRecord {
    read_row!(r)
}

fn row_pg(r: &sqlx::postgres::PgRow) -> RequestRecord {
    read_row!(r)
}

/// Create `dir` (and its parents) if missing; the data directory itself is made owner-only.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let existed = dir.exists();
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    if !existed {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Create the database file owner-only, or take group/other access away from an existing one.
fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_into_the_fixed_statement_sizes() {
        for n in [1usize, 3, 5, 17, 255, 256, 257, 500, 1000] {
            let rows = vec![RequestRecord::default(); n];
            let sizes: Vec<usize> = chunks(&rows).map(<[_]>::len).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n, "{n}");
            assert!(sizes.iter().all(|s| CHUNK_SIZES.contains(s)), "{n}: {sizes:?}");
            assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "largest first: {sizes:?}");
        }
        assert_eq!(chunks(&vec![RequestRecord::default(); 500]).count(), 8);
    }

    #[test]
    fn insert_statements_have_one_placeholder_per_column_and_row() {
        assert_eq!(COLUMNS.split(',').count(), NCOLS);
        for n in CHUNK_SIZES {
            let lite = insert_sql(n, false);
            assert_eq!(lite.matches('?').count(), n * NCOLS, "{n}");
            assert_eq!(lite.matches("), (").count(), n - 1);
            let pg = insert_sql(n, true);
            assert!(pg.contains(&format!("${}) ON CONFLICT (id) DO NOTHING", n * NCOLS)), "{n}");
            assert!(!pg.contains(&format!("${}", n * NCOLS + 1)));
        }
    }
}
