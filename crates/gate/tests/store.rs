//! One store test suite, run against both backends: SQLite (a temp file) and PostgreSQL
//! (127.0.0.1:5432 database `test`, in a private schema; CODEX_GATE_TEST_PG_URL overrides).

mod common;

use codex_gate::ledger::{Ledger, Retention};
use codex_gate::metrics::Metrics;
use codex_gate::store::{Attempt, RequestRecord, Store};
use common::TempDir;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

fn rec(i: i64, ts_ms: i64) -> RequestRecord {
    RequestRecord {
        id: format!("req_{i}"),
        ts_ms,
        api: "responses".into(),
        route: "coder".into(),
        target: "p/m".into(),
        model: "coder".into(),
        stream: i % 2 == 0,
        status: 200,
        error_code: (i % 3 == 0).then(|| "upstream_500".into()),
        attempts: 1 + (i % 2) as u32,
        input_tokens: 1000 + i,
        cached_tokens: 900,
        output_tokens: 50,
        reasoning_tokens: 7,
        latency_ms: 1234,
        ttfb_ms: (i % 2 == 0).then_some(56),
        overhead_us: 321,
        key_id: (i % 4 == 0).then(|| "key_a".into()),
        account_id: (i % 5 == 0).then(|| "acct_1".into()),
        cost_usd: 0.25,
        trail: if i % 2 == 1 {
            vec![
                Attempt {
                    target: "q/m".into(),
                    why: "first".into(),
                    error: Some("timeout".into()),
                    ms: 5,
                    ..Default::default()
                },
                Attempt {
                    target: "p/m".into(),
                    account: Some("acct_1".into()),
                    why: "failover".into(),
                    pick: Some(codex_gate::store::AccountPick { why: "least used".into(), usable: 2, of: 3 }),
                    at_ms: 5,
                    ms: 9,
                    ..Default::default()
                },
            ]
        } else {
            Vec::new()
        },
    }
}

async fn suite(store: &Store) {
    assert_eq!(store.schema_version().await.unwrap(), 5);
    assert_eq!(store.count_requests().await.unwrap(), 0);
    let rows: Vec<_> = (0..1200).map(|i| rec(i, 1_000_000 + i)).collect();
    store.insert_requests(&rows).await.unwrap();
    store.insert_requests(&rows[..10]).await.unwrap(); // duplicates are ignored, not errors
    assert_eq!(store.count_requests().await.unwrap(), 1200);
    // Rollups count each row once (the ten written twice are not counted again), by group.
    let since = 0;
    let by_key = store.usage_report(codex_gate::store::GroupBy::Key, since).await.unwrap();
    let total: i64 = by_key.iter().map(|l| l.sums.requests).sum();
    assert_eq!(total, 1200);
    let key_a = by_key.iter().find(|l| l.group == "key_a").unwrap();
    assert_eq!(
        (key_a.sums.requests, key_a.sums.input_tokens),
        (300, (0..1200).filter(|i| i % 4 == 0).map(|i| 1000 + i).sum())
    );
    assert!((key_a.sums.cost_usd - 75.0).abs() < 1e-6, "{}", key_a.sums.cost_usd);
    assert_eq!(key_a.sums.errors, (0..1200).filter(|i| i % 4 == 0 && i % 3 == 0).count() as i64);
    let by_account = store.usage_report(codex_gate::store::GroupBy::Account, since).await.unwrap();
    assert_eq!(by_account.iter().find(|l| l.group == "acct_1").unwrap().sums.requests, 240);
    let k = store.key_usage_since("key_a", 1_000_000 + 600).await.unwrap();
    assert_eq!(k.requests, 150, "from the raw log, to the millisecond");
    assert!((store.key_cost_since("key_a", 0).await.unwrap() - 75.0).abs() < 1e-6);
    // A batch that mixes new rows with rows already written counts only the new ones.
    let mixed: Vec<_> = (1196..1204).map(|i| rec(i, 1_000_000 + i)).collect();
    store.insert_requests(&mixed).await.unwrap();
    let total: i64 =
        store.usage_report(codex_gate::store::GroupBy::Key, since).await.unwrap().iter().map(|l| l.sums.requests).sum();
    assert_eq!((store.count_requests().await.unwrap(), total), (1204, 1204));
    let recent = store.recent_requests(3).await.unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0], rec(1203, 1_000_000 + 1203), "rows read back exactly as written");
    assert_eq!(recent[2], rec(1201, 1_000_000 + 1201));
    dashboard_reads(store).await;
    // Retention: age first, then row count.
    let deleted = store.prune_requests(1_000_000 + 200, 1_000_000).await.unwrap();
    assert_eq!(deleted, 200);
    let deleted = store.prune_requests(0, 100).await.unwrap();
    assert_eq!(deleted, 904);
    assert_eq!(store.count_requests().await.unwrap(), 100);
    assert_eq!(store.recent_requests(1000).await.unwrap().last().unwrap().id, "req_1104");
    // Rollups outlive the raw rows they summed.
    assert_eq!(store.usage_report(codex_gate::store::GroupBy::Model, 0).await.unwrap()[0].sums.requests, 1204);
    retention_in_steps(store).await;
}

/// A pass deletes in bounded steps, oldest first, and stops where it should.
async fn retention_in_steps(store: &Store) {
    use codex_gate::store::PRUNE_STEP_ROWS;
    let step = PRUNE_STEP_ROWS;
    // Older than everything above, written newest first so that insertion order is not age.
    let old: Vec<_> = (0..2 * step + 500).rev().map(|i| rec(10_000 + i, 500_000 + i)).collect();
    for batch in old.chunks(500) {
        store.insert_requests(batch).await.unwrap();
    }
    let cutoff = store.retention_cutoff(500_000 + 2 * step + 100, 1_000_000).await.unwrap();
    assert_eq!(cutoff, 500_000 + 2 * step + 100, "the count cap is far away: age decides");
    assert_eq!(store.retention_cutoff(0, 50).await.unwrap(), 1_000_000 + 1154, "the 50th newest row's time");
    assert_eq!(store.prune_step(cutoff).await.unwrap(), step as u64, "one step, no more");
    let mut left: Vec<i64> = store.recent_requests(100_000).await.unwrap().iter().map(|r| r.ts_ms).collect();
    left.sort_unstable();
    assert_eq!(left[0], 500_000 + step, "the oldest went first");
    assert_eq!(store.prune_step(cutoff).await.unwrap(), step as u64);
    assert_eq!(store.prune_step(cutoff).await.unwrap(), 100, "the rest before the cutoff");
    assert_eq!(store.prune_step(cutoff).await.unwrap(), 0);
    assert_eq!(store.count_requests().await.unwrap(), 100 + 400);
    // The whole pass in one call: age, then the count cap, across steps.
    assert_eq!(store.prune_requests(0, 100).await.unwrap(), 400);
    assert_eq!(store.count_requests().await.unwrap(), 100);
}

/// What the dashboard reads: time buckets, percentiles, filtered pages with a cursor, one row.
async fn dashboard_reads(store: &Store) {
    use codex_gate::store::{RequestFilter, Width};
    // All 1204 rows fall in the first minute after 1_000_000 ms, and in its hour and day.
    let minutes = store.buckets(0, Width::Minute, None).await.unwrap();
    assert_eq!(minutes.len(), 1);
    assert_eq!((minutes[0].start_ms, minutes[0].sums.requests), (960_000, 1204));
    let hours = store.buckets(0, Width::Hour, None).await.unwrap();
    assert_eq!((hours.len(), hours[0].start_ms, hours[0].sums.requests), (1, 0, 1204));
    let days = store.buckets(0, Width::Day, Some("key_a")).await.unwrap();
    assert_eq!(days[0].sums.requests, 301, "one key's rows only");
    assert_eq!(store.buckets(0, Width::Minute, Some("key_a")).await.unwrap()[0].sums.requests, 301);
    assert!(store.buckets(2_000_000, Width::Minute, None).await.unwrap().is_empty());
    let t = store.timings(0, 100).await.unwrap();
    assert_eq!((t.sample, t.latency_ms, t.ttfb_ms[0]), (100, [1234.0; 3], 56.0));
    assert!((t.overhead_ms[1] - 0.321).abs() < 1e-9);
    // Filters narrow, and the cursor walks back without repeats.
    let page = |f: RequestFilter| async move { store.list_requests(&f).await.unwrap().unwrap() };
    let first = page(RequestFilter { key: Some("key_a".into()), limit: Some(7), ..Default::default() }).await;
    assert_eq!(first.len(), 7);
    assert!(first.iter().all(|r| r.key_id.as_deref() == Some("key_a")));
    assert!(first.windows(2).all(|w| (w[0].ts_ms, &w[0].id) > (w[1].ts_ms, &w[1].id)), "newest first");
    let cursor = format!("{}:{}", first[6].ts_ms, first[6].id);
    let second =
        page(RequestFilter { key: Some("key_a".into()), before: Some(cursor), limit: Some(7), ..Default::default() })
            .await;
    assert_eq!(second.len(), 7);
    assert!(second[0].ts_ms < first[6].ts_ms, "the next page starts after the cursor");
    let errors = page(RequestFilter { status: Some("error".into()), limit: Some(200), ..Default::default() }).await;
    assert!(!errors.is_empty() && errors.iter().all(|r| r.error_code.is_some()));
    let none = page(RequestFilter {
        key: Some("none".into()),
        account: Some("acct_1".into()),
        limit: Some(200),
        ..Default::default()
    })
    .await;
    assert!(!none.is_empty() && none.iter().all(|r| r.key_id.is_none() && r.account_id.as_deref() == Some("acct_1")));
    let window = page(RequestFilter {
        since_ms: Some(1_000_100),
        until_ms: Some(1_000_110),
        limit: Some(200),
        ..Default::default()
    })
    .await;
    assert_eq!(window.len(), 10);
    let by_status =
        page(RequestFilter { status: Some("200".into()), model: Some("coder".into()), ..Default::default() }).await;
    assert_eq!(by_status.len(), 50, "the default page");
    assert_eq!(
        store.list_requests(&RequestFilter { status: Some("x".into()), ..Default::default() }).await.unwrap(),
        Err("status".into())
    );
    // Target health: one grouped count per target.
    assert_eq!(store.recent_by_target(0).await.unwrap(), vec![("p/m".to_owned(), 1204, 402)]);
    let since_100 = (100..1204).filter(|i| i % 3 == 0).count() as i64;
    assert_eq!(store.recent_by_target(1_000_100).await.unwrap(), vec![("p/m".to_owned(), 1104, since_100)]);
    assert!(store.recent_by_target(2_000_000).await.unwrap().is_empty());
    // One row, with its attempts.
    let one = store.get_request("req_7").await.unwrap().unwrap();
    assert_eq!(one, rec(7, 1_000_007));
    assert_eq!(one.trail.len(), 2);
    assert!(store.get_request("req_nope").await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_backend() {
    let dir = TempDir::new();
    let url = format!("sqlite://{}", dir.path().join("nested/dir/gate.db").display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    suite(&store).await;
    store.close().await;
    // Reopening runs no migration twice and keeps the data.
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 5);
    assert_eq!(store.count_requests().await.unwrap(), 100);
    let (mode, temp_store): (String, i64) = match &store {
        Store::Sqlite(p) => (
            sqlx::query_scalar("PRAGMA journal_mode").fetch_one(p).await.unwrap(),
            sqlx::query_scalar("PRAGMA temp_store").fetch_one(p).await.unwrap(),
        ),
        Store::Postgres(_) => unreachable!(),
    };
    assert_eq!(mode, "wal");
    // 2 = MEMORY: the statement journal of each log batch's savepoint is not a temporary file.
    assert_eq!(temp_store, 2);
    // Emails, plans and the request log are the owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let m = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        let db_dir = dir.path().join("nested/dir");
        assert_eq!(m(db_dir.clone()), 0o700);
        assert_eq!(m(db_dir.join("gate.db")), 0o600);
        assert_eq!(m(db_dir.join("gate.db-wal")), 0o600);
        // An existing world-readable database is tightened on open.
        store.close().await;
        std::fs::set_permissions(db_dir.join("gate.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
        Store::open(&url).await.unwrap().close().await;
        assert_eq!(m(db_dir.join("gate.db")), 0o600);
    }
}

/// A store in a fresh private schema, or `None` (after a loud skip) without PostgreSQL.
pub async fn pg_store() -> Option<(Store, sqlx::PgPool, String)> {
    let (admin, schema) = common::pg_schema("t").await?;
    let store = Store::open_postgres(common::pg_options(&schema)).await.unwrap();
    Some((store, admin, schema))
}

#[tokio::test]
async fn postgres_backend() {
    let Some((store, admin, schema)) = pg_store().await else { return };
    assert_eq!(store.backend(), "postgres");
    suite(&store).await;
    store.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin).await.unwrap();
}

#[tokio::test]
async fn postgres_keeps_every_row_of_a_batch_with_nul_bytes_in_it() {
    let Some((store, admin, schema)) = pg_store().await else { return };
    let metrics = Arc::new(Metrics::default());
    let retention = Retention { max_age: Duration::from_secs(3600), max_rows: 1000, every: Duration::from_secs(3600) };
    let (ledger, writer) = Ledger::start(store.clone(), 100, retention, metrics.clone());
    let now = codex_gate::now_ms();
    for i in 0..50 {
        let mut r = rec(i, now + i);
        if i == 7 {
            r.model = "rs/a\0b".into();
        }
        if i == 8 {
            r.error_code = Some("upstream\0code".into());
        }
        ledger.record(r);
    }
    drop(ledger);
    writer.await.unwrap();
    assert_eq!(store.count_requests().await.unwrap(), 50, "no row of the batch was lost");
    assert_eq!(metrics.ledger_failed.load(Relaxed), 0);
    let rows = store.recent_requests(100).await.unwrap();
    let r7 = rows.iter().find(|r| r.id == "req_7").unwrap();
    assert_eq!(r7.model, "rs/a\u{fffd}b");
    store.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin).await.unwrap();
}

#[tokio::test]
async fn migrations_are_checksummed_and_a_newer_or_edited_schema_is_refused() {
    let dir = TempDir::new();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let exec = |sql: &'static str| {
        let url = url.clone();
        async move {
            // Straight to the file, without the store's own migration run.
            let p = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::raw_sql(sql).execute(&p).await.unwrap();
            p.close().await;
        }
    };
    let store = Store::open(&url).await.unwrap();
    store.insert_requests(&[rec(1, 5)]).await.unwrap();
    store.close().await;

    // A database made by the old runner (versions in schema_migrations) is carried over.
    exec("DROP TABLE _sqlx_migrations; ALTER TABLE accounts DROP COLUMN proxy; DROP TABLE client_keys; DROP TABLE usage_rollup; \
          DROP INDEX request_log_model_ts; DROP INDEX request_log_target_ts; DROP INDEX request_log_account_ts; \
          DROP INDEX request_log_errors_ts; ALTER TABLE request_log DROP COLUMN detail; DROP INDEX request_log_key_ts; ALTER TABLE request_log DROP COLUMN key_id; ALTER TABLE request_log DROP COLUMN account_id; \
          ALTER TABLE request_log DROP COLUMN cost_usd; CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL); INSERT INTO schema_migrations VALUES (1, 0), (2, 0);").await;
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 5, "1 and 2 carried over, 3 to 5 applied");
    assert_eq!(store.count_requests().await.unwrap(), 1, "nothing ran twice, nothing was lost");
    store.close().await;

    // A version this binary does not know: a newer release migrated it.
    exec("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99, 'future', 1, x'00', 0)").await;
    let e = Store::open(&url).await.unwrap_err().to_string();
    assert!(e.contains("newer"), "{e}");
    exec("DELETE FROM _sqlx_migrations WHERE version = 99").await;
    assert!(Store::open(&url).await.is_ok());

    // A shipped migration whose text changed.
    exec("UPDATE _sqlx_migrations SET checksum = x'0102' WHERE version = 1").await;
    let e = Store::open(&url).await.unwrap_err().to_string();
    assert!(e.contains("checksum"), "{e}");
}

#[tokio::test]
async fn postgres_refuses_a_schema_from_a_newer_release() {
    let Some((store, admin, schema)) = pg_store().await else { return };
    let Store::Postgres(p) = &store else { unreachable!() };
    sqlx::raw_sql("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99, 'future', true, '\\x00', 0)")
        .execute(p)
        .await
        .unwrap();
    let e = Store::open_postgres(common::pg_options(&schema)).await.unwrap_err().to_string();
    assert!(e.contains("newer"), "{e}");
    store.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin).await.unwrap();
}

#[tokio::test]
async fn open_refuses_unknown_schemes_and_unwritable_paths() {
    assert!(Store::open("mysql://x").await.is_err());
    let e = Store::open("sqlite:///proc/definitely/not/here.db").await.unwrap_err();
    assert!(e.to_string().contains("data directory"), "{e}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_writer_queue_drops_and_counts_instead_of_blocking() {
    let dir = TempDir::new();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("g.db").display())).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let retention = Retention { max_age: Duration::from_secs(3600), max_rows: 1000, every: Duration::from_secs(3600) };
    let (ledger, writer) = Ledger::start(store.clone(), 10, retention, metrics.clone());
    // On a current-thread runtime the writer cannot run while this loop does not yield,
    // so exactly the queue's capacity is kept.
    // Current timestamps: the writer's first retention pass must not delete them.
    let now = codex_gate::now_ms();
    for i in 0..100 {
        ledger.record(rec(i, now + i));
    }
    assert_eq!(metrics.ledger_dropped.load(Relaxed), 90);
    drop(ledger);
    writer.await.unwrap();
    assert_eq!(store.count_requests().await.unwrap(), 10);
    assert_eq!(metrics.ledger_written.load(Relaxed), 10);
}

/// Write 50 records through the ledger while the database refuses the one whose model is
/// `poison` (a constraint the test adds): the batch fails, and the row-by-row retry keeps the
/// other 49.
async fn one_refused_row_loses_only_itself(store: &Store) {
    let metrics = Arc::new(Metrics::default());
    let retention = Retention { max_age: Duration::from_secs(3600), max_rows: 1000, every: Duration::from_secs(3600) };
    let (ledger, writer) = Ledger::start(store.clone(), 100, retention, metrics.clone());
    let now = codex_gate::now_ms();
    for i in 0..50 {
        let mut r = rec(i, now + i);
        if i == 20 {
            r.model = "poison".into();
        }
        ledger.record(r);
    }
    drop(ledger);
    writer.await.unwrap();
    assert_eq!(store.count_requests().await.unwrap(), 49, "only the refused row is missing");
    assert_eq!(metrics.ledger_written.load(Relaxed), 49);
    assert_eq!(metrics.ledger_failed.load(Relaxed), 1);
    let rows = store.recent_requests(100).await.unwrap();
    assert!(rows.iter().all(|r| r.id != "req_20"));
}

#[tokio::test]
async fn sqlite_a_refused_row_loses_only_itself() {
    let dir = TempDir::new();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("g.db").display())).await.unwrap();
    let Store::Sqlite(pool) = &store else { unreachable!() };
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON request_log WHEN NEW.model = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poison row'); END",
    )
    .execute(pool)
    .await
    .unwrap();
    one_refused_row_loses_only_itself(&store).await;
}

#[tokio::test]
async fn postgres_a_refused_row_loses_only_itself() {
    let Some((store, admin, schema)) = pg_store().await else { return };
    let Store::Postgres(pool) = &store else { unreachable!() };
    sqlx::query("ALTER TABLE request_log ADD CONSTRAINT no_poison CHECK (model <> 'poison')")
        .execute(pool)
        .await
        .unwrap();
    one_refused_row_loses_only_itself(&store).await;
    store.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin).await.unwrap();
}

#[tokio::test]
async fn reports_over_days_equal_the_raw_rows_to_the_hour() {
    use codex_gate::store::GroupBy;
    let dir = TempDir::new();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("g.db").display())).await.unwrap();
    const HOUR: i64 = 3_600_000;
    // Rows every 5 hours over ten days, in three keys and two models, so a report reads the first
    // partial day from the hourly rollups and the rest from the daily ones.
    let rows: Vec<_> = (0..48)
        .map(|i| RequestRecord {
            key_id: Some(format!("k{}", i % 3)),
            model: format!("m{}", i % 2),
            ..rec(i, 40 * 24 * HOUR + i * 5 * HOUR + 77)
        })
        .collect();
    store.insert_requests(&rows).await.unwrap();
    for since in [0, 40 * 24 * HOUR, 41 * 24 * HOUR + 7 * HOUR + 5, 44 * 24 * HOUR + 23 * HOUR, 60 * 24 * HOUR] {
        // The expected sums, from the raw rows: whole hours from the one `since` falls in.
        let from = since - since % HOUR;
        for by in [GroupBy::Key, GroupBy::Model] {
            let mut want = std::collections::BTreeMap::<String, (i64, i64, i64, i64)>::new();
            for r in rows.iter().filter(|r| r.ts_ms >= from) {
                let g = if by == GroupBy::Key { r.key_id.clone().unwrap() } else { r.model.clone() };
                let e = want.entry(g).or_default();
                *e = (e.0 + 1, e.1 + i64::from(r.error_code.is_some()), e.2 + r.input_tokens, e.3 + r.reasoning_tokens);
            }
            let got: std::collections::BTreeMap<_, _> = store
                .usage_report(by, since)
                .await
                .unwrap()
                .into_iter()
                .map(|l| (l.group, (l.sums.requests, l.sums.errors, l.sums.input_tokens, l.sums.reasoning_tokens)))
                .collect();
            assert_eq!(got, want, "since {since}, by {by:?}");
        }
    }
}

#[tokio::test]
async fn retention_passes_run_beside_the_writer_and_finish() {
    let dir = TempDir::new();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("r.db").display())).await.unwrap();
    let now = codex_gate::now_ms();
    // Two hours old: past the one-hour retention, more rows than one step deletes.
    let old: Vec<_> = (0..5_000).map(|i| rec(i, now - 7_200_000 + i)).collect();
    for batch in old.chunks(500) {
        store.insert_requests(batch).await.unwrap();
    }
    let metrics = Arc::new(Metrics::default());
    let retention =
        Retention { max_age: Duration::from_secs(3600), max_rows: 1_000_000, every: Duration::from_millis(50) };
    let (ledger, writer) = Ledger::start(store.clone(), 1000, retention, metrics.clone());
    for i in 0..300 {
        ledger.record(rec(100_000 + i, now + i));
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The pass is a task of its own: wait for it (and the writer) to reach the end state.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.count_requests().await.unwrap() != 300 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(ledger);
    writer.await.unwrap();
    assert_eq!(store.count_requests().await.unwrap(), 300, "every old row gone, every new one written");
    assert_eq!(metrics.ledger_dropped.load(Relaxed), 0);
    assert_eq!(metrics.ledger_written.load(Relaxed), 300);
    assert!(store.recent_requests(1000).await.unwrap().iter().all(|r| r.ts_ms >= now));
}
