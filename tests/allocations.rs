//! The hot path allocates nothing, and what a counter key costs in memory.
//!
//! This binary installs a counting global allocator; counting is switched on per thread,
//! so the test harness's other threads do not disturb it.

// With the metrics feature the zero-allocation test is left out, and what it imports unused.
#![cfg_attr(feature = "metrics", allow(unused_imports, dead_code))]
#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_policy::{
    Counter, CounterKey, CounterStore, Engine, KeyValue, LimitRequest, ManualClock, MemoryStore,
    Policy, Scope, Timestamp, ToolCall,
};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed on this thread while counting: per thread, so
    /// that tests running side by side do not count each other.
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn note(bytes: isize) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        if bytes > 0 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
        let _ = LIVE_BYTES.try_with(|n| n.set(n.get() + bytes));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made on this thread while running `f`.
fn allocations_in(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// Up to two limits per call (typically the rule's and `all_tools`'), an allowed call
/// records its charges inline; each call below has at most two.
/// The `metrics` feature builds a label set per decision, which allocates; this checks the
/// library as it is built without it (`cargo test -p mcp-policy --test allocations`, as
/// `.ci/run` does: building the command too turns the feature on).
#[cfg(not(feature = "metrics"))]
#[test]
fn evaluate_on_existing_counter_keys_allocates_nothing() {
    let policy = Policy::from_json(&json!({"version": "1", "default": "deny",
        "all_tools": {"limits": [{"counter": "all", "window": "minute", "max": 1_000_000_000, "scope": "grant"}]},
        "tools": {
            "free": {},
            "whmcs_get_*": {},
            "closed": {"action": "deny", "reason": "no"},
            "one": {"limits": [{"window": "minute", "max": 1_000_000_000}]},
            "tight": {"limits": [{"window": "hour", "max": 1}]},
            "conditions": {
                "require": [{"path": "args.ticket_id", "op": "exists", "value": true}],
                "deny_if": [{"path": "args.priority", "op": "eq", "value": "Emergency"}],
                "approve_if": [{"path": "args.status", "op": "in", "value": ["Closed"]}],
                "limits": [
                    {"window": "day", "max": 1_000_000_000, "cost": "args.units", "scope": "agent"}]}
        }}).to_string()).unwrap();
    let engine = Engine::builder(policy).clock(ManualClock::new()).build();
    let args = json!({"ticket_id": 7, "status": "Open", "priority": "Low", "units": 3});
    let calls = [
        ToolCall::new("free").grant("g"),
        ToolCall::new("whmcs_get_ticket").grant("g"),
        ToolCall::new("closed").grant("g"),
        ToolCall::new("unknown").grant("g"),
        ToolCall::new("one").grant("g"),
        ToolCall::new("tight").grant("g"),
        ToolCall::new("conditions")
            .grant("g")
            .session("s")
            .agent("a")
            .arguments(&args),
    ];
    // Create the counter keys first: inserting a new key allocates, once.
    for call in &calls {
        engine.evaluate(call);
    }
    for call in &calls {
        let allocations = allocations_in(|| {
            for _ in 0..1000 {
                let decision = engine.evaluate(call);
                assert_eq!(
                    decision.is_allowed(),
                    !matches!(call.name(), "closed" | "unknown" | "tight")
                );
                std::hint::black_box(&decision);
                engine.refund(&decision).unwrap();
                std::hint::black_box(engine.peek(call));
                std::hint::black_box(engine.check(call));
            }
        });
        assert_eq!(allocations, 0, "{} allocated", call.name());
    }
}

/// A store with one counted key per id of 100 000 sessions, recorded at `NOW`; the bytes
/// it took, counted from the start. Counting stays on until the caller turns it off.
fn store_with_sessions(ids: &[String]) -> (MemoryStore, isize) {
    let store = MemoryStore::new();
    let counter = Counter::new("per_session", 60, Scope::Session);
    let before = LIVE_BYTES.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    for id in ids {
        let request = [LimitRequest {
            key: CounterKey::new(&counter, id),
            max: 10,
            cost: 1,
        }];
        store.acquire(NOW, &request).unwrap();
    }
    (store, before)
}

const NOW: Timestamp = Timestamp::from_nanos(1_000_000_000_000);

fn session_ids() -> Vec<String> {
    (0..100_000).map(|i| format!("session-{i:06}")).collect()
}

#[test]
fn a_counter_key_in_memory_store_costs_a_few_hundred_bytes() {
    let ids = session_ids();
    let (store, before) = store_with_sessions(&ids);
    COUNTING.with(|c| c.set(false));
    let per_key = (LIVE_BYTES.with(Cell::get) - before) as f64 / ids.len() as f64;
    println!(
        "MemoryStore: {per_key:.0} bytes per key (scope ids of {} bytes)",
        ids[0].len()
    );
    assert_eq!(store.len(), ids.len());
    assert!((150.0..450.0).contains(&per_key), "{per_key} bytes per key");
}

#[test]
fn reclaiming_expired_keys_gives_their_memory_back() {
    let ids = session_ids();
    let (store, before) = store_with_sessions(&ids);
    let full = LIVE_BYTES.with(Cell::get) - before;
    store.reclaim_expired(NOW.saturating_add(std::time::Duration::from_secs(600)));
    COUNTING.with(|c| c.set(false));
    let left = LIVE_BYTES.with(Cell::get) - before;
    assert_eq!(store.len(), 0);
    assert!(
        left < 64 * 1024,
        "{left} of {full} bytes stay allocated after every key expired"
    );
}

/// Bytes per count of a limit with a `key`, for 100 000 distinct values: integers, and
/// strings of the most a key value may be (256 bytes). What one ticket id costs.
#[test]
fn a_key_value_costs_a_few_hundred_bytes_plus_its_own() {
    let counter = Counter::new("per_ticket", 3600, Scope::Grant);
    let texts: Vec<String> = (0..100_000).map(|i| format!("{i:0>256}")).collect();
    for (kind, values) in [
        (
            "integer",
            (0..100_000).map(KeyValue::Integer).collect::<Vec<_>>(),
        ),
        (
            "256-byte text",
            texts.iter().map(|t| KeyValue::Text(t)).collect(),
        ),
    ] {
        let store = MemoryStore::new();
        let before = LIVE_BYTES.with(Cell::get);
        COUNTING.with(|c| c.set(true));
        for value in &values {
            let request = [LimitRequest {
                key: CounterKey {
                    counter: &counter,
                    scope_id: "grant-1",
                    value: Some(*value),
                },
                max: 3,
                cost: 1,
            }];
            store.acquire(NOW, &request).unwrap();
        }
        COUNTING.with(|c| c.set(false));
        let per_key = (LIVE_BYTES.with(Cell::get) - before) as f64 / values.len() as f64;
        println!("MemoryStore: {per_key:.0} bytes per key ({kind} key values)");
        assert_eq!(store.len(), values.len());
        let bound = if kind == "integer" {
            450.0
        } else {
            450.0 + 256.0 + 64.0
        };
        assert!(per_key < bound, "{per_key} bytes per {kind} key");
    }
}
