//! The hot path: `Engine::evaluate` per scenario, beside a bare `governor` keyed limiter.
//!
//! Run with `cargo bench -p mcp-policy-benches --bench evaluate`; BENCHMARKS.md records the results.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use governor::{Quota, RateLimiter};
use mcp_policy::{Engine, ManualClock, Policy, ToolCall};
use serde_json::json;
use std::num::NonZeroU32;
use std::time::Duration;

fn build(policy: serde_json::Value) -> (Engine, ManualClock) {
    let policy = Policy::from_json(&policy.to_string()).unwrap();
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1_780_000_000));
    (Engine::builder(policy).clock(clock.clone()).build(), clock)
}

/// `n` rules: `service{i}_*` globs and `service{i}_exact` names, alternating.
pub fn many_rules(n: usize) -> serde_json::Value {
    let mut tools = serde_json::Map::new();
    for i in 0..n {
        let key = if i % 2 == 0 {
            format!("service{i}_*")
        } else {
            format!("service{i}_exact")
        };
        tools.insert(key, json!({}));
    }
    json!({"version": "1", "default": "deny", "tools": tools})
}

fn no_limits(c: &mut Criterion) {
    let (engine, _) = build(json!({"version": "1", "default": "deny", "tools": {
        "whmcs_get_ticket": {}, "whmcs_get_*": {}, "whmcs_close_client": {"action": "deny", "reason": "never"}}}));
    let mut group = c.benchmark_group("no_limits");
    let allow = ToolCall::new("whmcs_get_ticket").grant("g1");
    group.bench_function("allow_exact", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(&allow))))
    });
    // The answer alone (`Engine::check`): no copies for refunds and audit records.
    group.bench_function("check_exact", |b| {
        b.iter(|| black_box(engine.check(black_box(&allow))))
    });
    let glob = ToolCall::new("whmcs_get_invoice").grant("g1");
    group.bench_function("allow_glob", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(&glob))))
    });
    let deny = ToolCall::new("whmcs_close_client").grant("g1");
    group.bench_function("deny_rule", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(&deny))))
    });
    let default = ToolCall::new("unknown_tool").grant("g1");
    group.bench_function("deny_default", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(&default))))
    });
    group.finish();
}

fn one_limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_limit");
    let (engine, _) = build(
        json!({"version": "1", "tools": {"whmcs_update_ticket": {"limits": [
        {"counter": "rate", "window": "minute", "max": 9_007_199_254_740_992u64, "scope": "grant"}]}}}),
    );
    let call = ToolCall::new("whmcs_update_ticket").grant("grant-0001");
    group.bench_function("allowed", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(&call))))
    });
    group.bench_function("check_allowed", |b| {
        b.iter(|| black_box(engine.check(black_box(&call))))
    });
    group.bench_function("peek", |b| {
        b.iter(|| black_box(engine.peek(black_box(&call))))
    });
    let (engine, _) = build(
        json!({"version": "1", "tools": {"whmcs_update_ticket": {"limits": [
        {"counter": "rate", "window": "minute", "max": 9_007_199_254_740_992u64, "scope": "global"}]}}}),
    );
    group.bench_function("allowed_global", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(&call))))
    });

    let (engine, _) = build(
        json!({"version": "1", "tools": {"whmcs_update_ticket": {"limits": [
        {"counter": "rate", "window": "hour", "max": 1, "scope": "grant"}]}}}),
    );
    assert!(engine.evaluate(&call).is_allowed());
    group.bench_function("refused", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(&call))))
    });
    group.bench_function("check_refused", |b| {
        b.iter(|| black_box(engine.check(black_box(&call))))
    });
    group.finish();

    let mut group = c.benchmark_group("governor_keyed");
    let limiter = RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX));
    let key = String::from("grant-0001");
    group.bench_function("allowed", |b| {
        b.iter(|| black_box(limiter.check_key(black_box(&key)).is_ok()))
    });
    let limiter = RateLimiter::keyed(Quota::per_hour(NonZeroU32::MIN));
    assert!(limiter.check_key(&key).is_ok());
    group.bench_function("refused", |b| {
        b.iter(|| black_box(limiter.check_key(black_box(&key)).is_ok()))
    });
    group.finish();
}

fn three_limits_and_conditions(c: &mut Criterion) {
    let (engine, _) = build(json!({"version": "1",
        "all_tools": {"limits": [{"counter": "all", "window": "minute", "max": 9_007_199_254_740_992u64, "scope": "grant"}]},
        "tools": {"whmcs_update_ticket": {
            "require": [{"path": "args.ticket_id", "op": "exists", "value": true}],
            "deny_if": [{"path": "args.priority", "op": "eq", "value": "Emergency"}],
            "approve_if": [{"path": "args.status", "op": "in", "value": ["Closed"]}],
            "limits": [
                {"counter": "rate", "window": "minute", "max": 9_007_199_254_740_992u64, "scope": "grant"},
                {"counter": "daily", "window": "day", "max": 9_007_199_254_740_992u64, "scope": "session"}]}}}));
    let args = json!({"ticket_id": 1042, "status": "Answered", "priority": "Low"});
    let call = ToolCall::new("whmcs_update_ticket")
        .grant("grant-0001")
        .session("session-0001")
        .arguments(&args);
    assert!(engine.evaluate(&call).is_allowed());
    c.bench_function("three_limits_and_conditions/allowed", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(&call))))
    });
}

fn many_rules_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("rules");
    for n in [10, 1_000, 10_000] {
        let (engine, _) = build(many_rules(n));
        // The glob with the highest number: the last to be tried in a linear scan.
        let name = format!("service{}_call", (n - 2) / 2 * 2);
        let call = ToolCall::new(&name).grant("g1");
        assert!(engine.evaluate(&call).is_allowed(), "{name}");
        group.bench_function(format!("glob_among_{n}"), |b| {
            b.iter(|| black_box(engine.evaluate(black_box(&call))))
        });
        let miss = ToolCall::new("other_tool").grant("g1");
        group.bench_function(format!("no_match_among_{n}"), |b| {
            b.iter(|| black_box(engine.evaluate(black_box(&miss))))
        });
    }
    group.finish();
}

fn new_session_every_call(c: &mut Criterion) {
    let (engine, clock) =
        build(json!({"version": "1", "tools": {"t": {"rate_limit": "10/minute"}}}));
    let ids: Vec<String> = (0..1_000_000).map(|i| format!("session-{i:07}")).collect();
    let mut next = 0usize;
    c.bench_function("new_session_every_call", |b| {
        b.iter(|| {
            next += 1;
            if next == ids.len() {
                next = 0;
                // Let the old sessions expire, so the store reclaims them as it goes.
                clock.advance(Duration::from_secs(120));
            }
            black_box(
                engine
                    .evaluate(&ToolCall::new("t").session(&ids[next]))
                    .is_allowed(),
            )
        })
    });
}

fn parse(c: &mut Criterion) {
    let text = many_rules(10_000).to_string();
    let mut group = c.benchmark_group("parse");
    group.sample_size(20);
    group.bench_function("10000_rules", |b| {
        b.iter(|| black_box(Policy::from_json(black_box(&text)).unwrap()))
    });
    let whmcs = std::fs::read_to_string("examples/policies/whmcs.json").unwrap();
    group.bench_function("whmcs_example", |b| {
        b.iter(|| black_box(Policy::from_json(black_box(&whmcs)).unwrap()))
    });
    group.finish();
}

criterion_group!(
    benches,
    no_limits,
    one_limit,
    three_limits_and_conditions,
    many_rules_match,
    new_session_every_call,
    parse
);
criterion_main!(benches);
