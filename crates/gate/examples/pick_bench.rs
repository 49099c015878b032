//! Cost of choosing an account: the pure `select` over N candidates, per strategy.
//! Run: `cargo run --release -p codex-gate --example pick_bench`

use codex_gate::pool::select::{select, Candidate, Strategy};
use std::time::Instant;

fn main() {
    for n in [10usize, 100, 1_000, 10_000] {
        let cands: Vec<Candidate> = (0..n)
            .map(|i| Candidate {
                available: i % 7 != 0,
                in_flight: (i % 5) as u32,
                cap: 4,
                rate_full: i % 11 == 0,
                primary_used: (i * 37 % 100) as f64,
                secondary_used: (i * 11 % 100) as f64,
                primary_reset_in: Some((i * 101 % 18_000) as f64),
                capacity: if i % 3 == 0 { 6.0 } else { 1.0 },
                priority: (i % 10) as i64,
            })
            .collect();
        let mut line = format!("{n:>6} accounts:");
        for (name, s) in [
            ("usage_aware", Strategy::UsageAware),
            ("round_robin", Strategy::RoundRobin),
            ("fill_first", Strategy::FillFirst),
        ] {
            let rounds = (2_000_000 / n).max(20);
            let t = Instant::now();
            let mut acc = 0usize;
            for r in 0..rounds {
                acc += select(&cands, s, r as u64, None, 90.0).map_or(0, |(i, _)| i);
            }
            let per = t.elapsed().as_secs_f64() / rounds as f64;
            line.push_str(&format!("  {name} {:>9.2} µs/pick", per * 1e6));
            std::hint::black_box(acc);
        }
        println!("{line}");
    }
}
