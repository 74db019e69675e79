//! `mcp-policy gateway --redis-cluster` on a real local Redis Cluster: two gateways share
//! their counts and their approvals' single use through it, and `--redis` pointed at a
//! cluster node stops the gateway at start, naming `--redis-cluster`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::{gateway, redis_cluster};

use gateway::Session;
use serde_json::{json, Value};

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{
  "whmcs_get_ticket":{"limits":[{"window":"minute","max":3,"scope":"grant"},
                                {"window":"minute","max":100,"scope":"global"}]},
  "whmcs_send_email":{"action":"require_approval","reason":"emails are reviewed"}}}"#;

fn code(answer: &Value) -> &str {
    answer["result"]["structuredContent"]["code"]
        .as_str()
        .unwrap_or("(forwarded)")
}

#[test]
#[ignore = "needs redis-server and redis-cli"]
fn two_gateways_on_a_cluster_share_counts_and_approvals() {
    let cluster = redis_cluster::RedisCluster::start();
    let seeds = cluster.urls()[..3].join(",");
    let dir = std::env::temp_dir().join(format!("mcp-policy-cluster-gw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("approval.key");
    std::fs::write(&key, "6b".repeat(32)).unwrap();
    let flags = [
        "--redis-cluster",
        &seeds,
        "--approval-key",
        key.to_str().unwrap(),
        "--session",
        "shared",
    ];
    let mut one = Session::go_like(POLICY, &flags);
    let mut two = Session::go_like(POLICY, &flags);
    // Counts of grant g1 (one slot) and the global count (another), across two gateways.
    let mut codes = Vec::new();
    for i in 0..4u64 {
        let gw = if i % 2 == 0 { &mut one } else { &mut two };
        let answer = gw.call(i + 1, "whmcs_get_ticket", json!({"ticket_id": i}));
        codes.push(code(&answer).to_owned());
    }
    assert_eq!(
        codes,
        ["(forwarded)", "(forwarded)", "(forwarded)", "rate_limited"]
    );

    // An approval given at one gateway is used once across both.
    let args = json!({"client_id": 7, "template": "welcome"});
    one.send(&gateway::modern_call(
        10,
        "whmcs_send_email",
        &args,
        json!({}),
    ));
    let asked = one.next();
    let state = asked["result"]["requestState"].as_str().unwrap().to_owned();
    let accept = json!({"approval": {"action": "accept", "content": {"approve": true}}});
    let retry = json!({"requestState": state, "inputResponses": accept});
    two.send(&gateway::modern_call(
        11,
        "whmcs_send_email",
        &args,
        retry.clone(),
    ));
    assert_eq!(code(&two.next()), "(forwarded)");
    one.send(&gateway::modern_call(12, "whmcs_send_email", &args, retry));
    assert_eq!(code(&one.next()), "approval_invalid");
    one.finish();
    two.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs redis-server and redis-cli"]
fn redis_pointed_at_a_cluster_node_stops_the_gateway_naming_redis_cluster() {
    let cluster = redis_cluster::RedisCluster::start();
    let dir = std::env::temp_dir().join(format!("mcp-policy-cluster-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policy.json"), POLICY).unwrap();
    let output = std::process::Command::new(gateway::binary())
        .args(["gateway", "--policy"])
        .arg(dir.join("policy.json"))
        .args(["--redis", &cluster.urls()[0], "--", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--redis-cluster"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
