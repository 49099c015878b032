//! Account selection: a pure function over snapshots, run under a read lock with no I/O.
//!
//! Eligible accounts are active, not cooling down and under their concurrency cap; when every
//! available account is at its cap the least-loaded one is used anyway (the cap spills over, it
//! never fails a request). A session's sticky account is kept while it has headroom.

/// What selection knows about one account.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Active, has a usable login, and not cooling down.
    pub available: bool,
    pub in_flight: u32,
    /// Concurrency cap (0: none).
    pub cap: u32,
    /// At its `[pool] account_rpm` rate: passed over like an account at its cap.
    pub rate_full: bool,
    /// Used percent of the 5-hour and weekly windows (0–100; 0 once a window has reset).
    pub primary_used: f64,
    pub secondary_used: f64,
    /// Seconds until the 5-hour window resets, if known.
    pub primary_reset_in: Option<f64>,
    /// Plan capacity × configured weight.
    pub capacity: f64,
    pub priority: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Most headroom across both windows, weighted by plan capacity, preferring windows that
    /// reset sooner (their unused quota is lost at reset).
    UsageAware,
    RoundRobin,
    /// The first account whenever it can serve; the others only when it cannot.
    PrimaryFirst,
    /// Highest `priority` first.
    PriorityOrder,
    /// Fill the most-used account that still has headroom before touching the next.
    FillFirst,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "usage_aware" => Strategy::UsageAware,
            "round_robin" => Strategy::RoundRobin,
            "primary_first" => Strategy::PrimaryFirst,
            "priority_order" => Strategy::PriorityOrder,
            "fill_first" => Strategy::FillFirst,
            _ => return None,
        })
    }
}

/// Relative capacity of a plan (a Pro seat has far more Codex quota than a Plus seat).
pub fn plan_capacity(plan: Option<&str>) -> f64 {
    match plan.unwrap_or("") {
        "pro" => 6.0,
        "prolite" => 3.0,
        "free" => 0.2,
        "go" => 0.5,
        _ => 1.0,
    }
}

fn headroom(c: &Candidate) -> f64 {
    (100.0 - c.primary_used.max(c.secondary_used)).max(0.0) / 100.0
}

fn score(c: &Candidate) -> f64 {
    let soon = c.primary_reset_in.map_or(0.0, |s| 1.0 - (s / 18_000.0).clamp(0.0, 1.0));
    c.capacity * headroom(c) * (1.0 + 0.5 * soon) / (1.0 + 0.1 * f64::from(c.in_flight))
}

/// Pick an account. `sticky`: the session's account, kept while it can serve and both its
/// windows are under `threshold` percent. Returns (index, reason).
pub fn select(
    cands: &[Candidate],
    strategy: Strategy,
    rr: u64,
    sticky: Option<usize>,
    threshold: f64,
) -> Option<(usize, &'static str)> {
    let under_cap =
        |c: &Candidate| c.available && headroom(c) > 0.0 && !c.rate_full && (c.cap == 0 || c.in_flight < c.cap);
    if let Some(i) = sticky.filter(|&i| i < cands.len()) {
        let c = &cands[i];
        if under_cap(c) && c.primary_used < threshold && c.secondary_used < threshold {
            return Some((i, "session affinity"));
        }
    }
    let eligible: Vec<usize> = (0..cands.len()).filter(|&i| under_cap(&cands[i])).collect();
    if eligible.is_empty() {
        // Every available account is at its cap: spill over to the least loaded one.
        return (0..cands.len())
            .filter(|&i| cands[i].available && headroom(&cands[i]) > 0.0)
            .min_by_key(|&i| cands[i].in_flight)
            .map(|i| (i, "all accounts at their concurrency or rate cap: least loaded"));
    }
    let best = |key: &dyn Fn(usize) -> f64| {
        eligible.iter().copied().max_by(|&a, &b| key(a).total_cmp(&key(b)).then(b.cmp(&a)))
    };
    let picked = match strategy {
        Strategy::UsageAware => best(&|i| score(&cands[i])).map(|i| (i, "most headroom (usage_aware)")),
        Strategy::RoundRobin => Some((eligible[(rr % eligible.len() as u64) as usize], "round_robin")),
        Strategy::PrimaryFirst => Some((eligible[0], "primary_first")),
        Strategy::PriorityOrder => best(&|i| cands[i].priority as f64).map(|i| (i, "highest priority")),
        Strategy::FillFirst => best(&|i| cands[i].primary_used.max(cands[i].secondary_used)).map(|i| (i, "fill_first")),
    };
    picked.map(|(i, why)| {
        (i, if sticky.is_some() { "session moved: its account is busy, limited or cooling down" } else { why })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(primary: f64, secondary: f64) -> Candidate {
        Candidate {
            available: true,
            in_flight: 0,
            cap: 0,
            rate_full: false,
            primary_used: primary,
            secondary_used: secondary,
            primary_reset_in: None,
            capacity: 1.0,
            priority: 0,
        }
    }

    #[test]
    fn usage_aware_weighs_headroom_capacity_and_reset() {
        assert_eq!(
            select(&[c(80.0, 10.0), c(20.0, 90.0), c(30.0, 30.0)], Strategy::UsageAware, 0, None, 90.0).unwrap().0,
            2
        );
        let mut pro = c(60.0, 0.0);
        pro.capacity = 6.0;
        assert_eq!(
            select(&[c(0.0, 0.0), pro], Strategy::UsageAware, 0, None, 90.0).unwrap().0,
            1,
            "a Pro seat at 60% beats a fresh Plus seat"
        );
        let mut soon = c(50.0, 0.0);
        soon.primary_reset_in = Some(60.0);
        let mut late = c(45.0, 0.0);
        late.primary_reset_in = Some(17_000.0);
        assert_eq!(
            select(&[late, soon], Strategy::UsageAware, 0, None, 90.0).unwrap().0,
            1,
            "use quota that resets soon"
        );
    }

    #[test]
    fn unavailable_exhausted_and_capped_accounts() {
        let mut off = c(0.0, 0.0);
        off.available = false;
        assert_eq!(select(&[off, c(100.0, 0.0), c(99.0, 0.0)], Strategy::UsageAware, 0, None, 90.0).unwrap().0, 2);
        assert_eq!(select(&[off, c(100.0, 0.0)], Strategy::UsageAware, 0, None, 90.0), None);
        let mut busy = c(0.0, 0.0);
        busy.cap = 2;
        busy.in_flight = 2;
        let mut busier = busy;
        busier.in_flight = 5;
        assert_eq!(
            select(&[busier, busy], Strategy::UsageAware, 0, None, 90.0).unwrap(),
            (1, "all accounts at their concurrency or rate cap: least loaded")
        );
        // An account at its rate is passed over while another can serve, used when none can.
        let mut hot = c(0.0, 0.0);
        hot.rate_full = true;
        assert_eq!(select(&[hot, c(50.0, 0.0)], Strategy::UsageAware, 0, None, 90.0).unwrap().0, 1);
        assert_eq!(select(&[hot], Strategy::UsageAware, 0, None, 90.0).unwrap().0, 0);
        assert_eq!(
            select(&[busy, c(70.0, 0.0)], Strategy::UsageAware, 0, None, 90.0).unwrap().0,
            1,
            "the cap spills over"
        );
    }

    #[test]
    fn strategies() {
        let cs = [c(10.0, 0.0), c(50.0, 0.0), c(30.0, 0.0)];
        let picks: Vec<usize> = (0..4).map(|rr| select(&cs, Strategy::RoundRobin, rr, None, 90.0).unwrap().0).collect();
        assert_eq!(picks, [0, 1, 2, 0]);
        assert_eq!(select(&cs, Strategy::PrimaryFirst, 7, None, 90.0).unwrap().0, 0);
        assert_eq!(select(&cs, Strategy::FillFirst, 0, None, 90.0).unwrap().0, 1);
        let mut p = cs;
        p[2].priority = 5;
        assert_eq!(select(&p, Strategy::PriorityOrder, 0, None, 90.0).unwrap().0, 2);
        assert_eq!(Strategy::parse("fill_first"), Some(Strategy::FillFirst));
        assert_eq!(Strategy::parse("random"), None);
    }

    #[test]
    fn affinity_holds_while_there_is_headroom_then_moves() {
        let cs = [c(10.0, 0.0), c(50.0, 0.0)];
        assert_eq!(select(&cs, Strategy::UsageAware, 0, Some(1), 90.0).unwrap(), (1, "session affinity"));
        let hot = [c(10.0, 0.0), c(95.0, 0.0)];
        assert_eq!(select(&hot, Strategy::UsageAware, 0, Some(1), 90.0).unwrap().0, 0, "moves past the threshold");
        let mut cool = cs;
        cool[1].available = false;
        assert_eq!(select(&cool, Strategy::UsageAware, 0, Some(1), 90.0).unwrap().0, 0, "moves off a cooling account");
    }
}
