//! Run the mock upstream standalone: `mock-upstream [ADDR] [--deltas N] [--size N] [--delay-ms N] [--ttft-ms N]`.

use codex_gate_mock::{MockOptions, MockUpstream};
use std::time::Duration;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:9999".to_owned();
    let mut o = MockOptions { record: 0, ..MockOptions::default() };
    while let Some(a) = args.next() {
        let mut num = || args.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match a.as_str() {
            "--deltas" => o.deltas = num() as usize,
            "--size" => o.delta_bytes = num() as usize,
            "--delay-ms" => o.delay = Duration::from_millis(num()),
            "--ttft-ms" => o.ttft = Duration::from_millis(num()),
            "-h" | "--help" => {
                println!("mock-upstream [ADDR] [--deltas N] [--size N] [--delay-ms N] [--ttft-ms N]");
                return;
            }
            other => addr = other.to_owned(),
        }
    }
    match MockUpstream::start_on(&addr, o).await {
        Ok(m) => {
            println!("mock upstream on {}", m.url());
            let _ = tokio::signal::ctrl_c().await;
        }
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    }
}
