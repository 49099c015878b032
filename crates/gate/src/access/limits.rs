//! Per-key limits, in memory: requests and tokens per minute (a sliding window over the
//! current and previous minute), concurrent requests, a USD budget per calendar period, and a
//! share of the subscription pool's windows. A request reserves before it is sent (one lock,
//! no I/O) and settles when its tally closes, with the tokens and cost it really used.

use super::keys::{Period, Policy};
use crate::cluster::counters::{Shared, Take};
use crate::store::Store;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Rpm,
    Tpm,
    Concurrency,
    Budget,
    PoolShare,
}

impl LimitKind {
    /// The request-log and metrics code.
    pub fn code(self) -> &'static str {
        match self {
            LimitKind::Rpm => "key_rpm_exceeded",
            LimitKind::Tpm => "key_tpm_exceeded",
            LimitKind::Concurrency => "key_concurrency_exceeded",
            LimitKind::Budget => "budget_exceeded",
            LimitKind::PoolShare => "pool_share_exceeded",
        }
    }
}

/// A refusal, with what the `retry-after` and `x-ratelimit-*` headers say.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    pub kind: LimitKind,
    pub limit: f64,
    pub remaining: f64,
    /// Seconds until a retry can succeed (at least 1).
    pub retry_after_s: u64,
}

/// Sums over a rolling span, kept in fixed buckets.
#[derive(Debug)]
struct Rolling {
    bucket_ms: i64,
    span_ms: i64,
    buckets: std::collections::VecDeque<(i64, f64)>,
}

impl Rolling {
    fn new(bucket_ms: i64, span_ms: i64) -> Rolling {
        Rolling { bucket_ms, span_ms, buckets: Default::default() }
    }

    fn add(&mut self, now: i64, v: f64) {
        let start = now - now.rem_euclid(self.bucket_ms);
        match self.buckets.back_mut() {
            Some((s, sum)) if *s == start => *sum += v,
            _ => self.buckets.push_back((start, v)),
        }
        self.expire(now);
    }

    fn expire(&mut self, now: i64) {
        while self.buckets.front().is_some_and(|(s, _)| *s + self.bucket_ms <= now - self.span_ms) {
            self.buckets.pop_front();
        }
    }

    fn sum(&mut self, now: i64) -> f64 {
        self.expire(now);
        self.buckets.iter().map(|(_, v)| v).sum()
    }

    /// Milliseconds until the oldest bucket leaves the span.
    fn next_expiry_in(&self, now: i64) -> i64 {
        self.buckets.front().map_or(0, |(s, _)| (s + self.bucket_ms + self.span_ms - now).max(0))
    }
}

#[derive(Debug)]
struct Counters {
    /// Start of the current minute.
    minute: i64,
    cur_requests: f64,
    cur_tokens: f64,
    prev_requests: f64,
    prev_tokens: f64,
    /// Start of the budget's current period, and what was spent in it.
    period_start: i64,
    spent_usd: f64,
    /// Percent of the pool's capacity used, in the 5-hour and the 7-day windows.
    share_5h: Rolling,
    share_7d: Rolling,
}

impl Counters {
    fn roll(&mut self, now: i64, period: Period) {
        let minute = now - now.rem_euclid(MINUTE_MS);
        if minute != self.minute {
            let adjacent = minute - self.minute == MINUTE_MS;
            self.prev_requests = if adjacent { self.cur_requests } else { 0.0 };
            self.prev_tokens = if adjacent { self.cur_tokens } else { 0.0 };
            self.cur_requests = 0.0;
            self.cur_tokens = 0.0;
            self.minute = minute;
        }
        let start = period_start(now, period);
        if start != self.period_start {
            self.period_start = start;
            self.spent_usd = 0.0;
        }
    }

    /// The previous minute's weight in the sliding window at `now`.
    fn prev_weight(&self, now: i64) -> f64 {
        1.0 - (now - self.minute) as f64 / MINUTE_MS as f64
    }
}

/// One key's counters.
#[derive(Debug)]
pub struct KeyLimits {
    rpm: Option<u32>,
    tpm: Option<u64>,
    concurrency: Option<u32>,
    budget: Option<f64>,
    period: Period,
    pool_share: Option<f64>,
    in_flight: AtomicU32,
    state: Mutex<Counters>,
    /// With `[cluster]`: the counters all instances share (see `crate::cluster::counters`).
    shared: Option<(Arc<Shared>, Arc<crate::cluster::Cluster>)>,
}

/// A request's hold on its key's limits. Dropping it releases the concurrency slot; settle it
/// with what the request used.
#[derive(Debug)]
pub struct Reservation {
    limits: Arc<KeyLimits>,
    tokens: f64,
    minute: i64,
    slot: bool,
}

impl Reservation {
    /// The request used `tokens` (input + output) and cost `cost_usd`.
    pub fn settle(&mut self, tokens: u64, cost_usd: f64) {
        let mut c = self.limits.state.lock();
        let fix = tokens as f64 - self.tokens;
        if c.minute == self.minute {
            c.cur_tokens = (c.cur_tokens + fix).max(0.0);
        } else if c.minute == self.minute + MINUTE_MS {
            c.prev_tokens = (c.prev_tokens + fix).max(0.0);
        }
        c.spent_usd += cost_usd;
        self.tokens = tokens as f64;
        drop(c);
        if let Some((s, _)) = &self.limits.shared {
            s.used(crate::now_ms(), tokens as f64, cost_usd);
        }
    }

    /// A pool turn used `primary` and `secondary` percent of the whole pool's windows.
    pub fn pool_used(&self, now: i64, primary: f64, secondary: f64) {
        if self.limits.pool_share.is_none() {
            return;
        }
        let mut c = self.limits.state.lock();
        c.share_5h.add(now, primary.max(0.0));
        c.share_7d.add(now, secondary.max(0.0));
    }

    pub fn limits(&self) -> &Arc<KeyLimits> {
        &self.limits
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.slot {
            self.limits.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl KeyLimits {
    pub fn new(policy: &Policy, now: i64) -> KeyLimits {
        KeyLimits {
            rpm: policy.rpm,
            tpm: policy.tpm,
            concurrency: policy.concurrency,
            budget: policy.budget_usd,
            period: policy.budget_period,
            pool_share: policy.pool_share,
            in_flight: AtomicU32::new(0),
            state: Mutex::new(Counters {
                minute: now - now.rem_euclid(MINUTE_MS),
                cur_requests: 0.0,
                cur_tokens: 0.0,
                prev_requests: 0.0,
                prev_tokens: 0.0,
                period_start: period_start(now, policy.budget_period),
                spent_usd: 0.0,
                share_5h: Rolling::new(5 * MINUTE_MS, 5 * 60 * MINUTE_MS),
                share_7d: Rolling::new(60 * MINUTE_MS, 7 * DAY_MS),
            }),
            shared: None,
        }
    }

    /// Share this key's counters with the other instances through `cluster`.
    pub fn with_cluster(mut self, id: &str, cluster: &Arc<crate::cluster::Cluster>) -> KeyLimits {
        if self.rpm.is_some() || self.tpm.is_some() || self.budget.is_some() {
            let s = Arc::new(Shared::new(id, self.rpm, self.tpm, self.budget, self.period));
            cluster.counters.register(&s);
            self.shared = Some((s, cluster.clone()));
        }
        self
    }

    /// Renew this key's request lease if it needs one (with `[cluster]`; the only Redis wait on
    /// the request path, once per lease).
    pub async fn prepare(&self, now: i64) {
        if let Some((s, c)) = &self.shared {
            s.ensure_lease(c, now).await;
        }
    }

    /// Counters that start from what the store recorded for key `id` in the windows under way
    /// (a limit added to a busy key counts the traffic it already had).
    pub async fn seeded(
        policy: &Policy,
        id: &str,
        store: &Store,
        now: i64,
        cluster: Option<&Arc<crate::cluster::Cluster>>,
    ) -> KeyLimits {
        let mut limits = KeyLimits::new(policy, now);
        if let Some(c) = cluster {
            limits = limits.with_cluster(id, c);
        }
        if policy.rpm.is_some() || policy.tpm.is_some() {
            match store.key_usage_since(id, now - MINUTE_MS).await {
                Ok(u) => {
                    // The last 60 s count as this minute's: a little strict until they age
                    // out of the sliding window, never lenient.
                    let mut c = limits.state.lock();
                    c.cur_requests = u.requests as f64;
                    c.cur_tokens = (u.input_tokens + u.output_tokens) as f64;
                }
                Err(e) => {
                    tracing::warn!(key = %id, error = %e, "cannot read the key's recent usage; its minute starts at 0")
                }
            }
        }
        if policy.budget_usd.is_some() {
            let start = period_start(now, policy.budget_period);
            match store.key_cost_since(id, start).await {
                Ok(spent) => limits.state.lock().spent_usd = spent,
                Err(e) => tracing::warn!(key = %id, error = %e, "cannot read the key's spend; its budget starts at 0"),
            }
        }
        limits
    }

    /// Reserve one request expected to use `tokens` (input + output, estimated). `pool_only`:
    /// it can only be served by the pool, so the key's pool share applies.
    pub fn reserve(self: &Arc<Self>, now: i64, tokens: u64, pool_only: bool) -> Result<Reservation, Limited> {
        let mut slot = false;
        if let Some(max) = self.concurrency {
            let was = self.in_flight.fetch_add(1, Ordering::AcqRel);
            if was >= max {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                return Err(Limited {
                    kind: LimitKind::Concurrency,
                    limit: f64::from(max),
                    remaining: 0.0,
                    retry_after_s: 1,
                });
            }
            slot = true;
        }
        // From here on an early return drops the reservation, which gives the slot back.
        let mut r = Reservation { limits: self.clone(), tokens: 0.0, minute: 0, slot };
        let mut c = self.state.lock();
        c.roll(now, self.period);
        r.minute = c.minute;
        let w = c.prev_weight(now);
        let until_minute_end = MINUTE_MS - (now - c.minute);
        let shared = self.shared.as_ref().map(|(s, _)| s);
        if let Some(tpm) = self.tpm.map(|t| t as f64) {
            let local = c.prev_tokens * w + c.cur_tokens;
            let used = local.max(shared.and_then(|s| s.cluster_tokens(now, w)).unwrap_or(0.0));
            if used >= tpm {
                let wait = wait_ms(c.prev_tokens, c.cur_tokens, used - tpm + 1.0, now - c.minute);
                return Err(limited(LimitKind::Tpm, tpm, used, wait.min(until_minute_end + MINUTE_MS)));
            }
        }
        if let Some(budget) = self.budget {
            let spent = c.spent_usd.max(shared.and_then(|s| s.cluster_spent(now)).unwrap_or(0.0));
            if spent >= budget {
                let wait = period_end(now, self.period) - now;
                return Err(limited(LimitKind::Budget, budget, spent, wait));
            }
        }
        if let Some(share) = self.pool_share.filter(|_| pool_only) {
            let (h5, d7) = (c.share_5h.sum(now), c.share_7d.sum(now));
            if h5 >= share || d7 >= share {
                let wait = if h5 >= share { c.share_5h.next_expiry_in(now) } else { c.share_7d.next_expiry_in(now) };
                return Err(limited(LimitKind::PoolShare, share, h5.max(d7), wait));
            }
        }
        // Last, so a request another limit refuses takes nothing from a shared lease.
        if let Some(rpm) = self.rpm.map(f64::from) {
            let used = c.prev_requests * w + c.cur_requests;
            match shared.map(|s| s.take(now, self.shared.as_ref().is_some_and(|(_, cl)| cl.is_up()))) {
                Some(Take::Taken) => {}
                Some(Take::Exhausted) => return Err(limited(LimitKind::Rpm, rpm, rpm, until_minute_end)),
                // No cluster, or Redis unreachable: this instance's own sliding window.
                None | Some(Take::Local) => {
                    if used + 1.0 > rpm {
                        let wait = wait_ms(c.prev_requests, c.cur_requests, used + 1.0 - rpm, now - c.minute);
                        return Err(limited(LimitKind::Rpm, rpm, used, wait.min(until_minute_end + MINUTE_MS)));
                    }
                }
            }
        }
        c.cur_requests += 1.0;
        c.cur_tokens += tokens as f64;
        r.tokens = tokens as f64;
        drop(c);
        Ok(r)
    }

    /// Has this key used its share of the pool (so its pool targets are skipped)?
    pub fn pool_share_used(&self, now: i64) -> bool {
        let Some(share) = self.pool_share else { return false };
        let mut c = self.state.lock();
        c.share_5h.sum(now) >= share || c.share_7d.sum(now) >= share
    }

    /// For `keys show` and the admin API: the windows as this instance counts them.
    pub fn snapshot(&self, now: i64) -> serde_json::Value {
        let mut c = self.state.lock();
        c.roll(now, self.period);
        let w = c.prev_weight(now);
        serde_json::json!({
            "requests_last_minute": (c.prev_requests * w + c.cur_requests).round(),
            "tokens_last_minute": (c.prev_tokens * w + c.cur_tokens).round(),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "spent_usd": c.spent_usd,
            "budget_period_start_ms": c.period_start,
            "pool_share_5h_percent": c.share_5h.sum(now),
            "pool_share_7d_percent": c.share_7d.sum(now),
        })
    }
}

fn limited(kind: LimitKind, limit: f64, used: f64, wait_ms: i64) -> Limited {
    Limited {
        kind,
        limit,
        remaining: (limit - used).max(0.0),
        retry_after_s: ((wait_ms.max(0) + 999) / 1000).max(1) as u64,
    }
}

/// How long until the sliding window's count drops by `excess`, `into` ms into the minute:
/// the previous minute's share shrinks linearly; past the minute's end only the current
/// minute's (then previous) count is left, which shrinks the same way.
fn wait_ms(prev: f64, cur: f64, excess: f64, into: i64) -> i64 {
    let rate = prev / MINUTE_MS as f64;
    let left_in_minute = (MINUTE_MS - into) as f64;
    if rate > 0.0 && excess <= rate * left_in_minute {
        return (excess / rate).ceil() as i64;
    }
    let excess = excess - rate * left_in_minute;
    let rate = cur / MINUTE_MS as f64;
    if rate <= 0.0 {
        return left_in_minute as i64;
    }
    left_in_minute as i64 + (excess / rate).ceil() as i64
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Start (Unix ms, UTC) of the period holding `now`: midnight, Monday midnight, the 1st.
pub fn period_start(now: i64, p: Period) -> i64 {
    let day = now.div_euclid(DAY_MS);
    match p {
        Period::Day => day * DAY_MS,
        // 1970-01-01 was a Thursday.
        Period::Week => (day - (day + 3).rem_euclid(7)) * DAY_MS,
        Period::Month => {
            let (y, m, _) = civil(day);
            days_from_civil(y, m, 1) * DAY_MS
        }
    }
}

/// End of the period holding `now` (the next one's start).
pub fn period_end(now: i64, p: Period) -> i64 {
    let start = period_start(now, p);
    match p {
        Period::Day => start + DAY_MS,
        Period::Week => start + 7 * DAY_MS,
        Period::Month => {
            let (y, m, _) = civil(start / DAY_MS);
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_from_civil(y, m, 1) * DAY_MS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(p: Policy) -> Arc<KeyLimits> {
        Arc::new(KeyLimits::new(&p, 0))
    }

    #[test]
    fn rpm_allows_n_per_sliding_minute_and_says_when_to_retry() {
        let l = limits(Policy { rpm: Some(3), ..Default::default() });
        let t0 = 10 * MINUTE_MS;
        let held: Vec<_> = (0..3).map(|i| l.reserve(t0 + i, 10, true).unwrap()).collect();
        let e = l.reserve(t0 + 10, 10, true).unwrap_err();
        assert_eq!((e.kind, e.limit, e.remaining), (LimitKind::Rpm, 3.0, 0.0));
        // The 3 weigh 2 (the limit less one) a third of the way into the next minute: 80 s.
        assert_eq!(e.retry_after_s, 80, "{e:?}");
        drop(held);
        // Half a minute into the next minute, the 3 earlier requests weigh 1.5: one more fits.
        assert!(l.reserve(t0 + MINUTE_MS + MINUTE_MS / 2, 10, true).is_ok());
        assert!(l.reserve(t0 + MINUTE_MS + MINUTE_MS / 2 + 1, 10, true).is_err());
        // Two minutes later everything has aged out.
        for i in 0..3 {
            assert!(l.reserve(t0 + 3 * MINUTE_MS + i, 10, true).is_ok());
        }
    }

    #[test]
    fn tpm_counts_settled_tokens_not_the_estimate() {
        let l = limits(Policy { tpm: Some(1000), ..Default::default() });
        let mut r = l.reserve(5, 100, true).unwrap();
        r.settle(2000, 0.0);
        let e = l.reserve(6, 100, true).unwrap_err();
        assert_eq!(e.kind, LimitKind::Tpm);
        let l = limits(Policy { tpm: Some(1000), ..Default::default() });
        let mut r = l.reserve(5, 900, true).unwrap();
        r.settle(10, 0.0);
        assert!(l.reserve(6, 900, true).is_ok(), "the estimate was replaced by the 10 tokens used");
    }

    #[test]
    fn concurrency_slots_come_back_when_reservations_drop() {
        let l = limits(Policy { concurrency: Some(2), ..Default::default() });
        let a = l.reserve(1, 0, true).unwrap();
        let _b = l.reserve(1, 0, true).unwrap();
        assert_eq!(l.reserve(1, 0, true).unwrap_err().kind, LimitKind::Concurrency);
        drop(a);
        assert!(l.reserve(1, 0, true).is_ok());
        // A request refused by another limit does not keep a slot.
        let l = limits(Policy { concurrency: Some(1), rpm: Some(1), ..Default::default() });
        drop(l.reserve(1, 0, true).unwrap());
        assert_eq!(l.reserve(2, 0, true).unwrap_err().kind, LimitKind::Rpm);
        assert_eq!(l.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn budgets_refuse_once_spent_until_the_period_ends() {
        let now = days_from_civil(2026, 12, 2) * DAY_MS + 3_600_000;
        let l = Arc::new(KeyLimits::new(
            &Policy { budget_usd: Some(1.0), budget_period: Period::Day, ..Default::default() },
            now,
        ));
        l.reserve(now, 0, true).unwrap().settle(0, 0.6);
        l.reserve(now + 1, 0, true).unwrap().settle(0, 0.6);
        let e = l.reserve(now + 2, 0, true).unwrap_err();
        assert_eq!(e.kind, LimitKind::Budget);
        assert_eq!(e.retry_after_s, 23 * 3600, "until midnight UTC");
        assert!(l.reserve(now + 23 * 3_600_000, 0, true).is_ok(), "a new day");
    }

    #[test]
    fn pool_share_counts_pool_percent_in_rolling_windows() {
        let l = limits(Policy { pool_share: Some(25.0), ..Default::default() });
        let r = l.reserve(1, 0, true).unwrap();
        r.pool_used(1, 20.0, 2.0);
        assert!(!l.pool_share_used(2));
        r.pool_used(2, 6.0, 1.0);
        assert!(l.pool_share_used(3));
        let e = l.reserve(3, 0, true).unwrap_err();
        assert_eq!(e.kind, LimitKind::PoolShare);
        assert!(l.reserve(3, 0, false).is_ok(), "a request an API provider can serve is not held back");
        assert!(e.retry_after_s <= 5 * 3600 + 300);
        assert!(!l.pool_share_used(5 * 3_600_000 + 5 * MINUTE_MS + 1), "the 5-hour window moved on");
    }

    #[test]
    fn calendar_periods_in_utc() {
        let at = |y, m, d, h: i64| days_from_civil(y, m, d) * DAY_MS + h * 3_600_000;
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        // 2026-12-02 is a Wednesday.
        let now = at(2026, 12, 2, 15);
        assert_eq!(period_start(now, Period::Day), at(2026, 12, 2, 0));
        assert_eq!(period_start(now, Period::Week), at(2026, 11, 30, 0));
        assert_eq!(period_start(now, Period::Month), at(2026, 12, 1, 0));
        assert_eq!(period_end(now, Period::Month), at(2027, 1, 1, 0));
        assert_eq!(period_end(at(2024, 2, 10, 0), Period::Month), at(2024, 3, 1, 0));
        assert_eq!(period_end(now, Period::Week), at(2026, 12, 7, 0));
    }
}
