//! A key's limit counters shared by every instance.
//!
//! - Requests per minute: a fixed window per minute in Redis, handed out in leases of
//!   `max(1, ⌈rpm/20⌉)` requests by one atomic script, so all instances together never admit
//!   more than the limit in a minute; each instance may leave up to one lease unused (under-
//!   admission, never over). An instance renews its lease on the request path (one Redis call
//!   per lease) — the only Redis wait there.
//! - Tokens per minute and the budget: each instance adds what its requests used to Redis
//!   every 200 ms and reads back the total, and admits against the larger of its own count and
//!   the cluster's (tokens are known only after a request, so these limits can be overshot by
//!   what is in flight — on one instance as on several).
//! - Redis unreachable: the instance counts locally, and what it counted is added to Redis's
//!   counters when it is back.

use super::Cluster;
use crate::access::keys::Period;
use parking_lot::Mutex;
use std::sync::{Arc, Weak};

const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Default)]
struct Lease {
    minute: i64,
    left: u32,
    /// Redis said the minute's limit is used up.
    exhausted: bool,
    /// Requests admitted locally in `down_minute` while Redis was unreachable.
    down: u32,
    down_minute: i64,
}

#[derive(Debug, Default)]
struct Totals {
    /// Tokens used but not yet added to Redis, by minute.
    pending_tokens: Vec<(i64, f64)>,
    /// Cost not yet added, by budget period start.
    pending_cost: Vec<(i64, f64)>,
    /// The cluster's token totals for (minute, tokens) of the current and previous minute.
    cluster_tokens: Vec<(i64, f64)>,
    /// The cluster's spend in (period start, USD).
    cluster_spent: Option<(i64, f64)>,
}

/// One key's shared counters.
#[derive(Debug)]
pub struct Shared {
    key_id: String,
    rpm: Option<u32>,
    tpm: Option<u64>,
    budget: Option<f64>,
    pub period: Period,
    lease: Mutex<Lease>,
    totals: Mutex<Totals>,
}

/// Every live key's shared counters (for the sync task).
#[derive(Debug, Default)]
pub struct Registry {
    all: Mutex<Vec<Weak<Shared>>>,
}

impl Registry {
    pub fn register(&self, s: &Arc<Shared>) {
        let mut all = self.all.lock();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(s));
    }

    pub fn live(&self) -> Vec<Arc<Shared>> {
        let mut all = self.all.lock();
        all.retain(|w| w.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    }
}

/// What the lease says about one more request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Taken from the lease.
    Taken,
    /// The limit is used up across the cluster this minute.
    Exhausted,
    /// No lease (Redis unreachable): count locally.
    Local,
}

impl Shared {
    pub fn new(key_id: &str, rpm: Option<u32>, tpm: Option<u64>, budget: Option<f64>, period: Period) -> Shared {
        Shared {
            key_id: key_id.to_owned(),
            rpm,
            tpm,
            budget,
            period,
            lease: Default::default(),
            totals: Default::default(),
        }
    }

    fn lease_size(rpm: u32) -> u32 {
        rpm.div_ceil(20).max(1)
    }

    /// Make sure a request lease for `now`'s minute is held (or known to be exhausted).
    pub async fn ensure_lease(&self, cluster: &Cluster, now: i64) {
        let Some(rpm) = self.rpm else { return };
        let minute = now - now.rem_euclid(MINUTE_MS);
        let catch_up = {
            let l = self.lease.lock();
            if l.minute == minute && (l.left > 0 || l.exhausted) {
                return;
            }
            if l.down_minute == minute {
                l.down
            } else {
                0
            }
        };
        static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
        // KEYS[1]: the minute's counter. ARGV: limit, lease size, requests admitted while
        // Redis was down (added first), ttl ms. Returns the requests granted.
        let script = SCRIPT.get_or_init(|| {
            redis::Script::new(
                "local used = redis.call('INCRBY', KEYS[1], ARGV[3]) \
                 redis.call('PEXPIRE', KEYS[1], ARGV[4]) \
                 local grant = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - used) \
                 if grant <= 0 then return 0 end \
                 redis.call('INCRBY', KEYS[1], grant) \
                 return grant",
            )
        });
        let key = format!("codex-gate:rpm:{}:{minute}", self.key_id);
        let size = Self::lease_size(rpm);
        let granted: Option<i64> = cluster
            .call(|mut c| async move {
                script.key(&key).arg(rpm).arg(size).arg(catch_up).arg(2 * MINUTE_MS).invoke_async(&mut c).await
            })
            .await;
        let mut l = self.lease.lock();
        if l.minute != minute {
            *l = Lease { down: l.down, down_minute: l.down_minute, ..Default::default() };
            l.minute = minute;
        }
        match granted {
            Some(g) => {
                l.left += g.max(0) as u32;
                l.exhausted = g <= 0;
                if l.down_minute == minute {
                    l.down = l.down.saturating_sub(catch_up);
                }
            }
            None => l.left = 0,
        }
    }

    /// One request, if the lease allows it.
    pub fn take(&self, now: i64, cluster_up: bool) -> Take {
        let minute = now - now.rem_euclid(MINUTE_MS);
        let mut l = self.lease.lock();
        if l.minute == minute && l.left > 0 {
            l.left -= 1;
            return Take::Taken;
        }
        if l.minute == minute && l.exhausted && cluster_up {
            return Take::Exhausted;
        }
        if l.down_minute != minute {
            l.down_minute = minute;
            l.down = 0;
        }
        l.down += 1;
        Take::Local
    }

    /// A request used `tokens` and cost `usd` at `now`.
    pub fn used(&self, now: i64, tokens: f64, usd: f64) {
        let mut t = self.totals.lock();
        let minute = now - now.rem_euclid(MINUTE_MS);
        if self.tpm.is_some() && tokens > 0.0 {
            add(&mut t.pending_tokens, minute, tokens);
        }
        if self.budget.is_some() && usd > 0.0 {
            add(&mut t.pending_cost, crate::access::limits::period_start(now, self.period), usd);
        }
    }

    /// The cluster's tokens in the sliding minute at `now` (previous minute weighted `w`), with
    /// what this instance has not sent yet; `None` before the first sync.
    pub fn cluster_tokens(&self, now: i64, w: f64) -> Option<f64> {
        let t = self.totals.lock();
        if t.cluster_tokens.is_empty() {
            return None;
        }
        let minute = now - now.rem_euclid(MINUTE_MS);
        let get = |v: &[(i64, f64)], m: i64| v.iter().find(|(k, _)| *k == m).map_or(0.0, |(_, x)| *x);
        let all = |m: i64| get(&t.cluster_tokens, m) + get(&t.pending_tokens, m);
        Some(all(minute - MINUTE_MS) * w + all(minute))
    }

    /// The cluster's spend in the budget period holding `now`, with what is not sent yet.
    pub fn cluster_spent(&self, now: i64) -> Option<f64> {
        let t = self.totals.lock();
        let start = crate::access::limits::period_start(now, self.period);
        let (p, spent) = t.cluster_spent?;
        let pending: f64 = t.pending_cost.iter().filter(|(k, _)| *k == start).map(|(_, v)| v).sum();
        Some(if p == start { spent + pending } else { pending })
    }

    /// Send the pending tokens and cost, read the cluster's totals back.
    pub async fn sync(&self, cluster: &Cluster, now: i64) {
        if self.tpm.is_none() && self.budget.is_none() {
            return;
        }
        let (tokens, cost) = {
            let mut t = self.totals.lock();
            (std::mem::take(&mut t.pending_tokens), std::mem::take(&mut t.pending_cost))
        };
        let minute = now - now.rem_euclid(MINUTE_MS);
        let start = crate::access::limits::period_start(now, self.period);
        let tk = |m: i64| format!("codex-gate:tpm:{}:{m}", self.key_id);
        let sk = |p: i64| format!("codex-gate:spent:{}:{p}", self.key_id);
        let mut pipe = redis::pipe();
        for (m, v) in &tokens {
            pipe.cmd("INCRBY").arg(tk(*m)).arg(v.round() as i64).ignore();
            pipe.cmd("PEXPIRE").arg(tk(*m)).arg(3 * MINUTE_MS).ignore();
        }
        for (p, v) in &cost {
            pipe.cmd("INCRBYFLOAT").arg(sk(*p)).arg(*v).ignore();
            pipe.cmd("PEXPIRE").arg(sk(*p)).arg(40 * 86_400_000i64).ignore();
        }
        pipe.cmd("GET").arg(tk(minute - MINUTE_MS));
        pipe.cmd("GET").arg(tk(minute));
        pipe.cmd("GET").arg(sk(start));
        let read: Option<(Option<f64>, Option<f64>, Option<f64>)> =
            cluster.call(|mut c| async move { pipe.query_async(&mut c).await }).await;
        let mut t = self.totals.lock();
        match read {
            Some((prev, cur, spent)) => {
                t.cluster_tokens = vec![(minute - MINUTE_MS, prev.unwrap_or(0.0)), (minute, cur.unwrap_or(0.0))];
                t.cluster_spent = Some((start, spent.unwrap_or(0.0)));
            }
            None => {
                // Unreachable: keep what was not sent, for when Redis is back.
                for (m, v) in tokens {
                    add(&mut t.pending_tokens, m, v);
                }
                for (p, v) in cost {
                    add(&mut t.pending_cost, p, v);
                }
                t.pending_tokens.retain(|(m, _)| *m >= minute - MINUTE_MS);
            }
        }
    }
}

fn add(v: &mut Vec<(i64, f64)>, k: i64, x: f64) {
    match v.iter_mut().find(|(key, _)| *key == k) {
        Some((_, sum)) => *sum += x,
        None => v.push((k, x)),
    }
}

/// Sync every key's totals every 200 ms until `stop`.
pub async fn run(cluster: Arc<Cluster>, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        for s in cluster.counters.live() {
            s.sync(&cluster, crate::now_ms()).await;
        }
    }
}
