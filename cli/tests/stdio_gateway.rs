//! End to end: the stdio gateway example between a scripted MCP client and the example
//! WHMCS server, both real processes speaking newline-delimited JSON-RPC.
//!
//! `cargo test` builds the examples this test runs (target/<profile>/examples/).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::gateway;

use gateway::{text, Session};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const POLICY: &str = r#"{"version":"1","default":"deny","hide":["whmcs_delete_*"],"tools":{
  "whmcs_get_*":{},"whmcs_list_*":{},
  "whmcs_update_ticket":{"rate_limit":"2/minute"},
  "whmcs_add_ticket_reply":{"limits":[{"counter":"replies","window":"minute","max":1,"scope":"grant"}]},
  "whmcs_close_client":{"action":"deny","reason":"closing accounts is never automated"},
  "whmcs_send_email":{"action":"require_approval","reason":"emails are reviewed"}}}"#;

#[test]
fn allowed_calls_reach_the_server_and_come_back_unchanged() {
    let mut gw = Session::whmcs(POLICY);
    gw.handshake();
    let answer = gw.call(1, "whmcs_get_ticket", json!({"ticket_id": 1}));
    assert_eq!(
        answer,
        json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text",
        "text": "#1 Ticket 1: invoice question — status Open, priority Medium, 0 replies"}], "isError": false}})
    );
    assert_eq!(gw.server_log(), ["whmcs_get_ticket"]);
    let (status, _) = gw.finish();
    assert!(status.success());
}

#[test]
fn refused_calls_are_answered_by_the_gateway_and_never_reach_the_server() {
    let mut gw = Session::whmcs(POLICY);
    gw.handshake();

    let denied = gw.call(1, "whmcs_close_client", json!({"client_id": 7}));
    assert_eq!(denied["result"]["isError"], true);
    assert_eq!(denied["result"]["structuredContent"]["code"], "rule_denied");
    assert!(text(&denied).starts_with("denied: closing accounts is never automated."));

    assert_eq!(
        gw.call(2, "whmcs_delete_client", json!({}))["result"]["structuredContent"]["code"],
        "hidden"
    );
    assert_eq!(
        gw.call(3, "whmcs_unknown", json!({}))["result"]["structuredContent"]["code"],
        "default_denied"
    );

    let approval = gw.call(4, "whmcs_send_email", json!({"client_id": 7}));
    assert_eq!(
        approval["result"]["structuredContent"]["code"],
        "approval_required"
    );
    assert!(text(&approval).starts_with("needs approval: emails are reviewed."));

    for id in 5..7 {
        assert_eq!(
            gw.call(
                id,
                "whmcs_update_ticket",
                json!({"ticket_id": 1, "status": "Answered"})
            )["result"]["isError"],
            false
        );
    }
    let limited = gw.call(
        7,
        "whmcs_update_ticket",
        json!({"ticket_id": 1, "status": "Answered"}),
    );
    assert_eq!(
        limited["result"]["structuredContent"]["code"],
        "rate_limited"
    );
    assert!(
        text(&limited).starts_with("rate limit: retry in "),
        "{limited}"
    );

    assert_eq!(
        gw.server_log(),
        ["whmcs_update_ticket", "whmcs_update_ticket"],
        "only the two allowed calls ran"
    );
    gw.finish();
}

#[test]
fn hidden_and_denied_tools_are_absent_from_tools_list() {
    let mut gw = Session::whmcs(POLICY);
    gw.handshake();
    let list = gw.request(1, "tools/list", json!({}));
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "whmcs_list_tickets",
            "whmcs_get_ticket",
            "whmcs_update_ticket",
            "whmcs_add_ticket_reply",
            "whmcs_send_email"
        ]
    );
    gw.finish();
}

#[test]
fn a_failing_call_counts_unless_the_limit_refunds_failures() {
    // One reply a minute. The tool runs and fails (no such ticket): it still counts, so
    // a stream of failing calls cannot get past the limit.
    let mut gw = Session::whmcs(POLICY);
    gw.handshake();
    let failed = gw.call(
        1,
        "whmcs_add_ticket_reply",
        json!({"ticket_id": 99, "message": "hello"}),
    );
    assert_eq!(failed["result"]["isError"], true);
    assert_eq!(text(&failed), "no such ticket", "the server's own answer");
    let limited = gw.call(
        2,
        "whmcs_add_ticket_reply",
        json!({"ticket_id": 1, "message": "hello"}),
    );
    assert_eq!(
        limited["result"]["structuredContent"]["code"],
        "rate_limited"
    );
    gw.finish();

    // With "refund": "failed" the failed call is given back.
    let mut gw = Session::whmcs(&POLICY.replace(
        r#""max":1,"scope":"grant""#,
        r#""max":1,"scope":"grant","refund":"failed""#,
    ));
    gw.handshake();
    gw.call(
        1,
        "whmcs_add_ticket_reply",
        json!({"ticket_id": 99, "message": "hello"}),
    );
    let ok = gw.call(
        2,
        "whmcs_add_ticket_reply",
        json!({"ticket_id": 1, "message": "hello"}),
    );
    assert_eq!(text(&ok), "reply added (1 in total)");
    gw.finish();
}

#[test]
fn a_call_the_server_never_ran_is_refunded() {
    // The server answers an unknown tool with a JSON-RPC error: nothing ran.
    let mut gw = Session::whmcs(&POLICY.replace(
        "\"whmcs_get_*\":{}",
        "\"whmcs_get_*\":{\"rate_limit\":\"1/minute\"}",
    ));
    gw.handshake();
    let unknown = gw.call(1, "whmcs_get_nothing", json!({}));
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    assert_eq!(
        gw.call(2, "whmcs_get_ticket", json!({"ticket_id": 2}))["result"]["isError"],
        false
    );
    gw.finish();
}

#[test]
fn a_garbage_line_gets_a_parse_error_and_the_gateway_keeps_running() {
    let mut gw = Session::whmcs(POLICY);
    gw.handshake();
    gw.send("this is not json");
    let error = gw.next();
    assert_eq!(error["error"]["code"], -32700);
    assert_eq!(error["id"], Value::Null);
    let malformed = gw.request(1, "tools/call", json!({"name": 5}));
    assert_eq!(malformed["error"]["code"], -32602);
    assert_eq!(
        gw.call(2, "whmcs_get_ticket", json!({"ticket_id": 1}))["result"]["isError"],
        false
    );
    let (status, _) = gw.finish();
    assert!(status.success());
}

#[test]
fn the_policy_file_is_reloaded_when_it_changes() {
    let mut gw = Session::whmcs(POLICY);
    gw.handshake();
    assert_eq!(
        gw.call(1, "whmcs_get_ticket", json!({"ticket_id": 1}))["result"]["isError"],
        false
    );
    // Make sure the new file gets a different modification time.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(
        gw.dir.join("policy.json"),
        r#"{"version":"1","default":"deny"}"#,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 2;
    loop {
        let answer = gw.call(id, "whmcs_get_ticket", json!({"ticket_id": 1}));
        if answer["result"]["structuredContent"]["code"] == "default_denied" {
            break;
        }
        assert!(Instant::now() < deadline, "the policy was not reloaded");
        id += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    // A broken edit keeps the last good policy.
    std::fs::write(gw.dir.join("policy.json"), "{ broken").unwrap();
    gw.wait_for_stderr("keeping the previous policy");
    assert_eq!(
        gw.call(1000, "whmcs_get_ticket", json!({}))["result"]["structuredContent"]["code"],
        "default_denied"
    );
    let (_, stderr) = gw.finish();
    assert!(stderr.contains("keeping the previous policy"), "{stderr}");
}

#[test]
fn the_server_exiting_ends_the_gateway_with_a_clear_message() {
    let gw = Session::start(
        POLICY,
        &["--grant", "g1"],
        &["sh".into(), "-c".into(), "exit 3".into()],
    );
    gw.wait_for_stderr("the MCP server exited");
    let (status, stderr) = gw.finish();
    assert!(!status.success());
    assert!(
        stderr.contains("the MCP server exited (exit status: 3)"),
        "{stderr}"
    );
}

#[test]
fn a_server_that_cannot_start_is_a_clear_error() {
    let gw = Session::start(POLICY, &["--grant", "g1"], &["/nonexistent/server".into()]);
    gw.wait_for_stderr("cannot start");
    let (status, stderr) = gw.finish();
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("cannot start the MCP server \"/nonexistent/server\""),
        "{stderr}"
    );
}
