//! Scaling across threads, beside `governor` in the same run, and reloads under load.
//!
//! Run with `cargo bench -p mcp-policy-benches --bench scaling` (add `-- --quick` for
//! shorter runs). Prints Markdown tables:
//!
//! 1. Calls per second with 1, 2, 4, 8 and 16 threads sharing one engine: each thread on
//!    its own key (a `session` limit, one session per thread), and every thread on one
//!    shared key (a `global` limit); `governor`'s keyed limiter (`check_key`) the same
//!    ways.
//! 2. A 10 000-rule policy reloaded every 50 ms while 16 threads evaluate: the slowest
//!    call, and how many calls took over 1 ms, beside the same run without reloads (the
//!    machine's own scheduling noise).
//! 3. Resident memory of a process holding that engine after 1, 2, 4, 8 and 16 threads
//!    called every one of its tools (each count measured in a fresh child process).
//!
//! Thread counts above the machine's cores are still run, and marked: they measure
//! oversubscription, not scaling.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use governor::{Quota, RateLimiter};
use mcp_policy::{Engine, Policy, ToolCall};
use serde_json::json;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

const THREADS: [usize; 5] = [1, 2, 4, 8, 16];
const RULES: usize = 10_000;

/// Runs `work` on `threads` threads for `run`, each with its thread number; returns the
/// calls per second summed over threads. `work` does 256 calls per invocation.
fn throughput(threads: usize, run: Duration, work: impl Fn(usize) + Sync) -> f64 {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(threads + 1);
    let (total, elapsed) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, start, work) = (&stop, &start, &work);
                s.spawn(move || {
                    start.wait();
                    let mut calls = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        work(t);
                        calls += 256;
                    }
                    calls
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        std::thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
        let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        (total, began.elapsed())
    });
    total as f64 / elapsed.as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn scaling(run: Duration, repeats: usize) {
    let policy: Policy = json!({"version": "1", "tools": {
        "per_session": {"limits": [{"window": "minute", "max": 9_007_199_254_740_992u64, "scope": "session"}]},
        "global": {"limits": [{"window": "minute", "max": 9_007_199_254_740_992u64, "scope": "global"}]}
    }})
    .to_string()
    .parse()
    .unwrap();
    let engine = Engine::new(policy);
    let sessions: Vec<String> = (0..64).map(|t| format!("session-{t:04}")).collect();
    let limiter = RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX));

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("## Throughput, million calls per second ({cores} cores; median of {repeats} runs of {run:?})\n");
    println!("| threads | ours, distinct keys | governor, distinct keys | ours, one shared key | governor, one shared key |");
    println!("|---:|---:|---:|---:|---:|");
    let mut firsts = [0.0f64; 4];
    for threads in THREADS {
        let measure = |work: &(dyn Fn(usize) + Sync)| {
            median(
                (0..repeats)
                    .map(|_| throughput(threads, run, work))
                    .collect(),
            ) / 1e6
        };
        let ours_distinct = measure(&|t| {
            let call = ToolCall::new("per_session").session(&sessions[t]);
            for _ in 0..256 {
                assert!(engine.evaluate(std::hint::black_box(&call)).is_allowed());
            }
        });
        let governor_distinct = measure(&|t| {
            let key = &sessions[t];
            for _ in 0..256 {
                assert!(limiter.check_key(std::hint::black_box(key)).is_ok());
            }
        });
        let ours_shared = measure(&|_| {
            let call = ToolCall::new("global");
            for _ in 0..256 {
                assert!(engine.evaluate(std::hint::black_box(&call)).is_allowed());
            }
        });
        let governor_shared = measure(&|_| {
            let key = &sessions[63];
            for _ in 0..256 {
                assert!(limiter.check_key(std::hint::black_box(key)).is_ok());
            }
        });
        let row = [
            ours_distinct,
            governor_distinct,
            ours_shared,
            governor_shared,
        ];
        if threads == 1 {
            firsts = row;
        }
        let cell = |i: usize| format!("{:.2} ({:.1}×)", row[i], row[i] / firsts[i]);
        let over = if threads > cores {
            " (more threads than cores)"
        } else {
            ""
        };
        println!(
            "| {threads}{over} | {} | {} | {} | {} |",
            cell(0),
            cell(1),
            cell(2),
            cell(3)
        );
    }
    println!();
}

/// `n` rules `tool_{i}`, each with its own limit counted per grant.
fn big_policy(n: usize, max: u64) -> Policy {
    let mut tools = serde_json::Map::new();
    for i in 0..n {
        tools.insert(
            format!("tool_{i}"),
            json!({"limits": [{"window": "minute", "max": max, "scope": "grant"}]}),
        );
    }
    json!({"version": "1", "default": "deny", "tools": tools})
        .to_string()
        .parse()
        .unwrap()
}

/// (slowest call, calls over 1 ms, calls) with `threads` threads calling for `run`,
/// reloading the policy every 50 ms when `reload`.
fn reload_under_load(threads: usize, run: Duration, reload: bool) -> (Duration, u64, u64) {
    let text = big_policy(RULES, 9_007_199_254_740_992)
        .to_json_value()
        .to_string();
    let engine = Engine::new(text.parse().unwrap());
    let names: Vec<String> = (0..RULES).map(|i| format!("tool_{i}")).collect();
    let stop = AtomicBool::new(false);
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (engine, names, stop, start) = (&engine, &names, &stop, &start);
                s.spawn(move || {
                    let grant = format!("grant-{t}");
                    let (mut worst, mut slow, mut calls) = (Duration::ZERO, 0u64, 0u64);
                    start.wait();
                    let mut i = t * 997;
                    while !stop.load(Ordering::Relaxed) {
                        i = (i + 1) % names.len();
                        let call = ToolCall::new(&names[i]).grant(&grant);
                        let began = Instant::now();
                        let allowed = engine.evaluate(&call).is_allowed();
                        let took = began.elapsed();
                        assert!(allowed);
                        worst = worst.max(took);
                        slow += u64::from(took > Duration::from_millis(1));
                        calls += 1;
                    }
                    (worst, slow, calls)
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        while began.elapsed() < run {
            std::thread::sleep(Duration::from_millis(50));
            if reload {
                // Parsing happens off the callers' threads, as a gateway's watcher does.
                engine.reload(text.parse().unwrap());
            }
        }
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((Duration::ZERO, 0, 0), |(w, s, c), (w2, s2, c2)| {
                (w.max(w2), s + s2, c + c2)
            })
    })
}

fn reloads(run: Duration) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "## A {RULES}-rule policy reloaded every 50 ms while threads evaluate ({run:?} each)\n"
    );
    println!("With as many evaluating threads as cores, the reloading thread (parsing the file,");
    println!("as a gateway's watcher does) must take a core from one of them: calls it preempts");
    println!("mid-way count as slow. One thread fewer leaves it a core.\n");
    println!("| evaluating threads | run | calls | slowest call | calls over 1 ms |");
    println!("|---:|---|---:|---:|---:|");
    let mut counts = vec![16];
    if cores > 1 && cores - 1 != 16 {
        counts.push(cores - 1);
    } else if cores == 16 {
        counts.push(15);
    }
    for threads in counts {
        for (name, reload) in [("without reloads", false), ("reloaded every 50 ms", true)] {
            let (worst, slow, calls) = reload_under_load(threads, run, reload);
            println!("| {threads} | {name} | {calls} | {worst:.2?} | {slow} |");
        }
    }
    println!();
}

/// In a child process: load the big policy, let `threads` threads call every tool once
/// (creating the counts), reload once and call again,
/// then print resident memory in KiB.
fn child_rss(threads: usize) {
    let text = big_policy(RULES, 1_000_000).to_json_value().to_string();
    let engine = Engine::new(text.parse().unwrap());
    let names: Vec<String> = (0..RULES).map(|i| format!("tool_{i}")).collect();
    for round in 0..2 {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for name in &names {
                        let call = ToolCall::new(name).grant("grant-1");
                        assert!(engine.evaluate(&call).is_allowed());
                    }
                });
            }
        });
        if round == 0 {
            engine.reload(text.parse().unwrap());
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .parse::<u64>()
        .unwrap();
    println!("{rss}");
}

fn memory() {
    println!(
        "## Resident memory with the {RULES}-rule policy after N threads called every tool (MiB)\n"
    );
    println!("| threads | resident | × one thread |");
    println!("|---:|---:|---:|");
    let mut first = 0.0;
    for threads in THREADS {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--bench", "--rss", &threads.to_string()])
            .output()
            .unwrap();
        let kib: f64 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mib = kib / 1024.0;
        if threads == 1 {
            first = mib;
        }
        println!("| {threads} | {mib:.1} | {:.2} |", mib / first);
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --benches` runs bench binaries with no `--bench` flag: stay quick then.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--rss") {
        return child_rss(args[i + 1].parse().unwrap());
    }
    let quick = args.iter().any(|a| a == "--quick");
    let (run, repeats) = if quick {
        (Duration::from_millis(300), 1)
    } else {
        (Duration::from_secs(1), 3)
    };
    let only = |name: &str| {
        !args.iter().any(|a| a.starts_with("--only"))
            || args.iter().any(|a| a == &format!("--only={name}"))
    };
    if only("threads") {
        scaling(run, repeats);
    }
    if only("reload") {
        reloads(if quick {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(3)
        });
    }
    if only("memory") {
        memory();
    }
}
