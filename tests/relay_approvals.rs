//! Approvals through `mcp::Relay`: what a person approved is exactly what runs, once.

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

use mcp_policy::mcp::{ApprovalKey, ApprovalLedger, Approvals, Output, Relay};
use mcp_policy::{Clock, Engine, ManualClock};
use serde_json::{json, Value};

const POLICY: &str = r#"{"version": "1", "tools": {
    "whmcs_send_email": {"action": "require_approval", "reason": "emails are reviewed"},
    "whmcs_add_credit": {"action": "require_approval"}}}"#;

fn key() -> ApprovalKey {
    ApprovalKey::from_hex(&"7".repeat(64)).unwrap()
}

fn relay_with(approvals: Approvals, clock: &ManualClock) -> Relay {
    let engine = Engine::builder(POLICY.parse().unwrap())
        .clock(clock.clone())
        .build();
    Relay::builder(engine)
        .grant("g1")
        .clock(clock.clone())
        .approvals(approvals)
        .build()
}

fn modern(tool: &str, args: &Value, extra: Value) -> Vec<u8> {
    common_call::modern_call(1, tool, args, extra).into_bytes()
}

/// Asks for approval; the sealed state and the message shown to the person.
fn ask(relay: &Relay, tool: &str, args: &Value) -> (String, String) {
    let out = relay.from_client(&modern(tool, args, json!({})));
    assert!(out.to_server.is_empty(), "{out:?}");
    let answer = parse(&out.to_client[0]);
    let result = &answer["result"];
    assert_eq!(result["resultType"], "input_required", "{answer}");
    (
        result["requestState"].as_str().unwrap().to_owned(),
        result["inputRequests"]["approval"]["params"]["message"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

fn answer(relay: &Relay, tool: &str, args: &Value, state: &str, action: Value) -> Output {
    relay.from_client(&modern(
        tool,
        args,
        json!({"requestState": state, "inputResponses": {"approval": action}}),
    ))
}

fn accept() -> Value {
    json!({"action": "accept", "content": {"approve": true}})
}

fn code(out: &Output) -> Value {
    assert!(out.to_server.is_empty(), "{out:?}");
    parse(&out.to_client[0])["result"]["structuredContent"]["code"].clone()
}

#[test]
fn an_approval_for_one_big_integer_never_runs_the_call_with_its_neighbour() {
    let clock = ManualClock::new();
    let relay = relay_with(Approvals::new(key()), &clock);
    for (approved, sent) in [
        (json!(9007199254740992_u64), json!(9007199254740993_u64)),
        (json!(u64::MAX), json!(u64::MAX - 1)),
        (
            json!(1234567890123456789_u64),
            json!(1234567890123456788_u64),
        ),
        (json!(-9007199254740993_i64), json!(-9007199254740992_i64)),
    ] {
        let (state, _) = ask(&relay, "whmcs_add_credit", &json!({"client_id": approved}));
        let out = answer(
            &relay,
            "whmcs_add_credit",
            &json!({"client_id": sent}),
            &state,
            accept(),
        );
        assert_eq!(
            code(&out),
            "approval_invalid",
            "{approved} approved, {sent} sent"
        );
        let out = answer(
            &relay,
            "whmcs_add_credit",
            &json!({"client_id": approved}),
            &state,
            accept(),
        );
        let forwarded = parse(&out.to_server[0]);
        assert_eq!(forwarded["params"]["arguments"]["client_id"], approved);
    }
}

#[test]
fn a_decline_uses_the_state_up() {
    let clock = ManualClock::new();
    let relay = relay_with(Approvals::new(key()), &clock);
    let args = json!({"to": "a@b.test"});
    for refusal in [json!({"action": "decline"}), json!({"action": "cancel"})] {
        let (state, _) = ask(&relay, "whmcs_send_email", &args);
        let out = answer(&relay, "whmcs_send_email", &args, &state, refusal);
        assert_eq!(code(&out), "approval_declined");
        let out = answer(&relay, "whmcs_send_email", &args, &state, accept());
        assert_eq!(
            code(&out),
            "approval_invalid",
            "a declined state was accepted later"
        );
    }
}

#[test]
fn the_ledger_keeps_an_approval_single_use_across_a_restart() {
    let path = std::env::temp_dir().join(format!("relay-ledger-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let clock = ManualClock::new();
    let start = || {
        let now = clock.now().as_nanos() / 1_000_000;
        let ledger = ApprovalLedger::open(&path, now).unwrap();
        relay_with(Approvals::new(key()).ledger(ledger), &clock)
    };
    let args = json!({"to": "a@b.test"});
    let relay = start();
    let (state, _) = ask(&relay, "whmcs_send_email", &args);
    let out = answer(&relay, "whmcs_send_email", &args, &state, accept());
    assert_eq!(out.to_server.len(), 1);
    drop(relay);
    // A new process with the same key, its counts in memory anew.
    let relay = start();
    let out = answer(&relay, "whmcs_send_email", &args, &state, accept());
    assert_eq!(code(&out), "approval_invalid");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn every_argument_is_shown_by_name_and_deceptive_characters_escaped() {
    let clock = ManualClock::new();
    let relay = relay_with(Approvals::new(key()), &clock);
    let args = json!({"aaa_padding": "x".repeat(100_000), "bcc": "everyone@evil.test",
        "subject": "Invoice \u{202e}fdp.exe", "to": "client@example.test"});
    let (_, message) = ask(&relay, "whmcs_send_email", &args);
    for shown in [
        r#""bcc": "everyone@evil.test""#,
        r#""to": "client@example.test""#,
        r"Invoice \u{202e}fdp.exe",
        "more characters not shown",
    ] {
        assert!(message.contains(shown), "{shown} missing from {message}");
    }
    assert!(!message.contains('\u{202e}'));
    assert!(message.len() < 4_000, "{} bytes", message.len());
}

/// Older revisions hold the call while the person decides: bounded in number and bytes.
#[test]
fn held_calls_are_bounded_in_number_and_bytes() {
    let clock = ManualClock::new();
    let relay = relay_with(Approvals::new(key()).max_held(3, 10_000), &clock);
    relay.from_client(
        br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{"elicitation":{}}}}"#,
    );
    let call = |id: u64, args: Value| {
        relay.from_client(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "whmcs_send_email", "arguments": args}})
            .to_string()
            .as_bytes(),
        )
    };
    let held = |out: &Output| parse(&out.to_client[0])["method"] == "elicitation/create";
    let big = call(1, json!({"body": "x".repeat(20_000)}));
    assert_eq!(code(&big), "approval_required");
    assert!(big.to_client[0].contains("bytes"), "{:?}", big.to_client);
    let asks: Vec<Output> = (2..5).map(|id| call(id, json!({"to": "a"}))).collect();
    assert!(asks.iter().all(held));
    let fourth = call(5, json!({"to": "a"}));
    assert_eq!(code(&fourth), "approval_required");
    // An answer frees a place.
    let ask_id = parse(&asks[0].to_client[0])["id"].clone();
    let no = json!({"jsonrpc": "2.0", "id": ask_id, "result": {"action": "decline"}});
    relay.from_client(no.to_string().as_bytes());
    assert!(held(&call(6, json!({"to": "a"}))));
}
