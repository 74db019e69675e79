//! Throughput of one shared engine from one thread and from two, on distinct sessions.
//!
//! Run with `cargo bench -p mcp-policy-benches --bench threads`. Prints calls per second for each thread count
//! and the ratio of two threads to one (the target is at least 1.7 on two cores).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_policy::{Engine, Policy, ToolCall};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_millis(1500);

/// Calls per second, summed over `threads` threads each on its own session.
fn throughput(engine: &Arc<Engine>, tool: &'static str, threads: usize, shared_key: bool) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (engine, stop, start) = (Arc::clone(engine), Arc::clone(&stop), Arc::clone(&start));
            std::thread::spawn(move || {
                let session = if shared_key {
                    "shared".to_owned()
                } else {
                    format!("session-{t}")
                };
                let call = ToolCall::new(tool).grant("grant-1").session(&session);
                start.wait();
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        std::hint::black_box(
                            engine.evaluate(std::hint::black_box(&call)).is_allowed(),
                        );
                    }
                    calls += 256;
                }
                calls
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    total as f64 / began.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn main() {
    // `cargo test --benches` runs bench binaries with no `--bench` flag: stay quick then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let policy: Policy = r#"{"version": "1", "tools": {
        "free": {},
        "limited": {"limits": [{"window": "minute", "max": 9007199254740992, "scope": "session"}]}
    }}"#
    .parse()
    .unwrap();
    let engine = Arc::new(Engine::new(policy));
    println!(
        "{:<34} {:>14} {:>14} {:>7}",
        "scenario", "1 thread /s", "2 threads /s", "ratio"
    );
    for (name, tool, shared) in [
        ("no limits, distinct sessions", "free", false),
        ("one limit, distinct sessions", "limited", false),
        ("one limit, one shared session", "limited", true),
    ] {
        let one = median(
            (0..3)
                .map(|_| throughput(&engine, tool, 1, shared))
                .collect(),
        );
        let two = median(
            (0..3)
                .map(|_| throughput(&engine, tool, 2, shared))
                .collect(),
        );
        println!("{name:<34} {one:>14.0} {two:>14.0} {:>7.2}", two / one);
    }
}
