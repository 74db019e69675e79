//! `mcp::Relay`'s approval protocol: an accepted approval forwards the call once, declines
//! and bad states never reach the server, limits still apply, clients that cannot elicit,
//! servers that ask more input, and older clients asked with a request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/modern_call.rs"]
mod common_call;

#[path = "common/relay_output.rs"]
mod relay_output;
use relay_output::parse;

use mcp_policy::mcp::*;
use mcp_policy::{Engine, ManualClock};
use serde_json::{json, Value};
use std::time::Duration;

const POLICY: &str = r#"{"version": "1", "tools": {
    "whmcs_send_email": {"action": "require_approval", "reason": "emails are reviewed",
        "limits": [{"window": "minute", "max": 2}]},
    "whmcs_report": {"limits": [{"window": "minute", "max": 1}]}}}"#;

fn relay() -> (Relay, ManualClock) {
    let clock = ManualClock::new();
    let engine = Engine::builder(POLICY.parse().unwrap())
        .clock(clock.clone())
        .build();
    let key = ApprovalKey::from_hex(&"7".repeat(64)).unwrap();
    let relay = Relay::builder(engine)
        .grant("g1")
        .clock(clock.clone())
        .approvals(Approvals::new(key).timeout(Duration::from_secs(5)))
        .build();
    (relay, clock)
}

fn modern(id: i64, args: Value, extra: Value) -> Vec<u8> {
    modern_call("whmcs_send_email", id, args, extra)
}

fn modern_call(tool: &str, id: i64, args: Value, extra: Value) -> Vec<u8> {
    common_call::modern_call(id, tool, &args, extra).into_bytes()
}

fn accept() -> Value {
    json!({"approval": {"action": "accept", "content": {"approve": true}}})
}

/// The sealed state of an `InputRequiredResult`.
fn ask(relay: &Relay, args: Value) -> String {
    let out = relay.from_client(&modern(1, args, json!({})));
    assert!(out.to_server.is_empty(), "{out:?}");
    let answer = parse(&out.to_client[0]);
    assert_eq!(answer["result"]["resultType"], "input_required", "{answer}");
    let ask = &answer["result"]["inputRequests"]["approval"];
    assert_eq!(ask["method"], "elicitation/create");
    assert!(ask["params"]["message"]
        .as_str()
        .unwrap()
        .contains("emails are reviewed"));
    answer["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn retry(relay: &Relay, args: Value, state: &str, responses: Value) -> Output {
    relay.from_client(&modern(
        2,
        args,
        json!({"requestState": state, "inputResponses": responses}),
    ))
}

fn refused_code(out: &Output) -> Value {
    assert!(out.to_server.is_empty(), "{out:?}");
    parse(&out.to_client[0])["result"]["structuredContent"]["code"].clone()
}

#[test]
fn an_accepted_approval_forwards_the_call_once_without_the_approval() {
    let (relay, _) = relay();
    let args = json!({"client_id": 7});
    let state = ask(&relay, args.clone());
    let out = retry(&relay, args.clone(), &state, accept());
    assert_eq!(out.to_server.len(), 1, "{out:?}");
    let sent = parse(&out.to_server[0]);
    assert_eq!(sent["params"]["arguments"], args);
    assert!(sent["params"].get("requestState").is_none());
    assert!(sent["params"].get("inputResponses").is_none());
    // The server's answer reaches a 2026-07-28 client as a complete result.
    let answer = relay.from_server(
        json!({"jsonrpc": "2.0", "id": sent["id"], "result": {"content": []}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        parse(&answer.to_client[0])["result"]["resultType"],
        "complete"
    );
    // The same state again: used.
    let again = retry(&relay, args, &state, accept());
    assert_eq!(refused_code(&again), "approval_invalid");
}

#[test]
fn declines_and_bad_states_never_reach_the_server() {
    let (relay, clock) = relay();
    let args = json!({"client_id": 7});
    for answer in [
        json!({"approval": {"action": "decline"}}),
        json!({"approval": {"action": "cancel"}}),
        json!({"approval": {"action": "accept", "content": {"approve": false}}}),
        json!({}),
    ] {
        let state = ask(&relay, args.clone());
        assert_eq!(
            refused_code(&retry(&relay, args.clone(), &state, answer)),
            "approval_declined"
        );
    }
    let state = ask(&relay, args.clone());
    let changed = retry(&relay, json!({"client_id": 8}), &state, accept());
    assert_eq!(refused_code(&changed), "approval_invalid");
    let mut tampered = state.clone();
    tampered.insert(STATE_PREFIX.len() + 3, 'x');
    assert_eq!(
        refused_code(&retry(&relay, args.clone(), &tampered, accept())),
        "approval_invalid"
    );
    clock.advance(Duration::from_secs(601));
    assert_eq!(
        refused_code(&retry(&relay, args, &state, accept())),
        "approval_invalid"
    );
}

#[test]
fn limits_still_apply_to_approved_calls() {
    let (relay, _) = relay();
    for expected in [true, true, false] {
        let args = json!({"client_id": 7});
        let state = ask(&relay, args.clone());
        let out = retry(&relay, args, &state, accept());
        assert_eq!(out.to_server.len() == 1, expected, "{out:?}");
        if !expected {
            assert_eq!(refused_code(&out), "rate_limited");
        }
    }
}

#[test]
fn a_client_that_cannot_elicit_gets_approval_required() {
    let (relay, _) = relay();
    let line = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "whmcs_send_email", "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let out = relay.from_client(line.to_string().as_bytes());
    assert_eq!(refused_code(&out), "approval_required");
    assert!(out.to_client[0].contains("cannot show approval requests"));
}

/// The server answers `sent` with `input_required` and its own state; the client gets
/// the gateway's state instead.
fn server_asks(relay: &Relay, sent: &Value) -> String {
    let answer = json!({"jsonrpc": "2.0", "id": sent["id"], "result": {
        "resultType": "input_required", "requestState": "server-state-1",
        "inputRequests": {"which": {"method": "elicitation/create", "params": {"message": "which one?"}}}}});
    let out = relay.from_server(answer.to_string().as_bytes());
    let result = &parse(&out.to_client[0])["result"];
    assert_eq!(
        result["inputRequests"]["which"]["params"]["message"],
        "which one?"
    );
    let state = result["requestState"].as_str().unwrap().to_owned();
    assert!(state.starts_with(STATE_PREFIX), "{state}");
    state
}

#[test]
fn a_server_asking_for_input_gets_its_state_back_and_the_retry_is_not_charged_again() {
    let (relay, _) = relay();
    let args = json!({"month": 11});
    let out = relay.from_client(&modern_call("whmcs_report", 1, args.clone(), json!({})));
    let sent = parse(&out.to_server[0]);
    let state = server_asks(&relay, &sent);
    let answers = json!({"which": {"action": "accept", "content": {"pick": "a"}}});
    let retry = |id| {
        relay.from_client(&modern_call(
            "whmcs_report",
            id,
            args.clone(),
            json!({"requestState": state, "inputResponses": answers}),
        ))
    };
    // One call a minute: charging the retry again would refuse it.
    let out = retry(2);
    assert_eq!(out.to_server.len(), 1, "{out:?}");
    let sent = parse(&out.to_server[0]);
    assert_eq!(sent["params"]["requestState"], "server-state-1");
    assert_eq!(sent["params"]["inputResponses"], answers);
    assert_eq!(
        refused_code(&retry(3)),
        "approval_invalid",
        "a continuation works once"
    );
    // A new call is charged: the one unit is used.
    let out = relay.from_client(&modern_call("whmcs_report", 4, args, json!({})));
    assert_eq!(refused_code(&out), "rate_limited");
}

#[test]
fn an_approved_call_the_server_asks_more_of_stays_approved() {
    let (relay, _) = relay();
    let args = json!({"client_id": 7});
    let state = ask(&relay, args.clone());
    let out = retry(&relay, args.clone(), &state, accept());
    let sent = parse(&out.to_server[0]);
    let continuation = server_asks(&relay, &sent);
    let out = relay.from_client(&modern(
        3,
        args,
        json!({"requestState": continuation, "inputResponses": {"which": {"action": "accept"}}}),
    ));
    assert_eq!(out.to_server.len(), 1, "not asked again: {out:?}");
    assert_eq!(
        parse(&out.to_server[0])["params"]["requestState"],
        "server-state-1"
    );
}

#[test]
fn older_clients_are_asked_with_a_request_and_the_call_waits() {
    let (relay, clock) = relay();
    let init = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{"elicitation":{}}}}"#;
    relay.from_client(init);
    let call = br#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"whmcs_send_email","arguments":{"client_id":7}}}"#;
    let out = relay.from_client(call);
    assert!(out.to_server.is_empty());
    let ask = parse(&out.to_client[0]);
    assert_eq!(ask["method"], "elicitation/create");
    // Other traffic flows meanwhile.
    assert_eq!(
        relay
            .from_client(br#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#)
            .to_server
            .len(),
        1
    );
    let yes = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"approve": true}}});
    let out = relay.from_client(yes.to_string().as_bytes());
    let sent = parse(&out.to_server[0]);
    assert_eq!(sent["params"]["name"], "whmcs_send_email");
    // A decline, and a request nobody answers.
    let out = relay.from_client(call);
    let ask = parse(&out.to_client[0]);
    let no = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "decline"}});
    assert_eq!(
        refused_code(&relay.from_client(no.to_string().as_bytes())),
        "approval_declined"
    );
    relay.from_client(call);
    clock.advance(Duration::from_secs(6));
    let out = relay.expire();
    assert_eq!(refused_code(&out), "approval_declined");
    assert_eq!(parse(&out.to_client[0])["id"], "c1");
}
