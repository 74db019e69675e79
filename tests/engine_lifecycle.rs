//! Reloading policies, failing stores, and clocks that misbehave.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_policy::{
    Admission, Clock, CounterKey, CounterStore, Decision, DenyCode, Engine, LimitRequest,
    ManualClock, MemoryStore, Policy, StoreError, Timestamp, ToolCall,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn policy(text: &str) -> Policy {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn use_up(engine: &Engine, call: &ToolCall<'_>) -> usize {
    (0..100)
        .take_while(|_| engine.evaluate(call).is_allowed())
        .count()
}

#[test]
fn reload_keeps_counts_of_unchanged_counters() {
    let engine = Engine::builder(policy(
        r#"{"version":"1","tools":{"t":{"limits":[
        {"counter":"c","window":"minute","max":5}]}}}"#,
    ))
    .clock(ManualClock::new())
    .build();
    let call = ToolCall::new("t").grant("g");
    assert_eq!(use_up(&engine, &call), 5);
    // Same name, window and scope; a larger max: the 5 used still count.
    engine.reload(policy(
        r#"{"version":"1","tools":{"t":{"limits":[
        {"counter":"c","window":"minute","max":8}]}}}"#,
    ));
    assert_eq!(use_up(&engine, &call), 3);
}

#[test]
fn reload_starts_fresh_counts_for_changed_counters() {
    let engine = Engine::builder(policy(
        r#"{"version":"1","tools":{"t":{"limits":[
        {"counter":"c","window":"minute","max":5}]}}}"#,
    ))
    .clock(ManualClock::new())
    .build();
    let call = ToolCall::new("t").grant("g");
    assert_eq!(use_up(&engine, &call), 5);
    engine.reload(policy(
        r#"{"version":"1","tools":{"t":{"limits":[
        {"counter":"c","window":"hour","max":5}]}}}"#,
    ));
    assert_eq!(use_up(&engine, &call), 5, "a new window is a new counter");
    engine.reload(policy(
        r#"{"version":"1","tools":{"t":{"limits":[
        {"counter":"c","window":"hour","max":5,"scope":"global"}]}}}"#,
    ));
    assert_eq!(use_up(&engine, &call), 5, "a new scope is a new counter");
}

#[test]
fn reload_changes_decisions() {
    let engine = Engine::new(policy(r#"{"version":"1","default":"allow"}"#));
    assert!(engine.evaluate(&ToolCall::new("t")).is_allowed());
    engine.reload(policy(r#"{"version":"1","default":"deny"}"#));
    assert!(!engine.evaluate(&ToolCall::new("t")).is_allowed());
    assert_eq!(engine.policy().default_action(), mcp_policy::Action::Deny);
}

#[test]
fn calls_during_reload_see_one_policy_or_the_other_never_a_mix() {
    // Policy A allows "a" by its exact rule; policy B has no such rule and denies "a"
    // by the glob "a*". A call mixing them would match the rule of one policy and get the
    // action or reason of the other.
    let a = policy(r#"{"version":"1","tools":{"a":{},"a*":{"action":"deny","reason":"A"}}}"#);
    let b = policy(r#"{"version":"1","tools":{"a*":{"action":"deny","reason":"B"},"b":{}}}"#);
    let engine = Arc::new(Engine::new(a.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let reloader = {
        let (engine, stop) = (Arc::clone(&engine), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut flip = false;
            while !stop.load(Ordering::Relaxed) {
                engine.reload(if flip { a.clone() } else { b.clone() });
                flip = !flip;
            }
        })
    };
    for _ in 0..20_000 {
        let decision = engine.evaluate(&ToolCall::new("a"));
        match &decision {
            Decision::Allow { .. } => assert_eq!(decision.rule(), Some("a")),
            Decision::Deny { reason, .. } => {
                assert_eq!((decision.rule(), reason.as_str()), (Some("a*"), "B"));
            }
            other => panic!("{other}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    reloader.join().unwrap();
}

/// A store that fails while `down` is set, and otherwise delegates to memory.
struct FlakyStore {
    down: AtomicBool,
    inner: MemoryStore,
}

impl CounterStore for FlakyStore {
    fn acquire(
        &self,
        now: Timestamp,
        requests: &[LimitRequest<'_>],
    ) -> Result<Admission, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::new("flaky", "connection refused"));
        }
        self.inner.acquire(now, requests)
    }
    fn peek(&self, now: Timestamp, requests: &[LimitRequest<'_>]) -> Result<Admission, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::new("flaky", "connection refused"));
        }
        self.inner.peek(now, requests)
    }
    fn release(
        &self,
        now: Timestamp,
        key: CounterKey<'_>,
        at: Timestamp,
        cost: u64,
    ) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::new("flaky", "connection refused"));
        }
        self.inner.release(now, key, at, cost)
    }
}

#[test]
fn a_failing_store_fails_closed_naming_the_store() {
    let store = Arc::new(FlakyStore {
        down: AtomicBool::new(true),
        inner: MemoryStore::new(),
    });
    let engine = Engine::builder(policy(
        r#"{"version":"1","tools":{"t":{"rate_limit":"5/minute"},"free":{}}}"#,
    ))
    .store(Arc::clone(&store))
    .build();
    let call = ToolCall::new("t").session("s");
    match engine.evaluate(&call) {
        Decision::Deny { code, reason, .. } => {
            assert_eq!(code, DenyCode::StoreFailed);
            assert_eq!(reason, "flaky counter store failed: connection refused");
        }
        other => panic!("{other}"),
    }
    assert!(!engine.peek(&call).is_allowed());
    assert!(
        engine.evaluate(&ToolCall::new("free")).is_allowed(),
        "calls without limits need no store"
    );
    store.down.store(false, Ordering::SeqCst);
    assert!(
        engine.evaluate(&call).is_allowed(),
        "recovers when the store is back"
    );
}

#[test]
fn fail_open_allows_when_the_store_fails() {
    let store = FlakyStore {
        down: AtomicBool::new(true),
        inner: MemoryStore::new(),
    };
    let engine = Engine::builder(policy(
        r#"{"version":"1","tools":{"t":{"rate_limit":"1/minute"}}}"#,
    ))
    .store(store)
    .fail_open(true)
    .build();
    let call = ToolCall::new("t").session("s");
    assert!(engine.evaluate(&call).is_allowed());
    assert!(engine.evaluate(&call).is_allowed());
}

#[test]
fn a_store_naming_a_limit_that_does_not_exist_fails_closed() {
    struct Confused;
    impl CounterStore for Confused {
        fn acquire(&self, _: Timestamp, _: &[LimitRequest<'_>]) -> Result<Admission, StoreError> {
            Ok(Admission::Refused {
                limit: 7,
                retry_after: Duration::from_secs(1),
            })
        }
        fn peek(&self, now: Timestamp, r: &[LimitRequest<'_>]) -> Result<Admission, StoreError> {
            self.acquire(now, r)
        }
        fn release(
            &self,
            _: Timestamp,
            _: CounterKey<'_>,
            _: Timestamp,
            _: u64,
        ) -> Result<(), StoreError> {
            Ok(())
        }
    }
    let engine = Engine::builder(policy(
        r#"{"version":"1","tools":{"t":{"rate_limit":"1/minute"}}}"#,
    ))
    .store(Confused)
    .build();
    let decision = engine.evaluate(&ToolCall::new("t").session("s"));
    assert_eq!(decision.code(), "store_failed");
}

/// A clock that jumps backwards every other reading.
struct Jumpy(AtomicU64);

impl Clock for Jumpy {
    fn now(&self) -> Timestamp {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        let base = 10_000_000_000_000;
        Timestamp::from_nanos(if n % 2 == 0 {
            base + n * 1_000_000
        } else {
            base - n * 7_000_000_000
        })
    }
}

#[test]
fn a_custom_clock_that_goes_backwards_cannot_over_admit() {
    let engine = Engine::builder(policy(
        r#"{"version":"1","tools":{"t":{"limits":[{"window":"hour","max":10}]}}}"#,
    ))
    .clock(Jumpy(AtomicU64::new(0)))
    .build();
    let call = ToolCall::new("t").grant("g");
    assert_eq!(use_up(&engine, &call), 10);
}

#[test]
fn engine_new_uses_the_system_clock() {
    let engine = Engine::new(policy(
        r#"{"version":"1","tools":{"t":{"limits":[{"window":"hour","max":1}]}}}"#,
    ));
    // An hour-long window: however slow the machine, the second call is refused.
    let call = ToolCall::new("t").grant("g");
    assert!(engine.evaluate(&call).is_allowed());
    let refused = engine.evaluate(&call);
    let wait = refused.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(3000) && wait <= Duration::from_secs(3825),
        "{wait:?}"
    );
}

#[test]
fn many_engines_on_one_thread_each_answer_from_their_own_policy() {
    // More engines than a thread keeps policy copies for: the rest read the shared policy.
    let engines: Vec<Engine> = (0..7)
        .map(|i| {
            Engine::new(policy(&format!(
                r#"{{"version":"1","tools":{{"t{i}":{{}}}}}}"#
            )))
        })
        .collect();
    for round in 0..3 {
        for (i, engine) in engines.iter().enumerate() {
            assert!(
                engine
                    .evaluate(&ToolCall::new(&format!("t{i}")))
                    .is_allowed(),
                "round {round}"
            );
            assert!(!engine
                .evaluate(&ToolCall::new(&format!("t{}", (i + 1) % 7)))
                .is_allowed());
        }
        engines[round].reload(policy(r#"{"version":"1","default":"allow"}"#));
        assert!(engines[round]
            .evaluate(&ToolCall::new("anything"))
            .is_allowed());
        engines[round].reload(policy(&format!(
            r#"{{"version":"1","tools":{{"t{round}":{{}}}}}}"#
        )));
    }
    drop(engines);
    // Copies of dropped engines make room for new ones.
    let fresh = Engine::new(policy(r#"{"version":"1","tools":{"x":{}}}"#));
    assert!(fresh.evaluate(&ToolCall::new("x")).is_allowed());
}

#[test]
fn a_decision_is_refunded_only_by_the_engine_that_made_it() {
    let text = r#"{"version":"1","tools":{"t":{"limits":[{"window":"minute","max":2}]}}}"#;
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new();
    let one = Engine::builder(policy(text))
        .clock(clock.clone())
        .store(Arc::clone(&store))
        .build();
    let two = Engine::builder(policy(text))
        .clock(clock.clone())
        .store(Arc::clone(&store))
        .build();
    let call = ToolCall::new("t").grant("g1");
    let first = one.evaluate(&call);
    assert!(one.evaluate(&call).is_allowed());
    // The other engine shares the store but did not record `first`: nothing changes.
    assert!(!two
        .report_outcome(&first, mcp_policy::Outcome::NotRun)
        .unwrap());
    assert!(two.refund(&first).is_ok());
    assert_eq!(use_up(&two, &call), 0, "2 of 2 are still used");
    assert!(one
        .report_outcome(&first, mcp_policy::Outcome::NotRun)
        .unwrap());
    assert_eq!(use_up(&one, &call), 1);
}

#[test]
fn a_refund_the_store_could_not_record_can_be_retried() {
    let store = Arc::new(FlakyStore {
        down: AtomicBool::new(false),
        inner: MemoryStore::new(),
    });
    let engine = Engine::builder(policy(
        r#"{"version":"1","tools":{"t":{"limits":[{"window":"minute","max":1}]}}}"#,
    ))
    .clock(ManualClock::new())
    .store(Arc::clone(&store))
    .build();
    let call = ToolCall::new("t").grant("g1");
    let decision = engine.evaluate(&call);
    store.down.store(true, Ordering::SeqCst);
    assert!(engine.refund(&decision).is_err());
    let Decision::Allow { usage, .. } = &decision else {
        panic!("{decision}")
    };
    assert!(!usage.is_refunded());
    store.down.store(false, Ordering::SeqCst);
    engine.refund(&decision).unwrap();
    assert!(usage.is_refunded());
    // Given back once: one call fits again, a second refund changes nothing.
    engine.refund(&decision).unwrap();
    assert_eq!(use_up(&engine, &call), 1);
}
