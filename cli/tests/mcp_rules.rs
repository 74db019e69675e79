//! Pins, annotation rules and per-argument limits through the real gateway process, in
//! front of the Go-like server (whose `--rug-pull` changes a tool's description after the
//! first `tools/list`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::gateway;

use gateway::{go_like_server, Session};
use mcp_policy::mcp::tool_digest;
use serde_json::{json, Value};

fn listed(answer: &Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("not a tools/list result: {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn refusal_code(answer: &Value) -> &str {
    answer["result"]["structuredContent"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not a refusal: {answer}"))
}

/// The server's first listing of `whmcs_update_ticket`, read through a gateway that
/// allows everything: what an operator pins after reviewing it.
fn reviewed_ticket_tool() -> Value {
    let mut gw = Session::start(
        r#"{"version": "1", "default": "allow"}"#,
        &["--grant", "g1"],
        &go_like_server(),
    );
    gw.handshake();
    let answer = gw.request(1, "tools/list", json!({}));
    let tool = answer["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "whmcs_update_ticket")
        .cloned()
        .unwrap();
    gw.finish();
    tool
}

fn rug_pull(on_drift: &str) -> Session {
    let policy = json!({"version": "1", "default": "allow", "on_drift": on_drift,
        "pins": {"whmcs_update_ticket": tool_digest(&reviewed_ticket_tool())}});
    let mut server = go_like_server();
    server.push("--rug-pull".into());
    let mut gw = Session::start(&policy.to_string(), &["--grant", "g1"], &server);
    gw.handshake();
    gw
}

fn runs_of(gw: &Session, tool: &str) -> usize {
    gw.tools_run().iter().filter(|(t, _)| t == tool).count()
}

#[test]
fn a_tool_whose_description_changes_is_hidden_and_never_reaches_the_server() {
    for on_drift in ["hide", "deny"] {
        let mut gw = rug_pull(on_drift);
        let first = gw.request(1, "tools/list", json!({}));
        assert!(
            listed(&first).contains(&"whmcs_update_ticket".to_owned()),
            "{on_drift}"
        );
        let before = gw.call(2, "whmcs_update_ticket", json!({"ticket_id": 1}));
        assert!(
            before["result"]["structuredContent"].is_null(),
            "{on_drift}: {before}"
        );
        assert_eq!(runs_of(&gw, "whmcs_update_ticket"), 1);

        let second = gw.request(3, "tools/list", json!({}));
        let names = listed(&second);
        assert!(
            !names.contains(&"whmcs_update_ticket".to_owned()),
            "{on_drift}: {names:?}"
        );
        assert!(names.contains(&"whmcs_get_ticket".to_owned()));
        let after = gw.call(4, "whmcs_update_ticket", json!({"ticket_id": 1}));
        assert_eq!(refusal_code(&after), "pin_drift", "{on_drift}");
        assert!(
            after["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("changed since it was pinned"),
            "{after}"
        );
        assert_eq!(
            runs_of(&gw, "whmcs_update_ticket"),
            1,
            "{on_drift}: the changed tool never ran"
        );
        gw.finish();
    }
}

#[test]
fn on_drift_require_approval_keeps_the_tool_listed_but_holds_its_calls() {
    let mut gw = rug_pull("require_approval");
    gw.request(1, "tools/list", json!({}));
    let second = gw.request(2, "tools/list", json!({}));
    assert!(listed(&second).contains(&"whmcs_update_ticket".to_owned()));
    // This client cannot elicit, so the call is refused as needing approval.
    let held = gw.call(3, "whmcs_update_ticket", json!({"ticket_id": 1}));
    assert_eq!(refusal_code(&held), "approval_required");
    assert_eq!(runs_of(&gw, "whmcs_update_ticket"), 0);
    gw.finish();
}

#[test]
fn a_pinned_tool_is_refused_until_the_gateway_has_seen_its_definition() {
    let mut gw = rug_pull("deny");
    let unseen = gw.call(1, "whmcs_update_ticket", json!({"ticket_id": 1}));
    assert_eq!(refusal_code(&unseen), "pin_drift");
    gw.request(2, "tools/list", json!({}));
    let seen = gw.call(3, "whmcs_update_ticket", json!({"ticket_id": 1}));
    assert!(seen["result"]["structuredContent"].is_null(), "{seen}");
    assert_eq!(runs_of(&gw, "whmcs_update_ticket"), 1);
    gw.finish();
}

#[test]
fn per_ticket_limits_hold_per_ticket() {
    let policy = json!({"version": "1", "default": "deny", "tools": {"whmcs_update_ticket": {"limits": [
        {"window": "hour", "max": 2, "scope": "grant", "key": "args.ticket_id"}]}}});
    let mut gw = Session::go_like(&policy.to_string(), &[]);
    gw.handshake();
    let mut id = 0;
    let mut call = |gw: &mut Session, ticket: Value| {
        id += 1;
        gw.call(
            id,
            "whmcs_update_ticket",
            json!({"ticket_id": ticket, "status": "Open"}),
        )
    };
    for _ in 0..2 {
        assert!(call(&mut gw, json!(7))["result"]["structuredContent"].is_null());
    }
    assert_eq!(refusal_code(&call(&mut gw, json!(7))), "rate_limited");
    assert!(
        call(&mut gw, json!(8))["result"]["structuredContent"].is_null(),
        "another ticket"
    );
    assert_eq!(refusal_code(&call(&mut gw, json!(null))), "invalid_key");
    let tickets: Vec<Value> = gw
        .tools_run()
        .into_iter()
        .map(|(_, args)| args["ticket_id"].clone())
        .collect();
    assert_eq!(tickets, [json!(7), json!(7), json!(8)]);
    gw.finish();
}

#[test]
fn unannotated_tools_are_treated_as_destructive() {
    let policy = json!({"version": "1", "default": "deny", "annotations": [
        {"match": {"readOnlyHint": true}, "action": "allow"},
        {"match": {"destructiveHint": true}, "action": "require_approval",
         "reason": "destructive tools need a person"},
        {"match": {"destructiveHint": false}, "action": "allow"}]});
    let mut gw = Session::go_like(&policy.to_string(), &[]);
    gw.handshake();
    gw.request(1, "tools/list", json!({}));
    assert!(gw.call(2, "whmcs_get_ticket", json!({}))["result"]["structuredContent"].is_null());
    assert!(gw.call(3, "whmcs_update_ticket", json!({}))["result"]["structuredContent"].is_null());
    let delete = gw.call(4, "whmcs_delete_client", json!({}));
    assert_eq!(refusal_code(&delete), "approval_required");
    assert!(delete["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("destructive tools need a person"));
    let ran: Vec<String> = gw.tools_run().into_iter().map(|(t, _)| t).collect();
    assert_eq!(ran, ["whmcs_get_ticket", "whmcs_update_ticket"]);
    gw.finish();
}
