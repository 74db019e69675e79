//! A conformance kit for [`CounterStore`]s (feature `test-util`): checks any store against
//! an exact reference model of the contract.
//!
//! The model keeps a log of every unit the store admitted per key and checks, after each
//! answer:
//! - safety: no interval of length W ever holds more than `max` admitted units;
//! - liveness: a refused call would have exceeded `max` counting everything admitted in
//!   the preceding W·(1 + 1/16);
//! - `retry_after`: at most W·(1 + 1/16), and the same call made then is admitted.
//!
//! [`check_store`] runs random [`scenarios`] (shrunk to a smallest failing one) plus
//! fixed checks of peeking, all-or-nothing recording, refunds, repeated keys, key values
//! and time going backwards. Every run uses fresh counter names, so one store (a Redis database)
//! can be checked repeatedly.
//!
//! ```
//! use mcp_policy::store::{testing, MemoryStore};
//!
//! testing::check_store(&MemoryStore::new(), 16)?;
//! # Ok::<(), mcp_policy::store::testing::ConformanceError>(())
//! ```

#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::{Admission, CounterKey, CounterStore, KeyValue, LimitRequest};
use crate::clock::Timestamp;
use crate::policy::{Counter, Scope};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A store broke its contract: what was seen, and for random scenarios the smallest
/// scenario that shows it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the store broke the CounterStore contract: {message}")]
pub struct ConformanceError {
    message: String,
}

impl ConformanceError {
    fn new(message: impl Into<String>) -> ConformanceError {
        ConformanceError {
            message: message.into(),
        }
    }

    /// What went wrong, with the failing scenario when there is one.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Checks `store` against the contract: `cases` random scenarios, then the fixed checks.
///
/// # Errors
/// The first broken guarantee, as a [`ConformanceError`].
pub fn check_store(store: &dyn CounterStore, cases: u32) -> Result<(), ConformanceError> {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&scenarios(), |scenario| check_scenario(store, &scenario))
        .map_err(|e| ConformanceError::new(e.to_string()))?;
    check_fixed(store)
}

/// One generated call of a [`Scenario`]: after `wait_nanos`, ask for `cost` units on each of `keys`
/// (indexes into the scenario's keys), then retry at `retry_after` if refused and
/// `retry` is set.
#[derive(Debug, Clone)]
pub struct Step {
    wait_nanos: u64,
    keys: Vec<usize>,
    costs: Vec<u64>,
    retry: bool,
}

/// Keys share one counter per window size; scope ids distinguish them.
#[derive(Debug, Clone)]
pub struct Scenario {
    windows: Vec<u64>,
    max: u64,
    start_nanos: u64,
    steps: Vec<Step>,
}

/// Random scenarios: 1 to 3 counters with windows from a second to a year, `max` from 1
/// to 2^53, up to 120 calls of 1 to 3 limits with waits around the bucket width, some
/// retried at their `retry_after`.
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

/// Runs one scenario against `store`, checking every guarantee against the exact model.
///
/// # Errors
/// The first guarantee the store broke, or its first [`StoreError`](super::StoreError).
///
/// # Panics
/// Never on a store's answers; only if the scenario itself is malformed (it never is
/// when it comes from [`scenarios`]).
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
                    key: CounterKey::new(&counters[*counter], id),
                    max,
                    cost,
                }
            })
            .collect();
        let window_nanos = |k: usize| scenario.windows[keys[k].0] * 1_000_000_000;
        let answer = store
            .acquire(Timestamp::from_nanos(now), &requests)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
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
                    now += u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX);
                    let again = store
                        .acquire(Timestamp::from_nanos(now), &requests)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
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

/// Peeking, all-or-nothing, refunds, repeated keys and a clock going back, each on fresh
/// keys.
fn check_fixed(store: &dyn CounterStore) -> Result<(), ConformanceError> {
    let fail = |what: &str| Err(ConformanceError::new(what));
    fn answer<T>(result: Result<T, super::StoreError>) -> Result<T, ConformanceError> {
        result.map_err(|e| ConformanceError::new(e.to_string()))
    }
    let admitted = |a: &Admission| matches!(a, Admission::Admitted { .. });
    let run = next_run_id();
    let counter = Counter::new(&format!("fixed-{run}"), 60, Scope::Grant);
    let key = |id| CounterKey::new(&counter, id);
    let one = |id, max, cost| LimitRequest {
        key: key(id),
        max,
        cost,
    };
    let t0 = Timestamp::from_nanos(1_000_000_000_000_000);
    let at = |secs: u64| Timestamp::from_nanos(t0.as_nanos() + secs * 1_000_000_000);

    // Peeking records nothing.
    for _ in 0..3 {
        if !admitted(&answer(store.peek(t0, &[one("peek", 1, 1)]))?) {
            return fail("peek refused a call on an empty key");
        }
    }
    if !admitted(&answer(store.acquire(t0, &[one("peek", 1, 1)]))?) {
        return fail("peek recorded units: acquire after peeks was refused");
    }
    if admitted(&answer(store.peek(t0, &[one("peek", 1, 1)]))?) {
        return fail("peek admitted a call on a full key");
    }

    // A refused call records nothing on its other keys.
    answer(store.acquire(t0, &[one("full", 1, 1)]))?;
    let both = [one("free", 1, 1), one("full", 1, 1)];
    match answer(store.acquire(t0, &both))? {
        Admission::Refused { limit: 1, .. } => {}
        other => {
            return fail(&format!(
                "a call over a full key got {other:?}, not Refused {{ limit: 1 }}"
            ))
        }
    }
    if !admitted(&answer(store.acquire(t0, &[one("free", 1, 1)]))?) {
        return fail("a refused call recorded units on its key with room");
    }

    // Refunds give back what was recorded, never more, and only inside the window.
    answer(store.acquire(t0, &[one("refund", 2, 2)]))?;
    answer(store.release(at(1), key("refund"), t0, 5))?;
    if !admitted(&answer(store.acquire(at(1), &[one("refund", 2, 2)]))?) {
        return fail("release did not give units back");
    }
    if admitted(&answer(store.acquire(at(1), &[one("refund", 2, 1)]))?) {
        return fail("release gave back more than was recorded");
    }
    answer(store.release(at(200), key("refund"), t0, 2))?;
    answer(store.release(at(200), key("refund"), at(1), 2))?;
    if !admitted(&answer(store.acquire(at(200), &[one("refund", 2, 2)]))?) {
        return fail("a key whose window passed did not admit");
    }
    if admitted(&answer(store.acquire(at(200), &[one("refund", 2, 1)]))?) {
        return fail("releasing expired units re-opened budget");
    }

    // The same key twice in one call never admits more than max.
    let twice = [one("twice", 1, 1), one("twice", 1, 1)];
    if admitted(&answer(store.acquire(t0, &twice))?) {
        return fail("a call naming one key twice took 2 units under max 1");
    }

    // Key values count separately, and a text is not the integer it spells.
    let keyed = Counter::with_identity(
        &format!("keyed-{run}"),
        false,
        60,
        Scope::Grant,
        Some("args.ticket_id"),
    );
    let valued = |value| LimitRequest {
        key: CounterKey {
            counter: &keyed,
            scope_id: "g",
            value: Some(value),
        },
        max: 1,
        cost: 1,
    };
    for value in [
        KeyValue::Integer(7),
        KeyValue::Integer(8),
        KeyValue::Text("7"),
    ] {
        if !admitted(&answer(store.acquire(t0, &[valued(value)]))?) {
            return fail(&format!(
                "key value {value} was refused though it was never used"
            ));
        }
    }
    if admitted(&answer(store.acquire(t0, &[valued(KeyValue::Integer(7))]))?) {
        return fail("key value 7 admitted a second unit under max 1");
    }

    // A clock that goes back neither panics nor re-opens budget.
    answer(store.acquire(at(100), &[one("back", 1, 1)]))?;
    for earlier in [at(99), t0, Timestamp::from_nanos(0)] {
        if admitted(&answer(store.acquire(earlier, &[one("back", 1, 1)]))?) {
            return fail("a clock going back re-opened a full key");
        }
    }
    Ok(())
}

fn next_run_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id()) * 1_000_000
}
