//! Approvals through the MCP client, end to end through `mcp-policy gateway`.
//!
//! - The official MCP Python SDK client, with an elicitation callback standing in for a
//!   person, on 2026-07-28 and on the 2025 handshake, to an SDK server that logs every
//!   call it runs (`tests/e2e/sdk_approvals.py` holds those checks).
//! - Raw 2026-07-28 messages for what the SDK never sends: tampered, reused and
//!   mismatched approvals, and two gateways sharing Redis and one key.
//!
//! The SDK test needs a Python with `mcp` (`$MCP_PYTHON`, else `python3`), and the
//! two-gateway test `redis-server`; without them they say so and pass, except under CI,
//! where `.ci/run` installs both.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::{gateway, redis_server};

use gateway::Session;
use serde_json::{json, Value};

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{
  "whmcs_get_ticket":{},
  "whmcs_send_email":{"action":"require_approval","reason":"emails are reviewed","rate_limit":"2/minute"}}}"#;

#[test]
#[ignore = "needs the MCP Python SDK"]
fn a_person_approves_or_declines_through_the_python_sdk_client() {
    let stdout = gateway::run_sdk_script("sdk_approvals.py", POLICY);
    for mode in ["auto", "legacy"] {
        for check in [
            "approved call ran exactly once",
            "limits still apply to approved calls",
            "decline never reaches the server",
            "cancel never reaches the server",
            "a client without elicitation gets approval_required",
        ] {
            assert!(
                stdout.contains(&format!("ok: {mode}: {check}")),
                "{mode}: {check}\n{stdout}"
            );
        }
    }
}

/// A 2026-07-28 `tools/call` of `whmcs_send_email` from a client that can elicit.
fn call(id: u64, args: Value, extra: Value) -> String {
    gateway::modern_call(id, "whmcs_send_email", &args, extra)
}

fn accept() -> Value {
    json!({"approval": {"action": "accept", "content": {"approve": true}}})
}

/// Asks for approval and returns the sealed state.
fn ask(gw: &mut Session, id: u64, args: &Value) -> String {
    gw.send(&call(id, args.clone(), json!({})));
    let answer = gw.next();
    assert_eq!(answer["result"]["resultType"], "input_required", "{answer}");
    answer["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn retry(gw: &mut Session, id: u64, args: &Value, state: &str) -> Value {
    gw.send(&call(
        id,
        args.clone(),
        json!({"requestState": state, "inputResponses": accept()}),
    ));
    gw.next()
}

fn code(answer: &Value) -> &str {
    answer["result"]["structuredContent"]["code"]
        .as_str()
        .unwrap_or("(forwarded)")
}

fn emails_run(gw: &Session) -> usize {
    gw.tools_run()
        .iter()
        .filter(|(tool, _)| tool == "whmcs_send_email")
        .count()
}

#[test]
fn tampered_reused_and_mismatched_approvals_never_reach_the_server() {
    let mut gw = Session::go_like(POLICY, &[]);
    let args = json!({"client_id": 7, "template": "welcome"});
    let state = ask(&mut gw, 1, &args);
    assert!(state.starts_with("mcp-policy.1."), "{state}");

    let mut tampered = state.clone();
    tampered.replace_range(20..21, if &state[20..21] == "A" { "B" } else { "A" });
    assert_eq!(
        code(&retry(&mut gw, 2, &args, &tampered)),
        "approval_invalid"
    );
    let other_args = json!({"client_id": 8, "template": "welcome"});
    assert_eq!(
        code(&retry(&mut gw, 3, &other_args, &state)),
        "approval_invalid"
    );
    assert_eq!(emails_run(&gw), 0);

    let approved = retry(&mut gw, 4, &args, &state);
    assert_eq!(
        approved["result"]["content"][0]["text"], "ran whmcs_send_email",
        "{approved}"
    );
    assert_eq!(emails_run(&gw), 1);
    assert_eq!(
        code(&retry(&mut gw, 5, &args, &state)),
        "approval_invalid",
        "reused"
    );
    assert_eq!(emails_run(&gw), 1);
    let (_, stderr) = gw.finish();
    assert!(stderr.contains("used already"), "{stderr}");
}

#[test]
fn an_expired_approval_never_reaches_the_server() {
    // The gateway's key is known here, so the test can seal what the gateway would seal
    // an hour later instead of waiting an expiry out on the wall clock.
    let dir = std::env::temp_dir().join(format!("mcp-policy-expiry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("approval.key");
    std::fs::write(&key_file, "3c".repeat(32)).unwrap();
    let key = mcp_policy::mcp::ApprovalKey::from_hex(&"3c".repeat(32)).unwrap();
    let flags = [
        "--approval-ttl",
        "90",
        "--approval-key",
        key_file.to_str().unwrap(),
    ];
    let mut gw = Session::go_like(POLICY, &flags);
    let args = json!({"client_id": 7, "template": "welcome"});
    let since_epoch = || {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        u64::try_from(now.unwrap().as_millis()).unwrap()
    };
    let before = since_epoch();
    let state = ask(&mut gw, 1, &args);
    let after = since_epoch();
    let sealed = key.open(&state, before).unwrap();
    assert!(
        (before + 90_000..=after + 90_000).contains(&sealed.expires_ms),
        "--approval-ttl 90 sets the expiry: {} not within [{before}, {after}] + 90 s",
        sealed.expires_ms
    );
    // The same approval, sealed by the same key, that expired a second after it was made.
    let expired = key
        .seal(&sealed.binding, before - 3_600_000, 1_000)
        .unwrap();
    let answer = retry(&mut gw, 2, &args, &expired);
    assert_eq!(code(&answer), "approval_invalid", "{answer}");
    assert!(answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("expired"));
    assert_eq!(emails_run(&gw), 0);
    gw.finish();
}

#[test]
#[ignore = "needs redis-server"]
fn an_approval_used_at_one_gateway_is_refused_at_another_sharing_redis_and_key() {
    let redis = redis_server::RedisServer::start();
    let dir = std::env::temp_dir().join(format!("mcp-policy-shared-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("approval.key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    let flags = [
        "--approval-key",
        key.to_str().unwrap(),
        "--redis",
        &redis.url(),
        "--session",
        "shared",
    ];
    let mut one = Session::go_like(POLICY, &flags);
    let mut two = Session::go_like(POLICY, &flags);
    let args = json!({"client_id": 7, "template": "welcome"});
    let state = ask(&mut one, 1, &args);
    let approved = retry(&mut two, 2, &args, &state);
    assert_eq!(
        approved["result"]["content"][0]["text"], "ran whmcs_send_email",
        "the other replica accepts the key: {approved}"
    );
    assert_eq!(
        code(&retry(&mut one, 3, &args, &state)),
        "approval_invalid",
        "used at the other replica"
    );
    assert_eq!(emails_run(&one), 0);
    assert_eq!(emails_run(&two), 1);
    one.finish();
    two.finish();
    let _ = std::fs::remove_dir_all(&dir);
}
