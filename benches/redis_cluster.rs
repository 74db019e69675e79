//! Decisions per second against one Redis node and against a local Redis Cluster (three
//! masters, three replicas), both started here, on loopback: 8 threads, each its own
//! grant, 2 s per case; calls with one limit (one slot) and with a grant limit plus a
//! global one (two slots: reserved slot by slot).
//!
//! Run with `cargo bench -p mcp-policy-benches --features redis --bench redis_cluster`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_policy::{Engine, Policy, RedisStore, ToolCall};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/redis_cluster.rs"]
mod redis_cluster;
#[path = "../tests/common/redis_server.rs"]
mod redis_server;

const THREADS: usize = 8;
const RUN: Duration = Duration::from_secs(2);

const ONE_SLOT: &str = r#"{"version": "1", "tools": {"t": {"limits": [
    {"window": "minute", "max": 9007199254740992, "scope": "grant"}]}}}"#;
const TWO_SLOTS: &str = r#"{"version": "1", "tools": {"t": {"limits": [
    {"window": "minute", "max": 9007199254740992, "scope": "grant"},
    {"counter": "all", "window": "minute", "max": 9007199254740992, "scope": "global"}]}}}"#;

/// Decisions per second of `THREADS` threads on one engine over `store`.
fn rate(policy: &str, store: RedisStore) -> f64 {
    let engine = Arc::new(
        Engine::builder(policy.parse::<Policy>().unwrap())
            .store(store.connections(THREADS))
            .build(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (engine, stop, done) = (Arc::clone(&engine), Arc::clone(&stop), Arc::clone(&done));
            std::thread::spawn(move || {
                let grant = format!("grant-{t}");
                let call = ToolCall::new("t").grant(&grant);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    assert!(engine.evaluate(&call).is_allowed());
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let server = redis_server::RedisServer::start();
    let cluster = redis_cluster::RedisCluster::start();
    let urls = cluster.urls();
    let seeds: Vec<&str> = urls.iter().map(String::as_str).collect();
    println!(
        "{THREADS} threads, {} cores, loopback, decisions per second",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (name, policy) in [("one slot", ONE_SLOT), ("two slots", TWO_SLOTS)] {
        let single = rate(policy, RedisStore::open(&server.url()).unwrap());
        let on_cluster = rate(policy, RedisStore::cluster(&seeds).unwrap());
        println!(
            "{name:<10} one node {single:>9.0}/s   cluster {on_cluster:>9.0}/s   ({:.2}x)",
            on_cluster / single
        );
    }
}
