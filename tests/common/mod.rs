//! A reference model of the sliding-window guarantees, shared by every store's tests.
//!
//! The model keeps an exact log of admitted calls per key and checks, after each
//! decision of the store under test:
//! - safety: no interval of length W ever holds more than `max` admitted units;
//! - liveness: a refused call would have exceeded `max` counting everything admitted in
//!   the preceding W·(1 + 1/16);
//! - retry_after: at most W·(1 + 1/16), and the same call made then is admitted.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "redis")]
pub mod redis_server;

use mcp_policy::{
    Admission, Counter, CounterKey, CounterStore, Engine, LimitRequest, Scope, Timestamp, ToolCall,
};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// One generated call: after `wait_nanos`, ask for `cost` units on each of `keys`
/// (indexes into the scenario's keys), then retry at `retry_after` if refused and
/// `retry` is set.
#[derive(Debug, Clone)]
pub struct Step {
    pub wait_nanos: u64,
    pub keys: Vec<usize>,
    pub costs: Vec<u64>,
    pub retry: bool,
}

/// Keys share one counter per window size; scope ids distinguish them.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub windows: Vec<u64>,
    pub max: u64,
    pub start_nanos: u64,
    pub steps: Vec<Step>,
}

pub fn scenarios() -> impl Strategy<Value = Scenario> {
    let windows = prop::collection::vec(
        prop::sample::select(vec![1u64, 60, 3600, 86_400, 31_536_000]),
        1..=3,
    );
    let max = prop_oneof![1u64..=4, 5u64..=50, Just(1u64 << 53)];
    (windows, max, 0u64..(1 << 62)).prop_flat_map(|(windows, max, start_nanos)| {
        let smallest = windows.iter().copied().min().unwrap_or(1) * 1_000_000_000;
        let key_count = windows.len() * 2;
        let step = (
            prop_oneof![Just(0u64), 0..smallest / 16, 0..smallest * 2],
            prop::collection::vec(0..key_count, 1..=3),
            prop::collection::vec(prop_oneof![3 => Just(1u64), 1 => 0..=max], 3),
            any::<bool>(),
        )
            .prop_map(|(wait_nanos, mut keys, costs, retry)| {
                keys.sort_unstable();
                keys.dedup();
                Step {
                    wait_nanos,
                    keys,
                    costs,
                    retry,
                }
            });
        (
            Just(windows),
            Just(max),
            Just(start_nanos),
            prop::collection::vec(step, 1..120),
        )
            .prop_map(|(windows, max, start_nanos, steps)| Scenario {
                windows,
                max,
                start_nanos,
                steps,
            })
    })
}

/// Runs a scenario against `store`, checking every guarantee against the exact model.
pub fn check_scenario(store: &dyn CounterStore, scenario: &Scenario) -> Result<(), TestCaseError> {
    // A unique counter name per run, so stores shared between runs start empty.
    let run = format!("run-{}", next_run_id());
    let counters: Vec<Counter> = scenario
        .windows
        .iter()
        .enumerate()
        .map(|(i, &w)| Counter::new(&format!("{run}-{i}"), w, Scope::Grant))
        .collect();
    let keys: Vec<(usize, String)> = (0..scenario.windows.len() * 2)
        .map(|k| {
            (
                k % scenario.windows.len(),
                format!("id{}", k / scenario.windows.len()),
            )
        })
        .collect();
    let mut log: HashMap<usize, Vec<(u64, u64)>> = HashMap::new();
    let mut now = scenario.start_nanos;
    let max = scenario.max;

    for step in &scenario.steps {
        now += step.wait_nanos;
        let requests: Vec<LimitRequest<'_>> = step
            .keys
            .iter()
            .zip(&step.costs)
            .map(|(&k, &cost)| {
                let (counter, id) = &keys[k];
                LimitRequest {
                    key: CounterKey {
                        counter: &counters[*counter],
                        scope_id: id,
                    },
                    max,
                    cost,
                }
            })
            .collect();
        let window_nanos = |k: usize| scenario.windows[keys[k].0] * 1_000_000_000;
        let answer = store
            .acquire(Timestamp::from_nanos(now), &requests)
            .unwrap();
        match answer {
            Admission::Admitted { .. } => {
                for (&k, &cost) in step.keys.iter().zip(&step.costs) {
                    let entries = log.entry(k).or_default();
                    entries.push((now, cost));
                    let w = window_nanos(k);
                    let in_window: u64 = entries
                        .iter()
                        .filter(|(t, _)| *t + w > now)
                        .map(|(_, c)| c)
                        .sum();
                    prop_assert!(in_window <= max, "safety: {in_window} units admitted within one window on key {k}, max {max}");
                }
            }
            Admission::Refused { limit, retry_after } => {
                // Liveness: some limit really lacked room over the preceding W·17/16.
                let lacking = step.keys.iter().zip(&step.costs).any(|(&k, &cost)| {
                    let w = window_nanos(k);
                    let recent: u64 = log.get(&k).map_or(0, |e| {
                        e.iter()
                            .filter(|(t, _)| *t + w * 17 / 16 > now)
                            .map(|(_, c)| c)
                            .sum()
                    });
                    recent + cost > max
                });
                prop_assert!(
                    lacking,
                    "liveness: refused a call that fit in every window (now {now})"
                );
                let k = step.keys[limit];
                let w = window_nanos(k);
                prop_assert!(
                    retry_after <= Duration::from_nanos(w * 17 / 16),
                    "retry_after {retry_after:?} exceeds W·17/16"
                );
                // It names the longest wait among the limits lacking room: retrying after
                // it, with nothing admitted meanwhile, admits the call.
                if step.retry {
                    now += u64::try_from(retry_after.as_nanos()).unwrap();
                    let again = store
                        .acquire(Timestamp::from_nanos(now), &requests)
                        .unwrap();
                    prop_assert!(
                        matches!(again, Admission::Admitted { .. }),
                        "retry after {retry_after:?} was refused: {again:?}"
                    );
                    for (&k, &cost) in step.keys.iter().zip(&step.costs) {
                        log.entry(k).or_default().push((now, cost));
                    }
                }
            }
        }
    }
    Ok(())
}

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

fn next_run_id() -> u64 {
    use std::sync::atomic::Ordering;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id()) * 1_000_000
}
