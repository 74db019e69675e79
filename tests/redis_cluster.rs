//! `RedisStore::cluster` on a real local Redis Cluster (three masters, three replicas,
//! started and stopped by the tests): the conformance kit passes; two engines × several
//! threads, on calls whose counts span slots, never admit more than `max`; killing a
//! master fails calls closed and, once its replica took over
//! (and has a replica again), calls pass again with nothing over-admitted
//! (`wait_replicas(1)`); what a call reserved before a slot whose node failed is given
//! back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/redis_cluster.rs"]
mod redis_cluster;

use mcp_policy::store::{Admission, CounterKey, CounterStore};
use mcp_policy::{Engine, ManualClock, Policy, RedisStore, Scope, ToolCall};
use redis_cluster::RedisCluster;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
#[ignore = "needs redis-server and redis-cli"]
fn the_cluster_store_passes_the_conformance_kit() {
    let cluster = RedisCluster::start();
    let store = cluster.store("kit:", Duration::from_secs(2));
    assert!(store.is_cluster());
    mcp_policy::store::testing::check_store(&store, 24).unwrap();
}

/// Each call counts in its grant's slot and in the global count's: two slots at least.
const SPANNING: &str = r#"{"version": "1", "tools": {"whmcs_add_credit": {"limits": [
    {"counter": "per_grant", "window": "hour", "max": 12, "scope": "grant"},
    {"counter": "all", "window": "hour", "max": 40, "scope": "global"}]}}}"#;

#[test]
#[ignore = "needs redis-server and redis-cli"]
fn engines_on_a_cluster_never_admit_more_than_max_across_slots() {
    let cluster = RedisCluster::start();
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1_780_000_000));
    let engines: Vec<Arc<Engine>> = (0..2)
        .map(|_| {
            let store = cluster.store("span:", Duration::from_secs(2));
            Arc::new(
                Engine::builder(SPANNING.parse::<Policy>().unwrap())
                    .clock(clock.clone())
                    .store(store)
                    .build(),
            )
        })
        .collect();
    let grants = ["g-a", "g-b", "g-c", "g-d", "g-e", "g-f"];
    let per_grant: Arc<Vec<AtomicUsize>> =
        Arc::new(grants.iter().map(|_| AtomicUsize::new(0)).collect());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let engine = Arc::clone(&engines[t % 2]);
            let per_grant = Arc::clone(&per_grant);
            std::thread::spawn(move || {
                for i in 0..30 {
                    let g = (t + i) % grants.len();
                    let call = ToolCall::new("whmcs_add_credit").grant(grants[g]);
                    let decision = engine.evaluate(&call);
                    assert!(decision.code() != "store_failed", "{decision}");
                    if decision.is_allowed() {
                        per_grant[g].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let counts: Vec<usize> = per_grant
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let total: usize = counts.iter().sum();
    assert!(
        total <= 40,
        "admitted {total} over the global max 40: {counts:?}"
    );
    assert!(
        counts.iter().all(|&c| c <= 12),
        "a grant over its max 12: {counts:?}"
    );
    // 240 calls for at most 40 places: the places were used, not all refused.
    assert!(total >= 30, "admitted only {total}: {counts:?}");
}

#[test]
#[ignore = "needs redis-server and redis-cli"]
fn killing_a_master_fails_closed_then_recovers_with_nothing_over_admitted() {
    let mut cluster = RedisCluster::start();
    // Room for a replica's confirmation on a loaded test machine.
    let timeout = Duration::from_secs(2);
    let store = cluster.store("failover:", timeout).wait_replicas(1);
    let counter = mcp_policy::Counter::new("calls", 3600, Scope::Global);
    let key = CounterKey::new(&counter, "");
    let master = cluster.master_of(&store.key_name(&key));
    let now = mcp_policy::Timestamp::from_nanos(1_780_000_000_000_000_000);
    let request = |cost| [mcp_policy::store::LimitRequest { key, max: 20, cost }];
    // Admitted calls, each confirmed by a replica. A call whose confirmation does not come
    // in time (a loaded machine) fails closed and gives its count back: tried again.
    let acquire = |store: &mcp_policy::RedisStore| -> Option<bool> {
        (0..20).find_map(|_| match store.acquire(now, &request(1)) {
            Ok(admission) => Some(matches!(admission, Admission::Admitted { .. })),
            Err(_) => None,
        })
    };
    let mut admitted = 0;
    for _ in 0..8 {
        if acquire(&store).expect("no call confirmed") {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 8);

    cluster.kill(master);
    // Until the replica takes over, calls fail closed (the store's deadline bounds each;
    // how long one takes is not asserted here: speed belongs in benches).
    let failed = store.acquire(now, &request(1));
    assert!(
        failed.is_err(),
        "a call counted on a dead master: {failed:?}"
    );

    // The replica takes over; with `wait_replicas(1)` calls on its slots still fail
    // closed until it has a replica again: the old master, back as one.
    cluster.wait_until_ok();
    cluster.restart(master);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut recovered = false;
    while Instant::now() < deadline {
        match store.acquire(now, &request(1)) {
            Ok(admission) => {
                recovered = true;
                if matches!(admission, Admission::Admitted { .. }) {
                    admitted += 1;
                }
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    assert!(recovered, "the store did not recover after the failover");
    for _ in 0..30 {
        if acquire(&store).expect("no call confirmed after the failover") {
            admitted += 1;
        }
    }
    // The counts confirmed before the kill survived on the promoted replica.
    assert_eq!(admitted, 20, "over or under the max 20 after a failover");
}

#[test]
#[ignore = "needs redis-server and redis-cli"]
fn a_single_server_store_can_tell_it_points_at_a_cluster_node() {
    let cluster = RedisCluster::start();
    let store = RedisStore::open(&cluster.urls()[0]).unwrap();
    assert!(store.server_is_cluster_node().unwrap());
}

#[test]
#[ignore = "needs redis-server and redis-cli"]
fn a_slot_reserved_before_a_failing_node_is_given_back() {
    use mcp_policy::store::LimitRequest;
    let mut cluster = RedisCluster::start();
    // One pooled connection, opened before the kill: the call reaches its first slot.
    let store = cluster
        .store("giveback:", Duration::from_millis(400))
        .connections(1);
    let per_grant = mcp_policy::Counter::new("per_grant", 3600, Scope::Grant);
    let ids: Vec<String> = (0..200).map(|i| format!("g{i}")).collect();
    let slot = |id: &str| cluster.slot_of(&store.key_name(&CounterKey::new(&per_grant, id)));
    // `redis-cli --cluster create` gives three masters 0-5460, 5461-10922, 10923-16383:
    // a grant in the last range fails; one in the first is reserved before it.
    let late = ids.iter().find(|id| slot(id) > 10_922).unwrap();
    let early = ids.iter().find(|id| slot(id) < 5_461).unwrap();
    let failing = CounterKey::new(&per_grant, late);
    let first = CounterKey::new(&per_grant, early);
    let dead = cluster.master_of(&store.key_name(&failing));
    assert_ne!(dead, cluster.master_of(&store.key_name(&first)));
    let now = mcp_policy::Timestamp::from_nanos(1_780_000_000_000_000_000);
    let request = |key, max| LimitRequest { key, max, cost: 1 };
    let alone = [request(first, 2)];
    let both = [request(first, 2), request(failing, 100)];
    // The first of two places taken, over the connection the next call will use.
    let taken = store.acquire(now, &alone).unwrap();
    assert!(matches!(taken, Admission::Admitted { .. }), "{taken:?}");
    cluster.kill(dead);
    let failed = store.acquire(now, &both);
    assert!(failed.is_err(), "counted on a dead master: {failed:?}");
    // The place the failed call took in the first slot is given back: at once if the
    // cluster still answers, else (the client cannot reach any node until the failover)
    // by the next call once it does.
    cluster.wait_until_ok();
    let admitted = store.acquire(now, &alone).unwrap();
    assert!(
        matches!(admitted, Admission::Admitted { .. }),
        "{admitted:?}"
    );
}
