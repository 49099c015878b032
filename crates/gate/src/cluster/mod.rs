//! Several gateway instances as one, through Redis (`[cluster] redis_url`): shared limit
//! counters with local leases ([`counters`]), a single-owner lock per token refresh, and
//! events between instances (cooldowns, quota, session affinity, refreshed tokens) over
//! pub/sub ([`events`]).
//!
//! Redis is never awaited on the request path except to renew a key's request lease (once per
//! lease, at most 250 ms). Every call has that deadline; a failure marks Redis down and for a
//! second no call is tried (so no request waits on a Redis known to be down), the gateway counts
//! locally (said in the log and on `/metrics`), and the next call after that second reconnects
//! and catches the counters up.

pub mod counters;
pub mod events;

use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Deadline of one Redis call.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// Reconnection attempts while Redis is down, at most this often.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The connection to the shared Redis and its health.
pub struct Cluster {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    connecting: tokio::sync::Mutex<()>,
    last_attempt: Mutex<Option<Instant>>,
    /// When the last call failed: for a second after, calls are not tried (so a request never
    /// waits out a timeout on a Redis known to be down).
    last_failure: Mutex<Option<Instant>>,
    up: AtomicBool,
    /// This instance's id (events from itself are ignored).
    pub instance: String,
    pub errors: AtomicU64,
    /// Where events to publish wait (the request path never awaits a publish).
    outbox: tokio::sync::mpsc::Sender<String>,
    outbox_rx: Mutex<Option<tokio::sync::mpsc::Receiver<String>>>,
    /// Keys' shared counters, for the sync task.
    pub counters: counters::Registry,
    /// The events subscription is live (events published before it was are not seen).
    pub subscribed: AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("instance", &self.instance).field("up", &self.is_up()).finish()
    }
}

impl Cluster {
    /// A cluster handle for `url` (not yet connected: that happens in the background).
    pub fn new(url: &str) -> Result<Arc<Cluster>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{url:?} is not a Redis URL: {e}"))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        Ok(Arc::new(Cluster {
            client,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            last_attempt: Mutex::new(None),
            last_failure: Mutex::new(None),
            up: AtomicBool::new(false),
            instance: format!("{:016x}", rand::random::<u64>()),
            errors: AtomicU64::new(0),
            outbox: tx,
            outbox_rx: Mutex::new(Some(rx)),
            counters: Default::default(),
            subscribed: AtomicBool::new(false),
        }))
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    pub(crate) fn redis_client(&self) -> &redis::Client {
        &self.client
    }

    /// The connection, connecting first if there is none (at most one attempt per second).
    async fn conn(&self) -> Option<ConnectionManager> {
        if let Some(c) = self.conn.lock().clone() {
            return Some(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.conn.lock().clone() {
            return Some(c);
        }
        {
            let mut last = self.last_attempt.lock();
            if last.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(CALL_TIMEOUT * 4)
            .set_response_timeout(CALL_TIMEOUT)
            .set_number_of_retries(1);
        match tokio::time::timeout(CALL_TIMEOUT * 8, self.client.get_connection_manager_with_config(config)).await {
            Ok(Ok(c)) => {
                *self.conn.lock() = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.failed("connect timed out");
                None
            }
        }
    }

    fn failed(&self, why: &str) {
        self.errors.fetch_add(1, Relaxed);
        *self.last_failure.lock() = Some(Instant::now());
        if self.up.swap(false, Relaxed) {
            tracing::warn!(error = why, "Redis unreachable: counting limits locally until it is back");
        }
    }

    fn succeeded(&self) {
        if !self.up.swap(true, Relaxed) {
            tracing::info!("Redis reachable: limits, cooldowns and refreshes are shared with the other instances");
        }
    }

    /// Run one Redis operation with the call deadline; `None` when Redis is unreachable.
    pub async fn call<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.last_failure.lock().is_some_and(|t| t.elapsed() < RETRY_EVERY) {
            return None;
        }
        let conn = self.conn().await?;
        match tokio::time::timeout(CALL_TIMEOUT, f(conn)).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.failed("call timed out");
                None
            }
        }
    }

    /// Queue an event for the other instances (dropped when the queue is full).
    pub fn publish(&self, event: serde_json::Value) {
        let _ = self.outbox.try_send(event.to_string());
    }

    /// `SET key <instance> NX PX ttl`: whether this instance now owns `key`; `None`: Redis is
    /// unreachable.
    pub async fn try_lock(&self, key: &str, ttl: Duration) -> Option<bool> {
        let key = format!("codex-gate:lock:{key}");
        let me = self.instance.clone();
        let ms = ttl.as_millis() as u64;
        self.call(|mut c| async move {
            let got: Option<String> =
                redis::cmd("SET").arg(&key).arg(&me).arg("NX").arg("PX").arg(ms).query_async(&mut c).await?;
            Ok(got.is_some())
        })
        .await
    }

    /// Release a lock this instance holds (never one another instance took after it expired).
    pub async fn unlock(&self, key: &str) {
        let key = format!("codex-gate:lock:{key}");
        let me = self.instance.clone();
        static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
        let script = SCRIPT.get_or_init(|| {
            redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
            )
        });
        let _: Option<i64> =
            self.call(|mut c| async move { script.key(&key).arg(&me).invoke_async(&mut c).await }).await;
    }

    /// Take the outbox (once): the publisher task owns it.
    pub(crate) fn take_outbox(&self) -> Option<tokio::sync::mpsc::Receiver<String>> {
        self.outbox_rx.lock().take()
    }
}
