//! The stdio gateway against this round's attacks, each through the real gateway process
//! in front of the Go-like server (`tests/servers/go_like_server.py`), which reads names
//! ignoring case and numbers leniently and logs whatever reaches it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::gateway;

use gateway::{go_like_server, modern_call, text, Session};
use serde_json::{json, Value};

fn sync(gw: &mut Session, id: u64) {
    let pong = gw.request(id, "ping", json!({}));
    assert!(pong["result"].is_object(), "{pong}");
}

#[test]
fn annotation_rules_are_case_guarded_too() {
    // whmcs_update_ticket is annotated not destructive: the annotation rule decides it.
    let policy = r#"{"version":"1","default":"deny","annotations":[
      {"match":{"destructiveHint":false},
       "deny_if":[{"path":"args.priority","op":"eq","value":"Emergency"}],
       "limits":[{"window":"hour","max":30,"key":"args.ticket_id"}]}]}"#;
    let mut gw = Session::go_like(policy, &[]);
    gw.handshake();
    gw.request(1, "tools/list", json!({}));
    for (id, args) in [
        (2, json!({"Priority": "Emergency", "ticket_id": 1})),
        (3, json!({"priority": "Low", "Ticket_ID": 2})),
    ] {
        let answer = gw.call(id, "whmcs_update_ticket", args.clone());
        assert_eq!(answer["error"]["code"], -32602, "{args}: {answer}");
    }
    assert_eq!(
        text(&gw.call(
            4,
            "whmcs_update_ticket",
            json!({"priority": "Low", "ticket_id": 1})
        )),
        "ran whmcs_update_ticket"
    );
    assert_eq!(gw.tools_run().len(), 1, "{:?}", gw.tools_run());
    gw.finish();
}

fn listing_gateway(mode: &str) -> Session {
    let policy = r#"{"version":"1","default":"allow","hide":["whmcs_delete_*"],
      "pins":{"whmcs_update_ticket":"sha256:d8e6b7f3d3e9b5d0b7c8b2f7a1c3e5d7f9a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9"}}"#;
    let mut server = go_like_server();
    server.push(mode.into());
    let mut gw = Session::start(policy, &["--grant", "g1"], &server);
    gw.handshake();
    gw
}

#[test]
fn a_listing_nested_in_a_listing_is_refused_never_relayed() {
    let mut gw = listing_gateway("--nested-listing");
    let answer = gw.request(1, "tools/list", json!({}));
    assert!(answer.get("result").is_none(), "{answer}");
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    let message = answer.to_string();
    assert!(
        !message.contains("whmcs_delete_client") && !message.contains("every client"),
        "{message}"
    );
    gw.finish();
}

#[test]
fn a_listing_with_case_variant_members_is_refused_never_relayed() {
    let mut gw = listing_gateway("--case-variant-listing");
    let answer = gw.request(1, "tools/list", json!({}));
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Tools"));
    assert!(
        !answer.to_string().contains("whmcs_delete_client"),
        "{answer}"
    );
    gw.finish();
}

#[test]
fn no_spelling_of_a_ticket_id_escapes_its_limit() {
    let policy = r#"{"version":"1","default":"deny","tools":{"whmcs_update_ticket":{"limits":[
      {"window":"hour","max":3,"key":"args.ticket_id"}]}}}"#;
    let mut gw = Session::go_like(policy, &[]);
    gw.handshake();
    let spellings = [
        json!(7),
        json!("7"),
        json!("07"),
        json!(" 7"),
        json!("+7"),
        json!("0_7"),
        json!("7\n"),
        json!("7.0"),
        json!(7),
        json!("7"),
        json!(7),
    ];
    for (id, spelling) in spellings.iter().enumerate() {
        gw.call(
            id as u64 + 1,
            "whmcs_update_ticket",
            json!({"ticket_id": spelling}),
        );
    }
    sync(&mut gw, 99);
    // A server reading ticket_id as an integer saw ticket 7 updated at most 3 times.
    assert_eq!(gw.tools_run().len(), 3, "{:?}", gw.tools_run());
    gw.finish();
}

#[test]
fn argument_values_stay_out_of_the_audit_log_and_refusals() {
    let policy = r#"{"version":"1","default":"deny","tools":{"whmcs_add_credit":{"limits":[
      {"window":"hour","max":1,"key":"args.ticket_id"},
      {"window":"day","max":500,"cost":"args.amount"}]}}}"#;
    let dir = std::env::temp_dir().join(format!("mcp-policy-audit-values-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.jsonl");
    let audit_flag = audit.display().to_string();
    let mut gw = Session::go_like(policy, &["--audit", &audit_flag]);
    gw.handshake();
    let secret = "PASSWORD=hunter2";
    let answers = [
        gw.call(
            1,
            "whmcs_add_credit",
            json!({"ticket_id": secret.repeat(40), "amount": 1}),
        ),
        gw.call(
            2,
            "whmcs_add_credit",
            json!({"ticket_id": 5, "amount": secret}),
        ),
        gw.call(
            3,
            "whmcs_add_credit",
            json!({"ticket_id": {"card": "4111111111111111"}, "amount": 1}),
        ),
        gw.call(4, "whmcs_add_credit", json!({"ticket_id": 5, "amount": 1})),
        gw.call(5, "whmcs_add_credit", json!({"ticket_id": 5, "amount": 1})),
    ];
    for (answer, expected) in answers
        .iter()
        .zip(["invalid_key", "invalid_cost", "invalid_key"])
    {
        assert_eq!(
            answer["result"]["structuredContent"]["code"], expected,
            "{answer}"
        );
    }
    let all = answers.iter().map(Value::to_string).collect::<String>();
    assert!(!all.contains("hunter2") && !all.contains("4111"), "{all}");
    gw.finish();
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(!log.contains("hunter2") && !log.contains("4111"), "{log}");
    // The limited keyed call names its key value once: in limit.key.
    let limited: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["decision"] == "limit")
        .unwrap();
    assert_eq!(limited["limit"]["key"], 5);
    assert!(
        !limited["reason"].as_str().unwrap().contains(" 5"),
        "{limited}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Asks approval of a 2026-07-28 call through the gateway: the sealed state the client
/// must carry back.
fn ask(gw: &mut Session, id: u64, args: &Value) -> String {
    gw.send(&modern_call(id, "whmcs_add_credit", args, json!({})));
    let answer = gw.next();
    assert_eq!(answer["result"]["resultType"], "input_required", "{answer}");
    answer["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn retry(gw: &mut Session, id: u64, args: &Value, state: &str, action: Value) -> Value {
    gw.send(&modern_call(
        id,
        "whmcs_add_credit",
        args,
        json!({"requestState": state, "inputResponses": {"approval": action}}),
    ));
    gw.next()
}

fn accept() -> Value {
    json!({"action": "accept", "content": {"approve": true}})
}

fn code(answer: &Value) -> Value {
    answer["result"]["structuredContent"]["code"].clone()
}

const APPROVALS: &str = r#"{"version":"1","default":"deny","tools":{
  "whmcs_add_credit":{"action":"require_approval","reason":"credit needs a person"}}}"#;

#[test]
fn approvals_bind_exact_numbers_are_used_up_by_a_decline_and_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("mcp-policy-ledger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("approval.key");
    std::fs::write(&key, "5".repeat(64)).unwrap();
    let key_flag = key.display().to_string();
    let flags = ["--approval-key", key_flag.as_str(), "--session", "s1"];
    let mut gw = Session::go_like(APPROVALS, &flags);
    gw.wait_for_stderr("replicas must not share");

    // Approved for client ...992; the call sent names ...993.
    let approved = json!({"client_id": 9007199254740992_u64, "amount": 5});
    let other = json!({"client_id": 9007199254740993_u64, "amount": 5});
    let state = ask(&mut gw, 1, &approved);
    assert_eq!(
        code(&retry(&mut gw, 2, &other, &state, accept())),
        "approval_invalid"
    );
    // A decline uses the state up.
    let declined = ask(&mut gw, 3, &approved);
    let answer = retry(
        &mut gw,
        4,
        &approved,
        &declined,
        json!({"action": "decline"}),
    );
    assert_eq!(code(&answer), "approval_declined");
    assert_eq!(
        code(&retry(&mut gw, 5, &approved, &declined, accept())),
        "approval_invalid"
    );
    // The first state, accepted for its own arguments, runs once.
    assert_eq!(
        text(&retry(&mut gw, 6, &approved, &state, accept())),
        "ran whmcs_add_credit"
    );
    sync(&mut gw, 7);
    assert_eq!(
        gw.tools_run(),
        [("whmcs_add_credit".to_string(), approved.clone())],
        "exactly the approved arguments"
    );
    gw.finish();

    // A restarted gateway with the same key and counts in memory: still used.
    let mut gw = Session::go_like(APPROVALS, &flags);
    assert_eq!(
        code(&retry(&mut gw, 8, &approved, &state, accept())),
        "approval_invalid"
    );
    sync(&mut gw, 9);
    assert!(gw.tools_run().is_empty());
    gw.finish();
    let _ = std::fs::remove_dir_all(&dir);
}
