//! The pool's rate limits presented as one account's, in Codex's own types: the `wham/usage`
//! body (`RateLimitStatusPayload`: integer percents and seconds, a plan from Codex's list) and
//! the `x-codex-*` headers of a turn. A window is the capacity-weighted used percent of the
//! active accounts that have reported it; an account never observed is left out rather than
//! counted as unused, and a window no account has reported is `null`. The reset is the soonest.

use super::quota::{Quota, Window};
use super::select::plan_capacity;
use super::{Pool, Status};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;

/// The plans Codex's `PlanType` knows; anything else would fail its decoding.
const CODEX_PLANS: &[&str] = &[
    "guest",
    "free",
    "go",
    "plus",
    "pro",
    "free_workspace",
    "team",
    "business",
    "education",
    "quorum",
    "k12",
    "enterprise",
    "edu",
];

/// One window, as Codex's `RateLimitWindowSnapshot` (every field an `i32`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PooledWindow {
    pub used_percent: i32,
    pub limit_window_seconds: i32,
    pub reset_after_seconds: i32,
    pub reset_at: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimit {
    pub allowed: bool,
    pub limit_reached: bool,
    pub primary_window: Option<PooledWindow>,
    pub secondary_window: Option<PooledWindow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Credits {
    pub has_credits: bool,
    pub unlimited: bool,
    pub balance: Option<String>,
}

/// `wham/usage` for the whole pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PooledUsage {
    pub plan_type: String,
    pub rate_limit: RateLimit,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<Credits>,
}

/// One account's contribution: capacity, its quota, whether it can serve now.
pub struct Share {
    pub plan: Option<String>,
    pub capacity: f64,
    pub quota: Quota,
    pub can_serve: bool,
}

/// Combine the active accounts' shares at `now_s`.
pub fn combine(shares: &[Share], now_s: i64) -> PooledUsage {
    let window = |pick: fn(&Quota) -> Option<Window>, default_minutes: i64| {
        let (mut used, mut cap, mut reset, mut minutes) = (0.0, 0.0, None::<i64>, None);
        for s in shares {
            let Some(w) = pick(&s.quota) else { continue };
            used += Quota::used(Some(&w), now_s) * s.capacity;
            cap += s.capacity;
            if let Some(r) = w.reset_at.filter(|r| *r > now_s) {
                reset = Some(reset.map_or(r, |x| x.min(r)));
            }
            minutes = minutes.or(w.window_minutes);
        }
        (cap > 0.0).then(|| {
            let seconds = minutes.unwrap_or(default_minutes) * 60;
            // Unknown reset: at most a whole window away.
            let reset_at = reset.unwrap_or(now_s + seconds);
            PooledWindow {
                used_percent: (used / cap).round().clamp(0.0, 100.0) as i32,
                limit_window_seconds: clamp_i32(seconds),
                reset_after_seconds: clamp_i32(reset_at - now_s),
                reset_at: clamp_i32(reset_at),
            }
        })
    };
    let allowed = shares.iter().any(|s| s.can_serve);
    let credits = shares.iter().any(|s| s.quota.credits_has.is_some()).then(|| Credits {
        has_credits: shares.iter().any(|s| s.quota.credits_has == Some(true)),
        unlimited: shares.iter().any(|s| s.quota.credits_unlimited == Some(true)),
        balance: None,
    });
    PooledUsage {
        plan_type: pool_plan(shares),
        rate_limit: RateLimit {
            allowed,
            limit_reached: !allowed,
            primary_window: window(|q| q.primary, 300),
            secondary_window: window(|q| q.secondary, 10_080),
        },
        credits,
    }
}

fn clamp_i32(v: i64) -> i32 {
    v.clamp(0, i64::from(i32::MAX)) as i32
}

/// The plan that holds the most capacity, as a plan Codex knows (ties: the plan seen first).
/// One pass with a total per plan: this runs on every pooled turn, and summing per account
/// made a 10,000-account pool cost a second of CPU per request.
fn pool_plan(shares: &[Share]) -> String {
    let mut totals: Vec<(&str, f64)> = Vec::new();
    for s in shares {
        let Some(p) = s.plan.as_deref().filter(|p| CODEX_PLANS.contains(p)) else { continue };
        match totals.iter_mut().find(|(q, _)| *q == p) {
            Some((_, t)) => *t += s.capacity,
            None => totals.push((p, s.capacity)),
        }
    }
    let mut best: Option<(&str, f64)> = None;
    for (p, t) in totals {
        if best.is_none_or(|(_, b)| t > b) {
            best = Some((p, t));
        }
    }
    best.map_or("plus", |(p, _)| p).to_owned()
}

impl PooledUsage {
    /// The `x-codex-*` rate-limit headers of a turn (codex-protocol §5), for this view.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        for (prefix, w) in
            [("primary", &self.rate_limit.primary_window), ("secondary", &self.rate_limit.secondary_window)]
        {
            let Some(w) = w else { continue };
            let (used, minutes, reset) = match prefix {
                "primary" => {
                    ("x-codex-primary-used-percent", "x-codex-primary-window-minutes", "x-codex-primary-reset-at")
                }
                _ => {
                    ("x-codex-secondary-used-percent", "x-codex-secondary-window-minutes", "x-codex-secondary-reset-at")
                }
            };
            put(used, w.used_percent.to_string());
            put(minutes, (w.limit_window_seconds / 60).to_string());
            put(reset, w.reset_at.to_string());
        }
        if let Some(c) = &self.credits {
            put("x-codex-credits-has-credits", c.has_credits.to_string());
            put("x-codex-credits-unlimited", c.unlimited.to_string());
        }
        h
    }
}

/// Whether an upstream response header is one of the rate-limit headers [`PooledUsage::headers`]
/// replaces.
pub fn is_rate_limit_header(name: &str) -> bool {
    ["x-codex-primary-", "x-codex-secondary-", "x-codex-credits-"].iter().any(|p| name.starts_with(p))
}

impl Pool {
    /// The pooled view now.
    /// Every pooled turn's headers carry it, and computing it reads every account: it is kept
    /// until what it reads changes or the second turns (windows reset and cooldowns end with
    /// time), which made a 10,000-account pool's turn cost 4 ms of CPU instead of 1 s.
    pub fn pooled_usage(&self) -> PooledUsage {
        let now_ms = crate::now_ms();
        // The generation is read before computing: a change during it leaves a stale key.
        let key = (self.usage_gen.load(std::sync::atomic::Ordering::Acquire), now_ms / 1000);
        if let Some((k, u)) = &*self.usage_cache.lock() {
            if *k == key {
                return u.clone();
            }
        }
        let u = self.pooled_usage_at(now_ms);
        *self.usage_cache.lock() = Some((key, u.clone()));
        u
    }

    /// The pooled view at `now_ms`, from every active account.
    pub fn pooled_usage_at(&self, now_ms: i64) -> PooledUsage {
        let shares: Vec<Share> = self
            .accounts
            .read()
            .iter()
            .filter(|a| *a.status.read() == Status::Active)
            .map(|a| {
                let quota = a.quota.read().clone();
                let now_s = now_ms / 1000;
                let full = |w: &Option<Window>| Quota::used(w.as_ref(), now_s) >= 100.0;
                let can_serve =
                    a.cooldown_until_ms.load(Relaxed) <= now_ms && !full(&quota.primary) && !full(&quota.secondary);
                Share {
                    plan: a.plan_type.clone(),
                    capacity: plan_capacity(a.plan_type.as_deref()) * a.weight,
                    quota,
                    can_serve,
                }
            })
            .collect();
        combine(&shares, now_ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(plan: &str, primary: Option<(f64, i64)>, can_serve: bool) -> Share {
        let quota = Quota {
            primary: primary.map(|(u, r)| Window { used_percent: u, window_minutes: Some(300), reset_at: Some(r) }),
            ..Quota::default()
        };
        Share { plan: Some(plan.into()), capacity: plan_capacity(Some(plan)), quota, can_serve }
    }

    #[test]
    fn unobserved_accounts_are_unknown_not_unused() {
        // One Plus at 80 % and one never observed: the pool is at 80 %, not 40 %.
        let u = combine(&[share("plus", Some((80.0, 1_000)), true), share("plus", None, true)], 100);
        let w = u.rate_limit.primary_window.clone().unwrap();
        assert_eq!(
            (w.used_percent, w.reset_after_seconds, w.reset_at, w.limit_window_seconds),
            (80, 900, 1_000, 18_000)
        );
        assert!(u.rate_limit.secondary_window.is_none(), "no account reported it");
        // Capacity-weighted: a Pro at 10 % and a Plus at 100 %.
        let u = combine(&[share("pro", Some((10.0, 500)), true), share("plus", Some((100.0, 300)), false)], 100);
        let w = u.rate_limit.primary_window.clone().unwrap();
        assert_eq!((w.used_percent, w.reset_at), (23, 300), "(6*10 + 1*100) / 7, soonest reset");
        assert_eq!(u.plan_type, "pro");
        assert!(u.rate_limit.allowed && !u.rate_limit.limit_reached);
        let none = combine(&[], 100);
        assert!(none.rate_limit.limit_reached && none.rate_limit.primary_window.is_none());
        assert_eq!(none.plan_type, "plus");
        // The plan with the most capacity in total, not the biggest seat: three Plus seats
        // hold more than a Pro seat at 2.5 (weights as configured), and ties keep the first.
        let mut pro = share("pro", None, true);
        pro.capacity = 2.5;
        let mixed = [share("plus", None, true), pro, share("plus", None, true), share("plus", None, true)];
        assert_eq!(combine(&mixed, 100).plan_type, "plus");
        let tie = [share("team", None, true), share("plus", None, true)];
        assert_eq!(combine(&tie, 100).plan_type, "team");
        let odd = combine(&[share("prolite", None, true)], 100);
        assert_eq!(odd.plan_type, "plus", "a plan Codex does not know would fail its decoding");
    }

    #[test]
    fn serializes_as_codex_types_and_headers() {
        let u = combine(&[share("plus", Some((42.4, 4_000)), true)], 100);
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(v["rate_limit"]["primary_window"]["used_percent"], 42, "an integer");
        assert!(v["rate_limit"]["secondary_window"].is_null());
        assert!(v.get("credits").is_none());
        let h = u.headers();
        assert_eq!(h["x-codex-primary-used-percent"], "42");
        assert_eq!(h["x-codex-primary-window-minutes"], "300");
        assert_eq!(h["x-codex-primary-reset-at"], "4000");
        assert!(is_rate_limit_header("x-codex-primary-used-percent") && !is_rate_limit_header("x-codex-turn-state"));
    }
}
