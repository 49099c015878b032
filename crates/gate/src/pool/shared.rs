//! The pool across instances (with `[cluster]`): what one instance learns — an account cooled
//! down, its quota, a session's account, refreshed tokens — reaches the others as events, and a
//! token refresh runs on one instance at a time (a rotated refresh token works once: two
//! instances refreshing together would log the account out). The others wait for its result in
//! the store and use it.

use super::quota::{Quota, Window};
use super::refresh::RefreshError;
use super::state::{AccountState, LiveTokens, Pool};
use crate::cluster::events::event;
use crate::cluster::Cluster;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// How long a refresh may hold its lock (the token endpoint's own timeout is shorter).
const REFRESH_LOCK: Duration = Duration::from_secs(30);
/// How long an instance waits for another's refresh to land in the store.
const REFRESH_WAIT: Duration = Duration::from_secs(20);

fn window_json(w: &Option<Window>) -> Value {
    match w {
        Some(w) => json!([w.used_percent, w.window_minutes, w.reset_at]),
        None => Value::Null,
    }
}

fn window_from(v: &Value) -> Option<Window> {
    let a = v.as_array()?;
    Some(Window {
        used_percent: a.first()?.as_f64()?,
        window_minutes: a.get(1)?.as_i64(),
        reset_at: a.get(2)?.as_i64(),
    })
}

impl Pool {
    pub(super) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Share this pool's learning through `cluster` from now on.
    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    pub(super) fn publish_cooldown(&self, a: &AccountState) {
        if let Some(c) = self.cluster() {
            c.publish(event(c, "cooldown", json!({"id": a.id, "until": a.cooldown_until_ms.load(Relaxed)})));
        }
    }

    pub(super) fn publish_quota(&self, a: &AccountState, q: &Quota) {
        if let Some(c) = self.cluster() {
            let v =
                json!({"id": a.id, "p": window_json(&q.primary), "s": window_json(&q.secondary), "at": q.updated_ms});
            c.publish(event(c, "quota", v));
        }
    }

    pub(super) fn publish_affinity(&self, key: &str, account: &str) {
        if let Some(c) = self.cluster() {
            c.publish(event(c, "aff", json!({"s": key, "id": account})));
        }
    }

    /// Apply another instance's event.
    pub async fn apply_event(&self, v: &Value) {
        let Some(a) = v["id"].as_str().and_then(|id| self.find(id)) else { return };
        match v["t"].as_str() {
            Some("cooldown") => {
                if let Some(until) = v["until"].as_i64() {
                    a.cooldown_until_ms.fetch_max(until, Relaxed);
                    self.usage_changed();
                }
            }
            Some("quota") => {
                let q = Quota {
                    primary: window_from(&v["p"]),
                    secondary: window_from(&v["s"]),
                    updated_ms: v["at"].as_i64().unwrap_or_else(crate::now_ms),
                    ..Default::default()
                };
                self.merge_quota(&a, q);
            }
            Some("aff") => {
                if let Some(s) = v["s"].as_str() {
                    self.remember_session(s, &a.id);
                }
            }
            Some("tokens") => {
                let current = a.tokens.read().clone();
                self.adopt_stored(&a, &current).await;
            }
            _ => {}
        }
    }

    /// Tokens in the store that replaced `current` (another instance refreshed): taken into
    /// `a`, with the new access token returned.
    async fn adopt_stored(&self, a: &AccountState, current: &LiveTokens) -> Option<String> {
        let stored = self.stored_tokens(&a.id).await?;
        if stored.refresh == current.refresh || stored.refresh.is_empty() {
            return None;
        }
        let access = stored.access.clone();
        *a.tokens.write() = stored;
        Some(access)
    }

    /// Whose turn it is to refresh `a`'s tokens.
    pub(super) async fn refresh_turn(&self, a: &AccountState, current: &LiveTokens) -> Result<Turn, RefreshError> {
        let Some(c) = self.cluster().cloned() else { return Ok(Turn::Alone) };
        if let Some(access) = self.adopt_stored(a, current).await {
            return Ok(Turn::Adopted(access));
        }
        let lock = format!("refresh:{}", a.id);
        match c.try_lock(&lock, REFRESH_LOCK).await {
            Some(true) => {
                // The previous owner may have finished just before we took the lock.
                if let Some(access) = self.adopt_stored(a, current).await {
                    c.unlock(&lock).await;
                    return Ok(Turn::Adopted(access));
                }
                Ok(Turn::Mine(RefreshLock { cluster: c, key: lock }))
            }
            Some(false) => {
                let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
                while tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Some(access) = self.adopt_stored(a, current).await {
                        return Ok(Turn::Adopted(access));
                    }
                }
                Err(RefreshError::Transient("another instance's token refresh did not finish in 20 s".into()))
            }
            None => {
                tracing::warn!(account = %a.id, "Redis unreachable: refreshing without the cluster lock");
                Ok(Turn::Alone)
            }
        }
    }

    /// After a refresh this instance made: tell the others to take the new tokens.
    pub(super) fn publish_tokens(&self, a: &AccountState) {
        if let Some(c) = self.cluster() {
            c.publish(event(c, "tokens", json!({"id": a.id})));
        }
    }
}

/// The outcome of [`Pool::refresh_turn`].
pub(super) enum Turn {
    /// No cluster (or Redis down): refresh here.
    Alone,
    /// This instance holds the lock: refresh, then release it.
    Mine(RefreshLock),
    /// Another instance refreshed: its access token.
    Adopted(String),
}

pub(super) struct RefreshLock {
    cluster: Arc<Cluster>,
    key: String,
}

impl RefreshLock {
    pub(super) async fn release(self) {
        self.cluster.unlock(&self.key).await;
    }
}
