//! Approval boards keep one contract (`MemoryBoard`, and `RedisBoard` on a real
//! `redis-server`, and on a real local Redis Cluster): the first decision stands, a late one is a decline, the last
//! decisions are kept newest first; and with Redis, a call held by one gateway replica is
//! decided through another replica's board and runs once, on whichever replica it is
//! retried.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/redis_cluster.rs"]
mod redis_cluster;
#[path = "common/redis_server.rs"]
mod redis_server;

use mcp_policy::mcp::*;
use mcp_policy::{Engine, ManualClock};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn approval(tool: &str, grant: &str, created_ms: u64) -> PendingApproval {
    PendingApproval::new(
        tool,
        "needs a second person",
        Some(&json!({"amount": 5})),
        "ab",
        [Some(grant), None, None],
        Some(tool),
        created_ms,
        60_000,
        600_000,
    )
    .unwrap()
}

/// The contract every board keeps.
fn keeps_the_contract(board: &dyn ApprovalBoard) {
    let first = approval("whmcs_add_credit", "g1", 1_000);
    let second = approval("whmcs_send_email", "g2", 2_000);
    board.post(&first).unwrap();
    board.post(&second).unwrap();
    let pending: Vec<String> = board
        .pending(3_000)
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(
        pending,
        [first.id.clone(), second.id.clone()],
        "oldest first"
    );
    assert_eq!(
        board.find_call(&first.call).unwrap().unwrap().approval,
        first
    );

    let won = board
        .decide(
            &first.id,
            Verdict::by("ana", true, Some("ok".into()), 4_000),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        won.verdict.as_ref().unwrap().approver.as_deref(),
        Some("ana")
    );
    let stands = board
        .decide(&first.id, Verdict::by("bo", false, None, 5_000))
        .unwrap()
        .unwrap();
    assert_eq!(stands.verdict, won.verdict, "the first decision stands");

    // Past its timeout, an approval is a decline whatever was asked.
    let late = board
        .decide(&second.id, Verdict::by("ana", true, None, 62_001))
        .unwrap()
        .unwrap();
    let verdict = late.verdict.unwrap();
    assert!(
        !verdict.approved && verdict.approver.is_none(),
        "{verdict:?}"
    );

    assert!(board.pending(6_000).unwrap().is_empty());
    let decided: Vec<String> = board
        .decided()
        .unwrap()
        .into_iter()
        .map(|e| e.approval.id)
        .collect();
    assert_eq!(
        decided,
        [second.id.clone(), first.id.clone()],
        "newest first"
    );
    assert!(board
        .decide("no-such-id", Verdict::by("ana", true, None, 1))
        .unwrap()
        .is_none());
    board.forget_call(&first.call).unwrap();
    assert!(board.find_call(&first.call).unwrap().is_none());
    assert!(
        board.get(&first.id).unwrap().is_some(),
        "forgetting the call keeps the approval"
    );
}

#[test]
fn a_memory_board_keeps_the_contract() {
    keeps_the_contract(&MemoryBoard::new());
}

#[test]
#[ignore = "needs redis-server"]
fn a_redis_board_keeps_the_contract() {
    let server = redis_server::RedisServer::start();
    keeps_the_contract(&server.store().prefix("contract:").approval_board());
}

#[test]
#[ignore = "needs redis-server and redis-cli"]
fn a_redis_board_on_a_cluster_keeps_the_contract() {
    let cluster = redis_cluster::RedisCluster::start();
    let store = cluster.store("contract:", Duration::from_secs(2));
    keeps_the_contract(&store.approval_board());
}

const POLICY: &str = r#"{"version": "1", "tools": {
    "whmcs_add_credit": {"action": "require_approval", "reason": "credits need a second person",
        "approvers": "console"}}}"#;

fn replica(
    server: &redis_server::RedisServer,
    clock: &ManualClock,
) -> (Relay, Arc<dyn ApprovalBoard>) {
    let store = server.store();
    let board: Arc<dyn ApprovalBoard> = Arc::new(store.approval_board());
    let engine = Engine::builder(POLICY.parse().unwrap())
        .clock(clock.clone())
        .store(store)
        .build();
    let key = ApprovalKey::from_hex(&"5".repeat(64)).unwrap();
    let approvals = Approvals::new(key).console(Arc::clone(&board), "https://console.test");
    let relay = Relay::builder(engine)
        .grant("g1")
        .clock(clock.clone())
        .approvals(approvals)
        .build();
    (relay, board)
}

fn call(id: i64) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "whmcs_add_credit", "arguments": {"client_id": 7, "amount": 25}}})
    .to_string()
    .into_bytes()
}

fn code(out: &Output) -> Value {
    let answer: Value = serde_json::from_str(&out.to_client[0]).unwrap();
    answer["result"]["structuredContent"]["code"].clone()
}

#[test]
#[ignore = "needs redis-server"]
fn replicas_sharing_redis_share_pending_approvals_and_each_runs_once() {
    let server = redis_server::RedisServer::start();
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1_000));
    let (a, _) = replica(&server, &clock);
    let (b, b_board) = replica(&server, &clock);

    let out = a.from_client(&call(1));
    assert_eq!(code(&out), "approval_pending");
    // Replica B's console sees the call replica A holds, and decides it.
    let now_ms = 1_000_000;
    let pending = b_board.pending(now_ms).unwrap();
    assert_eq!(pending.len(), 1);
    b_board
        .decide(&pending[0].id, Verdict::by("ana", true, None, now_ms))
        .unwrap();

    // Retried on B, the call runs; retried again on A, it needs a new approval.
    let out = b.from_client(&call(2));
    assert_eq!(out.to_server.len(), 1, "{out:?}");
    let out = a.from_client(&call(3));
    assert!(out.to_server.is_empty());
    assert_eq!(code(&out), "approval_pending");
}
