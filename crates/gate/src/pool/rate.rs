//! Requests per minute of one pool account (a sliding window over two minutes), for
//! `[pool] account_rpm`: an account at its rate is passed over like one at its concurrency cap.

use parking_lot::Mutex;

const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Default)]
pub struct MinuteRate {
    /// (start of the current minute, its count, the previous minute's count).
    state: Mutex<(i64, u32, u32)>,
}

impl MinuteRate {
    fn roll(s: &mut (i64, u32, u32), now: i64) {
        let minute = now - now.rem_euclid(MINUTE_MS);
        if minute != s.0 {
            s.2 = if minute - s.0 == MINUTE_MS { s.1 } else { 0 };
            s.1 = 0;
            s.0 = minute;
        }
    }

    /// One more request at `now`.
    pub fn count(&self, now: i64) {
        let mut s = self.state.lock();
        Self::roll(&mut s, now);
        s.1 += 1;
    }

    /// Requests in the minute before `now` (the previous minute weighted by its overlap).
    pub fn used(&self, now: i64) -> f64 {
        let mut s = self.state.lock();
        Self::roll(&mut s, now);
        let w = 1.0 - (now - s.0) as f64 / MINUTE_MS as f64;
        f64::from(s.2) * w + f64::from(s.1)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slides_over_two_minutes() {
        let r = super::MinuteRate::default();
        for _ in 0..10 {
            r.count(60_000);
        }
        assert_eq!(r.used(60_001), 10.0);
        assert!((r.used(150_000) - 5.0).abs() < 1e-9, "half of the previous minute");
        assert_eq!(r.used(240_000), 0.0);
    }
}
