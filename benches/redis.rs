//! `evaluate` with `RedisStore` over loopback: starts its own `redis-server`.
//!
//! Run with `cargo bench --features redis --bench redis`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mcp_policy::{Engine, Policy, RedisStore, ToolCall};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn redis_engine(c: &mut Criterion) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("mcp-policy-bench-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install -y redis-server)");
    let url = format!("redis://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while RedisStore::open(&url).unwrap().ping().is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }

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

    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, redis_engine);
criterion_main!(benches);
