//! The request log's writer: records leave the request path through a bounded channel
//! (`try_send`; a full queue drops the record and counts it, it never blocks a request) and a
//! background task writes them to the store in batches (up to 500 rows, or what arrived within
//! 200 ms), with their usage rollups. It also enforces retention, in a task of its own.

use crate::metrics::Metrics;
use crate::store::{RequestRecord, Store};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Rows written per store round trip, at most.
const BATCH: usize = 500;
/// Days the hourly usage rollups are kept (the daily ones are never pruned).
const ROLLUP_DAYS: i64 = 400;

/// The sending half, cloned into the request path.
#[derive(Debug, Clone)]
pub struct Ledger {
    tx: mpsc::Sender<RequestRecord>,
    metrics: Arc<Metrics>,
    stop: tokio_util::sync::CancellationToken,
}

/// Retention policy.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_rows: u64,
    /// How often to prune.
    pub every: Duration,
}

impl Ledger {
    /// Start the writer task. The task ends, after writing what is queued, once every
    /// [`Ledger`] clone is dropped.
    pub fn start(store: Store, queue: usize, retention: Retention, metrics: Arc<Metrics>) -> (Ledger, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(writer(store, rx, retention, metrics.clone(), stop.clone()));
        (Ledger { tx, metrics, stop }, task)
    }

    /// Write what is queued now and end the writer task, even while clones (held by background
    /// tasks) still exist; records sent later are dropped and counted.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Queue a record without waiting; drops (and counts) it when the queue is full.
    pub fn record(&self, r: RequestRecord) {
        if self.tx.try_send(r).is_err() {
            self.metrics.ledger_dropped.fetch_add(1, Relaxed);
        }
    }
}

/// How long a record may wait for others to share its write. Under load this turns one
/// transaction (and one wake-up of this task) per request into one per 200 ms.
const LINGER: Duration = Duration::from_millis(200);

async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<RequestRecord>,
    retention: Retention,
    metrics: Arc<Metrics>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut buf = Vec::with_capacity(BATCH);
    let mut prune = tokio::time::interval(retention.every);
    let mut pass: Option<JoinHandle<()>> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                rx.close();
                while let Ok(r) = rx.try_recv() {
                    buf.push(r);
                    if buf.len() == BATCH {
                        flush(&store, &mut buf, &metrics).await;
                    }
                }
                flush(&store, &mut buf, &metrics).await;
                break;
            }
            n = rx.recv_many(&mut buf, BATCH) => {
                if n == 0 {
                    break; // every sender is gone and the queue is empty
                }
                // Let records queue up without being woken for each, then drain in batches
                // (at once when a full batch is already waiting, so a fast stream of requests
                // cannot fill the queue while this task sleeps).
                if rx.len() < BATCH {
                    tokio::time::sleep(LINGER).await;
                }
                loop {
                    while buf.len() < BATCH {
                        match rx.try_recv() {
                            Ok(r) => buf.push(r),
                            Err(_) => break,
                        }
                    }
                    let full = buf.len() == BATCH;
                    flush(&store, &mut buf, &metrics).await;
                    if !full {
                        break;
                    }
                }
            }
            _ = prune.tick() => {
                // A pass runs beside this task, in steps, so batches keep being written while
                // it deletes (a 10M-row log's pass took seconds); one pass at a time.
                if pass.as_ref().is_none_or(JoinHandle::is_finished) {
                    pass = Some(tokio::spawn(retention_pass(store.clone(), retention)));
                }
            }
        }
    }
    if let Some(p) = pass {
        p.abort();
    }
}

async fn retention_pass(store: Store, retention: Retention) {
    let before = crate::now_ms() - retention.max_age.as_millis() as i64;
    // Steps of PRUNE_STEP_ROWS: the writer gets the store between them.
    match store.prune_requests(before, retention.max_rows.max(1) as i64).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(rows = n, "request log pruned"),
        Err(e) => tracing::warn!(error = %e, "request log pruning failed"),
    }
    // Reports outlive the raw log: hourly sums for ROLLUP_DAYS, daily ones for good.
    let hours_before = crate::now_ms() - ROLLUP_DAYS * 86_400_000;
    if let Err(e) = store.prune_rollups(hours_before).await {
        tracing::warn!(error = %e, "usage rollup pruning failed");
    }
}

async fn flush(store: &Store, buf: &mut Vec<RequestRecord>, metrics: &Metrics) {
    if buf.is_empty() {
        return;
    }
    let n = buf.len() as u64;
    match store.insert_requests(buf).await {
        Ok(()) => {
            metrics.ledger_written.fetch_add(n, Relaxed);
        }
        // One bad row must not lose its whole batch: write them one by one.
        Err(e) if buf.len() > 1 => {
            tracing::warn!(error = %e, rows = n, "request log batch failed; writing its rows one by one");
            for r in buf.iter() {
                match store.insert_requests(std::slice::from_ref(r)).await {
                    Ok(()) => metrics.ledger_written.fetch_add(1, Relaxed),
                    Err(e) => {
                        tracing::warn!(error = %e, id = %r.id, "request log row lost");
                        metrics.ledger_failed.fetch_add(1, Relaxed)
                    }
                };
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, rows = n, "request log write failed");
            metrics.ledger_failed.fetch_add(n, Relaxed);
        }
    };
    buf.clear();
}
