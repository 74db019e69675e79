//! Attacks on the stdio gateway, each through the real gateway process in front of a
//! server that reads JSON the way Go does (`tests/servers/go_like_server.py`): field names
//! matched ignoring case, the last one winning, methods matched ignoring case, tools run
//! before the id is looked at. Whatever reaches that server is in its log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::gateway;

use gateway::{binary, text, Session};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const POLICY: &str = r#"{"version":"1","default":"deny","hide":["whmcs_delete_*"],"tools":{
  "whmcs_get_ticket":{},
  "whmcs_update_ticket":{"limits":[{"window":"minute","max":2}],
    "deny_if":[{"path":"args.priority","op":"eq","value":"Emergency"}]},
  "whmcs_add_credit":{"require":[{"path":"args.amount","op":"lte","value":100}]},
  "whmcs_fail":{"limits":[{"window":"minute","max":30}]},
  "whmcs_garbage":{}, "whmcs_silent":{}, "whmcs_huge":{},
  "whmcs_close_client":{"action":"deny","reason":"never automated"},
  "whmcs_send_email":{"action":"require_approval"}}}"#;

fn ran(gw: &Session) -> Vec<String> {
    gw.tools_run().into_iter().map(|(tool, _)| tool).collect()
}

/// Sends a ping and waits for its answer: everything sent before has been handled.
fn sync(gw: &mut Session, id: u64) {
    let pong = gw.request(id, "ping", json!({}));
    assert!(pong["result"].is_object(), "{pong}");
}

#[test]
fn batches_are_answered_with_one_error_and_never_relayed() {
    let mut gw = Session::go_like(POLICY, &[]);
    gw.handshake();
    for batch in [
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_close_client"}}]"#,
        r#"[{"jsonrpc":"2.0","id":2,"method":"tools/list"},{"jsonrpc":"2.0","id":3,"method":"ping"}]"#,
        "[]",
    ] {
        gw.send(batch);
        let answer = gw.next();
        assert_eq!(answer["id"], Value::Null, "{answer}");
        assert_eq!(answer["error"]["code"], -32600, "{answer}");
    }
    sync(&mut gw, 9);
    assert!(ran(&gw).is_empty(), "{:?}", gw.server_log());
    assert!(
        !gw.server_log().iter().any(|l| l.contains("tools/list")),
        "{:?}",
        gw.server_log()
    );
    gw.finish();
}

#[test]
fn calls_without_an_id_or_with_a_case_variant_method_never_reach_the_server() {
    let mut gw = Session::go_like(POLICY, &[]);
    gw.handshake();
    gw.send(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"whmcs_close_client"}}"#);
    assert_eq!(gw.next()["error"]["code"], -32600);
    gw.send(
        r#"{"jsonrpc":"2.0","id":4,"method":"Tools/Call","params":{"name":"whmcs_close_client"}}"#,
    );
    let answer = gw.next();
    assert_eq!(
        (answer["id"].clone(), answer["error"]["code"].clone()),
        (json!(4), json!(-32600))
    );
    gw.send(r#"{"jsonrpc":"2.0","method":"TOOLS/CALL","params":{"name":"whmcs_close_client"}}"#);
    assert_eq!(gw.next()["error"]["code"], -32600);
    sync(&mut gw, 9);
    assert!(ran(&gw).is_empty(), "{:?}", gw.server_log());
    gw.finish();
}

#[test]
fn the_server_reads_only_what_the_gateway_evaluated() {
    let mut gw = Session::go_like(POLICY, &[]);
    gw.handshake();
    for (id, line) in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_get_ticket","NAME":"whmcs_close_client"}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","Method":"tools/call","params":{"name":"whmcs_close_client"}}"#,
        r#"{"jsonrpc":"2.0","ID":6,"method":"tools/call","params":{"name":"whmcs_close_client"}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whmcs_add_credit","arguments":{"amount":5},"Arguments":{"amount":5000}}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"whmcs_add_credit","arguments":{"amount":5,"Amount":5000}}}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"whmcs_update_ticket","arguments":{"Priority":"Emergency"}}}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whmcs_update_ticket","Arguments":{"priority":"Emergency"}}}"#,
    ]
    .into_iter()
    .enumerate()
    {
        gw.send(line);
        let answer = gw.next();
        let code = answer["error"]["code"].as_i64().unwrap_or_default();
        assert!(code == -32600 || code == -32602, "line {id}: {answer}");
    }
    // What is allowed arrives re-serialized, unknown members dropped.
    gw.send(r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","x-extra":1,"params":{"name":"whmcs_add_credit","arguments":{"amount":5}}}"#);
    assert_eq!(text(&gw.next()), "ran whmcs_add_credit");
    sync(&mut gw, 9);
    assert_eq!(
        gw.tools_run(),
        [("whmcs_add_credit".to_string(), json!({"amount": 5}))]
    );
    assert!(
        !gw.server_log().iter().any(|l| l.contains("x-extra")),
        "{:?}",
        gw.server_log()
    );
    gw.finish();
}

#[test]
fn reused_client_ids_cannot_refund_or_unfilter_another_request() {
    let mut gw = Session::go_like(POLICY, &[]);
    gw.handshake();
    let padding = "x".repeat(1 << 20);
    for id in 0..20 {
        gw.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": "x/unknown", "params": {"pad": padding}})
                .to_string(),
        );
        gw.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "whmcs_update_ticket", "arguments": {"ticket_id": 1}}})
            .to_string(),
        );
    }
    for _ in 0..40 {
        gw.next();
    }
    let updates = ran(&gw)
        .iter()
        .filter(|t| *t == "whmcs_update_ticket")
        .count();
    assert_eq!(updates, 2, "the limit is 2 a minute");

    gw.send(r#"{"jsonrpc":"2.0","id":100,"method":"x/unknown"}"#);
    gw.send(r#"{"jsonrpc":"2.0","id":100,"method":"tools/list"}"#);
    for _ in 0..2 {
        let answer = gw.next();
        assert_eq!(answer["id"], 100);
        if let Some(tools) = answer["result"]["tools"].as_array() {
            let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
            assert!(!names.contains(&"whmcs_delete_client"), "{names:?}");
            assert!(!names.contains(&"whmcs_close_client"), "{names:?}");
        }
    }
    gw.finish();
}

#[test]
fn failing_calls_still_count_against_the_limit() {
    let mut gw = Session::go_like(POLICY, &[]);
    gw.handshake();
    let mut limited = 0;
    for id in 1..=200 {
        let answer = gw.call(id, "whmcs_fail", json!({}));
        if answer["result"]["structuredContent"]["code"] == "rate_limited" {
            limited += 1;
        }
    }
    assert_eq!(limited, 170);
    assert_eq!(ran(&gw).len(), 30);
    gw.finish();
}

#[test]
fn broken_input_from_either_side_is_answered_and_the_session_goes_on() {
    let mut gw = Session::go_like(
        POLICY,
        &["--request-timeout", "1", "--max-message", "1048576"],
    );
    gw.handshake();
    // Invalid UTF-8 from the client.
    gw.send_bytes(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xff\"}");
    let answer = gw.next();
    assert_eq!(
        (answer["id"].clone(), answer["error"]["code"].clone()),
        (Value::Null, json!(-32700))
    );
    // Invalid UTF-8 from the server: the gateway answers the server and goes on.
    assert_eq!(
        text(&gw.call(2, "whmcs_garbage", json!({}))),
        "after garbage"
    );
    // A 50 MB line, and a 20 MB line written in pieces before its newline.
    let before = gw.peak_memory_kib();
    gw.send(&format!("{{\"pad\":\"{}\"}}", "y".repeat(50 << 20)));
    let answer = gw.next();
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limit is 1048576 bytes"));
    gw.send_bytes(&vec![b'z'; 20 << 20]);
    assert_eq!(gw.next()["error"]["code"], -32600);
    let grown = gw.peak_memory_kib().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "the gateway grew by {grown} KiB reading long lines"
    );
    // An answer over the limit from the server is dropped; the call times out.
    let huge = gw.call(3, "whmcs_huge", json!({}));
    assert_eq!(huge["error"]["code"], -32000, "{huge}");
    // A call the server never answers is answered by the gateway after the timeout.
    let silent = gw.call(4, "whmcs_silent", json!({}));
    assert_eq!(silent["error"]["code"], -32000, "{silent}");
    assert!(silent["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did not answer within 1 s"));
    assert_eq!(
        text(&gw.call(5, "whmcs_get_ticket", json!({}))),
        "ran whmcs_get_ticket"
    );
    let (status, stderr) = gw.finish();
    assert!(status.success(), "{stderr}");
}

#[test]
fn refusals_are_valid_results_on_2026_07_28() {
    let mut gw = Session::go_like(POLICY, &[]);
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    let answer = gw.request(
        1,
        "tools/call",
        json!({"name": "whmcs_close_client", "_meta": meta}),
    );
    assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
    assert_eq!(answer["result"]["structuredContent"]["code"], "rule_denied");
    let list = gw.request(2, "tools/list", json!({"_meta": meta}));
    assert_eq!(list["result"]["cacheScope"], "private", "{list}");
    // A 2025 session gets no 2026 members.
    gw.handshake();
    let answer = gw.call(3, "whmcs_close_client", json!({}));
    assert!(answer["result"].get("resultType").is_none(), "{answer}");
    gw.finish();
}

#[test]
fn help_exits_zero_and_a_missing_grant_is_reported_at_start() {
    let help = Command::new(binary())
        .args(["gateway", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: mcp-policy gateway"));

    let gw = Session::start(POLICY, &[], &gateway::go_like_server());
    let (_, stderr) = gw.finish();
    assert!(stderr.contains("no --grant given"), "{stderr}");
}

#[test]
fn the_shipped_policy_asks_approval_for_closing_a_ticket_in_any_spelling() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/whmcs.json"
    );
    let policy: mcp_policy::Policy = std::fs::read_to_string(path).unwrap().parse().unwrap();
    let engine = mcp_policy::Engine::new(policy);
    for status in ["Closed", "closed", "CLOSED", " closed "] {
        let args = json!({"ticket_id": 1, "status": status});
        let call = mcp_policy::ToolCall::new("whmcs_update_ticket")
            .grant("g")
            .arguments(&args);
        assert_eq!(engine.peek(&call).code(), "approval_required", "{status:?}");
    }
    for priority in ["Emergency", "emergency"] {
        let args = json!({"ticket_id": 1, "priority": priority});
        let call = mcp_policy::ToolCall::new("whmcs_update_ticket")
            .grant("g")
            .arguments(&args);
        assert_eq!(engine.peek(&call).code(), "deny_condition", "{priority:?}");
    }
    let _ = Duration::ZERO;
}
