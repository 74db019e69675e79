//! Helpers shared by the store tests: a redis-server per test, and threads counting
//! allowed calls. The reference model of the window lives in the library's conformance
//! kit, `mcp_policy::store::testing`.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "redis")]
pub mod redis_server;

use mcp_policy::{Engine, ToolCall};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Runs `threads` threads at once, thread `t` making `calls` calls to `engines[t % n]`;
/// call `i` of thread `t` is `call(t, i)` as (tool, grant). Returns how many were allowed.
pub fn count_allowed(
    engines: &[Arc<Engine>],
    threads: usize,
    calls: usize,
    call: fn(usize, usize) -> (&'static str, String),
) -> u64 {
    let allowed = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let engine = Arc::clone(&engines[t % engines.len()]);
            let allowed = Arc::clone(&allowed);
            std::thread::spawn(move || {
                for i in 0..calls {
                    let (tool, grant) = call(t, i);
                    if engine
                        .evaluate(&ToolCall::new(tool).grant(&grant))
                        .is_allowed()
                    {
                        allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    allowed.load(std::sync::atomic::Ordering::Relaxed)
}
