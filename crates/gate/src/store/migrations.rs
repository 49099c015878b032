//! Schema migrations, one ordered list per backend. A migration is applied once, in a
//! transaction, and recorded in `schema_migrations`; never edit one that has shipped.

use super::StoreError;
use sqlx::{PgPool, SqlitePool};

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
];

pub async fn run_sqlite(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    let applied: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetch_one(pool).await?;
    for (i, sql) in SQLITE.iter().enumerate().skip(applied as usize) {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)")
            .bind(i as i64 + 1)
            .bind(crate::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

pub async fn run_postgres(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    // Several gateway instances may start together: one migrates, the others wait.
    sqlx::query("SELECT pg_advisory_xact_lock(7245342151)").execute(&mut *tx).await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let applied: i32 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetch_one(&mut *tx).await?;
    for (i, sql) in POSTGRES.iter().enumerate().skip(applied as usize) {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)")
            .bind(i as i32 + 1)
            .bind(crate::now_ms())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
