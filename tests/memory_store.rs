//! `MemoryStore` against the reference model, under threads, and as it reclaims keys.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use mcp_policy::{
    Admission, Counter, CounterKey, CounterStore, Engine, ManualClock, MemoryStore, Policy, Scope,
    Timestamp,
};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn memory_store_passes_the_conformance_kit() {
    mcp_policy::store::testing::check_store(&MemoryStore::new(), 64).unwrap();
}

proptest! {
    // More random scenarios, with the failing cases of the past (in
    // memory_store.proptest-regressions) replayed first.
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn memory_store_keeps_the_sliding_window_guarantees(
        scenario in mcp_policy::store::testing::scenarios()
    ) {
        mcp_policy::store::testing::check_scenario(&MemoryStore::new(), &scenario)?;
    }
}

/// The kit is no rubber stamp: a store that forgets to record is caught.
#[test]
fn the_conformance_kit_catches_a_store_that_over_admits() {
    struct Forgetful(MemoryStore);
    impl CounterStore for Forgetful {
        fn acquire(
            &self,
            now: Timestamp,
            requests: &[mcp_policy::LimitRequest<'_>],
        ) -> Result<Admission, mcp_policy::StoreError> {
            self.0.peek(now, requests)
        }
        fn peek(
            &self,
            now: Timestamp,
            requests: &[mcp_policy::LimitRequest<'_>],
        ) -> Result<Admission, mcp_policy::StoreError> {
            self.0.peek(now, requests)
        }
        fn release(
            &self,
            now: Timestamp,
            key: CounterKey<'_>,
            recorded_at: Timestamp,
            cost: u64,
        ) -> Result<(), mcp_policy::StoreError> {
            self.0.release(now, key, recorded_at, cost)
        }
    }
    let error =
        mcp_policy::store::testing::check_store(&Forgetful(MemoryStore::new()), 64).unwrap_err();
    assert!(error.message().contains("safety"), "{error}");
}

#[test]
fn threads_hammering_one_key_never_admit_more_than_max() {
    let policy: Policy =
        r#"{"version":"1","tools":{"t":{"limits":[{"window":"hour","max":1000}]}}}"#
            .parse()
            .unwrap();
    let engine = Arc::new(Engine::builder(policy).clock(ManualClock::new()).build());
    let allowed = common::count_allowed(&[engine], 8, 1000, |_, _| ("t", "shared".into()));
    assert_eq!(allowed, 1000, "exactly max of 8000 calls");
}

#[test]
fn threads_with_overlapping_multi_limit_calls_never_deadlock_or_over_admit() {
    let policy: Policy = r#"{"version":"1",
        "all_tools":{"limits":[{"counter":"all","window":"hour","max":500,"scope":"global"}]},
        "tools":{"a":{"limits":[{"window":"hour","max":300}]},"b":{"limits":[{"window":"hour","max":300}]}}}"#
        .parse()
        .unwrap();
    let engine = Arc::new(Engine::builder(policy).clock(ManualClock::new()).build());
    let allowed = common::count_allowed(&[engine], 6, 500, |t, i| {
        (if t % 2 == 0 { "a" } else { "b" }, format!("g{}", i % 2))
    });
    assert_eq!(allowed, 500, "the global counter caps the total");
}

#[test]
fn a_million_sessions_are_reclaimed_once_their_window_passes() {
    let store = MemoryStore::new();
    let counter = Counter::new("per_session", 60, Scope::Session);
    fn request<'a>(counter: &'a Counter, id: &'a str) -> [mcp_policy::LimitRequest<'a>; 1] {
        [mcp_policy::LimitRequest {
            key: CounterKey::new(counter, id),
            max: 10,
            cost: 1,
        }]
    }
    let t0 = Timestamp::from_nanos(1_000_000_000_000);
    for i in 0..1_000_000 {
        let id = format!("session-{i}");
        assert!(matches!(
            store.acquire(t0, &request(&counter, &id)).unwrap(),
            Admission::Admitted { .. }
        ));
    }
    assert_eq!(store.len(), 1_000_000);

    // Time moves past the window; new sessions keep arriving and the old ones go.
    let later = t0.saturating_add(Duration::from_secs(120));
    for i in 0..1_000_000 {
        let id = format!("later-{i}");
        store.acquire(later, &request(&counter, &id)).unwrap();
    }
    assert_eq!(
        store.len(),
        1_000_000,
        "the old sessions were swept while the store was used"
    );

    store.reclaim_expired(later.saturating_add(Duration::from_secs(120)));
    assert_eq!(store.len(), 0);
}

#[test]
fn a_clock_that_goes_backwards_neither_panics_nor_over_admits() {
    let store = MemoryStore::new();
    let counter = Counter::new("c", 60, Scope::Grant);
    let request = [mcp_policy::LimitRequest {
        key: CounterKey::new(&counter, "g"),
        max: 3,
        cost: 1,
    }];
    let mut admitted = 0;
    for t in [100u64, 50, 0, 99, 10, 1, 100, 5] {
        if let Admission::Admitted { .. } = store
            .acquire(Timestamp::from_nanos(t * 1_000_000_000), &request)
            .unwrap()
        {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
}

#[test]
fn the_largest_window_and_max_work() {
    let store = MemoryStore::new();
    let counter = Counter::new("year", 31_536_000, Scope::Global);
    let max = 1u64 << 53;
    let request = |cost| {
        [mcp_policy::LimitRequest {
            key: CounterKey::new(&counter, ""),
            max,
            cost,
        }]
    };
    let now = Timestamp::from_nanos(u64::MAX / 2);
    assert!(matches!(
        store.acquire(now, &request(max - 1)).unwrap(),
        Admission::Admitted { .. }
    ));
    assert!(matches!(
        store.acquire(now, &request(1)).unwrap(),
        Admission::Admitted { .. }
    ));
    let Admission::Refused { retry_after, .. } = store.acquire(now, &request(1)).unwrap() else {
        panic!()
    };
    assert!(retry_after <= Duration::from_secs(31_536_000) * 17 / 16);
}

/// Threads remember the keys they used; a key swept meanwhile must be looked up again,
/// by every thread that remembered it, and counted on one new key, not two.
#[test]
fn keys_swept_while_threads_remember_them_are_counted_afresh_on_one_key() {
    let store = Arc::new(MemoryStore::new());
    let counter = Counter::new("swept", 1, Scope::Global);
    let request = |max| {
        [mcp_policy::LimitRequest {
            key: CounterKey::new(&counter, ""),
            max,
            cost: 1,
        }]
    };
    let t0 = Timestamp::from_nanos(1_000_000_000_000);
    let later = Timestamp::from_nanos(t0.as_nanos() + 10_000_000_000);
    let admitted = |a: Admission| matches!(a, Admission::Admitted { .. });
    // Two threads (this one and another) use the key, so both remember it.
    assert!(admitted(store.acquire(t0, &request(4)).unwrap()));
    let other = Arc::clone(&store);
    let counter_for_thread = counter.clone();
    let (to_thread, from_main) = std::sync::mpsc::channel::<Timestamp>();
    let (to_main, from_thread) = std::sync::mpsc::channel::<Vec<bool>>();
    let thread = std::thread::spawn(move || {
        let request = [mcp_policy::LimitRequest {
            key: CounterKey::new(&counter_for_thread, ""),
            max: 4,
            cost: 1,
        }];
        for now in from_main {
            let answers = (0..2)
                .map(|_| {
                    matches!(
                        other.acquire(now, &request).unwrap(),
                        Admission::Admitted { .. }
                    )
                })
                .collect();
            to_main.send(answers).unwrap();
        }
    });
    to_thread.send(t0).unwrap();
    assert_eq!(from_thread.recv().unwrap(), [true, true]);
    assert_eq!(store.len(), 1);
    // The window passes; the key is swept while both threads still remember it.
    store.reclaim_expired(later);
    assert_eq!(store.len(), 0);
    // Both threads use it again: 2 here and 2 there fit max 4 on the one new key, and no
    // fifth unit does.
    assert!(admitted(store.acquire(later, &request(4)).unwrap()));
    to_thread.send(later).unwrap();
    assert_eq!(from_thread.recv().unwrap(), [true, true]);
    assert!(admitted(store.acquire(later, &request(4)).unwrap()));
    assert!(!admitted(store.acquire(later, &request(4)).unwrap()));
    assert_eq!(store.len(), 1);
    drop(to_thread);
    thread.join().unwrap();
}

/// A refused call leaves no key behind: an attacker whose calls are refused (another
/// limit of the call is exhausted) cannot grow the store with ever new key values.
#[test]
fn refused_calls_keep_no_keys() {
    let policy: Policy = r#"{"version": "1", "tools": {"t": {"limits": [
        {"window": "hour", "max": 1, "scope": "grant"},
        {"window": "hour", "max": 3, "scope": "grant", "key": "args.ticket_id"}]}}}"#
        .parse()
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder(policy)
        .clock(ManualClock::new())
        .store(Arc::clone(&store))
        .build();
    let call = |ticket: u64| {
        let args = serde_json::json!({"ticket_id": ticket});
        engine
            .evaluate(&mcp_policy::ToolCall::new("t").grant("g").arguments(&args))
            .is_allowed()
    };
    assert!(call(0));
    let held = store.len();
    assert_eq!(held, 2);
    for ticket in 1..2_000 {
        assert!(!call(ticket));
    }
    assert_eq!(store.len(), held, "refused calls created keys");
    // Peeks never create keys either.
    let args = serde_json::json!({"ticket_id": 99_999});
    let _ = engine.peek(
        &mcp_policy::ToolCall::new("t")
            .grant("other")
            .arguments(&args),
    );
    assert_eq!(store.len(), held);
}
