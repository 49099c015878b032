//! Schema migrations, one ordered list per backend, run by sqlx's migrator: each is applied
//! once, in a transaction, under a lock held for the whole run (PostgreSQL: an advisory lock,
//! so instances starting together take turns), and recorded with its SHA-384 checksum in
//! `_sqlx_migrations`. A shipped migration that was edited, or a database migrated by a newer
//! codex-gate, is refused at start. Never edit one that has shipped: add a new one.

use super::StoreError;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType, Migrator};
use sqlx::{PgPool, SqlitePool};
use std::borrow::Cow;

/// What each migration does, by version (the same on both backends).
const DESCRIPTIONS: &[&str] = &[
    "request log",
    "settings and accounts",
    "account proxies",
    "client keys, request costs, usage rollups",
    "request detail and dashboard indexes",
];

/// Version 5 is the same SQL on both backends (its text is its checksum: keep it byte-identical).
const V5_DETAIL: &str = r#"
ALTER TABLE request_log ADD COLUMN detail TEXT;
CREATE INDEX request_log_model_ts ON request_log (model, ts_ms);
CREATE INDEX request_log_target_ts ON request_log (target, ts_ms);
CREATE INDEX request_log_account_ts ON request_log (account_id, ts_ms);
CREATE INDEX request_log_errors_ts ON request_log (ts_ms) WHERE error_code IS NOT NULL;
"#;

const SQLITE: &[&str] = &[
    r#"
CREATE TABLE request_log (
    id TEXT PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    api TEXT NOT NULL,
    route TEXT NOT NULL,
    target TEXT NOT NULL,
    model TEXT NOT NULL,
    stream BOOLEAN NOT NULL,
    status INTEGER NOT NULL,
    error_code TEXT,
    attempts INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    ttfb_ms INTEGER,
    overhead_us INTEGER NOT NULL
);
CREATE INDEX request_log_ts ON request_log (ts_ms);
"#,
    r#"
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    chatgpt_user_id TEXT NOT NULL,
    chatgpt_account_id TEXT NOT NULL,
    email TEXT,
    plan_type TEXT,
    status TEXT NOT NULL,
    status_reason TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    weight REAL NOT NULL DEFAULT 1,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    id_token TEXT NOT NULL,
    access_expires_ms INTEGER,
    last_refresh_ms INTEGER,
    cooldown_until_ms INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    UNIQUE (chatgpt_user_id, chatgpt_account_id)
);
"#,
    "ALTER TABLE accounts ADD COLUMN proxy TEXT;",
    r#"
CREATE TABLE client_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    policy TEXT NOT NULL,
    expires_ms INTEGER,
    revoked_ms INTEGER,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
ALTER TABLE request_log ADD COLUMN key_id TEXT;
ALTER TABLE request_log ADD COLUMN account_id TEXT;
ALTER TABLE request_log ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
CREATE INDEX request_log_key_ts ON request_log (key_id, ts_ms);
CREATE TABLE usage_rollup (
    period TEXT NOT NULL,
    bucket_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    target TEXT NOT NULL,
    account_id TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    PRIMARY KEY (period, bucket_ms, key_id, model, target, account_id)
);
"#,
    V5_DETAIL,
];

const POSTGRES: &[&str] = &[
    r#"
CREATE TABLE request_log (
    id TEXT PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    api TEXT NOT NULL,
    route TEXT NOT NULL,
    target TEXT NOT NULL,
    model TEXT NOT NULL,
    stream BOOLEAN NOT NULL,
    status INTEGER NOT NULL,
    error_code TEXT,
    attempts INTEGER NOT NULL,
    input_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    ttfb_ms BIGINT,
    overhead_us BIGINT NOT NULL
);
CREATE INDEX request_log_ts ON request_log (ts_ms);
"#,
    r#"
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    chatgpt_user_id TEXT NOT NULL,
    chatgpt_account_id TEXT NOT NULL,
    email TEXT,
    plan_type TEXT,
    status TEXT NOT NULL,
    status_reason TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    weight DOUBLE PRECISION NOT NULL DEFAULT 1,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    id_token TEXT NOT NULL,
    access_expires_ms BIGINT,
    last_refresh_ms BIGINT,
    cooldown_until_ms BIGINT NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    UNIQUE (chatgpt_user_id, chatgpt_account_id)
);
"#,
    "ALTER TABLE accounts ADD COLUMN proxy TEXT;",
    r#"
CREATE TABLE client_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    policy TEXT NOT NULL,
    expires_ms BIGINT,
    revoked_ms BIGINT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
ALTER TABLE request_log ADD COLUMN key_id TEXT;
ALTER TABLE request_log ADD COLUMN account_id TEXT;
ALTER TABLE request_log ADD COLUMN cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
CREATE INDEX request_log_key_ts ON request_log (key_id, ts_ms);
CREATE TABLE usage_rollup (
    period TEXT NOT NULL,
    bucket_ms BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    target TEXT NOT NULL,
    account_id TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (period, bucket_ms, key_id, model, target, account_id)
);
"#,
    V5_DETAIL,
];

fn migrator(sqls: &'static [&'static str]) -> Migrator {
    let migrations = sqls
        .iter()
        .zip(DESCRIPTIONS)
        .enumerate()
        .map(|(i, (sql, what))| {
            Migration::new(i as i64 + 1, Cow::Borrowed(what), MigrationType::Simple, Cow::Borrowed(sql), false)
        })
        .collect::<Vec<_>>();
    Migrator { migrations: Cow::Owned(migrations), ignore_missing: false, locking: true, no_tx: false }
}

/// The newest schema version this binary knows.
pub const LATEST: i64 = SQLITE.len() as i64;

fn refuse(e: MigrateError) -> StoreError {
    match e {
        MigrateError::VersionMissing(v) => StoreError::Schema(format!(
            "the database has schema version {v}, newer than this codex-gate knows ({LATEST}): it was \
             migrated by a newer release; run that release (or a newer one) instead"
        )),
        MigrateError::VersionMismatch(v) => StoreError::Schema(format!(
            "migration {v} recorded in the database differs from this binary's (checksum mismatch); \
             the database was migrated by a different build"
        )),
        MigrateError::Dirty(v) => {
            StoreError::Schema(format!("migration {v} was left half-applied; restore the database from a backup"))
        }
        other => StoreError::Schema(other.to_string()),
    }
}

/// Databases made before the migrator record versions in `schema_migrations`: carry them over
/// (with this binary's checksums, which are the SQL those versions ran) so nothing runs twice.
async fn adopt<DB>(conn: &mut DB::Connection, sqls: &[&str]) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    DB::Connection: Migrate,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Vec<u8>: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let old: Option<(i64,)> = sqlx::query_as(
        "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations WHERE EXISTS (SELECT 1 FROM schema_migrations)",
    )
    .fetch_optional(&mut *conn)
    .await
    .ok()
    .flatten();
    let Some((old,)) = old.filter(|(v,)| *v > 0) else { return Ok(()) };
    conn.ensure_migrations_table().await.map_err(refuse)?;
    let (have,): (i64,) =
        sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM _sqlx_migrations").fetch_one(&mut *conn).await?;
    if have > 0 {
        return Ok(());
    }
    for (i, sql) in sqls.iter().enumerate().take(old as usize) {
        use sha2::Digest;
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ($1, $2, $3, $4, $5)")
            .bind(i as i64 + 1)
            .bind(DESCRIPTIONS.get(i).copied().unwrap_or("").to_owned())
            .bind(true)
            .bind(sha2::Sha384::digest(sql.as_bytes()).to_vec())
            .bind(0i64)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DROP TABLE schema_migrations").execute(&mut *conn).await?;
    tracing::info!(version = old, "schema history carried over to sqlx's migrator");
    Ok(())
}

pub async fn run_sqlite(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    adopt::<sqlx::Sqlite>(&mut conn, SQLITE).await?;
    drop(conn);
    static M: std::sync::OnceLock<Migrator> = std::sync::OnceLock::new();
    M.get_or_init(|| migrator(SQLITE)).run(pool).await.map_err(refuse)
}

pub async fn run_postgres(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    // Instances starting together: one carries the old history over, the others wait.
    sqlx::query("SELECT pg_advisory_lock(7245342151)").execute(&mut *conn).await?;
    let adopted = adopt::<sqlx::Postgres>(&mut conn, POSTGRES).await;
    sqlx::query("SELECT pg_advisory_unlock(7245342151)").execute(&mut *conn).await?;
    adopted?;
    drop(conn);
    static M: std::sync::OnceLock<Migrator> = std::sync::OnceLock::new();
    M.get_or_init(|| migrator(POSTGRES)).run(pool).await.map_err(refuse)
}
