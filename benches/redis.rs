//! `evaluate` with `RedisStore` over loopback: starts its own `redis-server`.
//!
//! Run with `cargo bench -p mcp-policy-benches --features redis --bench redis`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mcp_policy::{Engine, Policy, RedisStore, ToolCall};

#[path = "../tests/common/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

fn redis_engine(c: &mut Criterion) {
    let server = RedisServer::start();
    let url = server.url();

    let policy: Policy = r#"{"version": "1",
        "all_tools": {"limits": [{"counter": "all", "window": "minute", "max": 9007199254740992, "scope": "grant"}]},
        "tools": {
            "one": {"limits": [{"window": "minute", "max": 9007199254740992, "scope": "grant"}]},
            "free": {},
            "tight": {"limits": [{"window": "hour", "max": 1, "scope": "grant"}]}
        }}"#
        .parse()
        .unwrap();
    let one_limit: Policy = r#"{"version": "1", "tools": {
            "one": {"limits": [{"window": "minute", "max": 9007199254740992, "scope": "grant"}]}}}"#
        .parse()
        .unwrap();
    let mut group = c.benchmark_group("redis");
    let engine = Engine::builder(one_limit)
        .store(RedisStore::open(&url).unwrap())
        .build();
    let call = ToolCall::new("one").grant("grant-0001");
    group.bench_function("one_limit_allowed", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(&call))))
    });
    let engine = Engine::builder(policy)
        .store(RedisStore::open(&url).unwrap())
        .build();
    group.bench_function("two_limits_allowed", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(&call))))
    });
    let tight = ToolCall::new("tight").grant("grant-0001");
    engine.evaluate(&tight);
    group.bench_function("two_limits_refused", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(&tight))))
    });
    let server_time = Engine::builder(
        r#"{"version": "1", "tools": {
            "one": {"limits": [{"window": "minute", "max": 9007199254740992, "scope": "grant"}]}}}"#
            .parse::<Policy>()
            .unwrap(),
    )
    .store(RedisStore::open(&url).unwrap().server_time(true))
    .build();
    group.bench_function("one_limit_allowed_server_time", |b| {
        b.iter(|| black_box(server_time.evaluate(black_box(&call))))
    });
    group.finish();
}

criterion_group!(benches, redis_engine);
criterion_main!(benches);
