//! The `scopes` step: a rule (or `all_tools`) naming OAuth scopes refuses a caller whose
//! token lacks them, with `insufficient_scope`, before arguments are read or anything is
//! counted; and the policy file's `scopes` field, with its errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_policy::{Decision, DenyCode, Engine, ManualClock, Policy, ToolCall};
use serde_json::{json, Value};

fn engine(policy: Value) -> Engine {
    let policy = Policy::from_json(&policy.to_string()).unwrap_or_else(|e| panic!("{e}"));
    Engine::builder(policy).clock(ManualClock::new()).build()
}

fn refusal(decision: &Decision) -> (DenyCode, String) {
    match decision {
        Decision::Deny { code, reason, .. } => (*code, reason.to_string()),
        other => panic!("expected a denial, got {other}"),
    }
}

#[test]
fn a_caller_without_the_rules_scopes_is_refused_before_anything_is_counted() {
    let engine = engine(json!({"version": "1", "tools": {"t": {
        "scopes": ["tickets:write"],
        "require": [{"path": "args.n", "op": "lte", "value": 5}],
        "limits": [{"window": "minute", "max": 1}]}}}));
    let args = json!({"n": 99});
    let reader = ToolCall::new("t")
        .grant("g")
        .arguments(&args)
        .scopes(&["tickets:read"]);
    let (code, reason) = refusal(&engine.evaluate(&reader));
    assert_eq!(code, DenyCode::InsufficientScope, "{reason}");
    assert!(
        reason.contains("needs the OAuth scope(s) tickets:write"),
        "{reason}"
    );
    assert!(reason.contains("lacks tickets:write"), "{reason}");
    assert!(
        !reason.contains("99"),
        "argument values never reach a reason"
    );
    // No token at all: refused too (fail closed), saying so.
    let anonymous = ToolCall::new("t").grant("g");
    let (code, reason) = refusal(&engine.evaluate(&anonymous));
    assert_eq!(code, DenyCode::InsufficientScope);
    assert!(reason.contains("carries no token's scopes"), "{reason}");
    // Nothing was counted: the writer's first call has the whole limit.
    let small = json!({"n": 1});
    let writer = ToolCall::new("t")
        .grant("g")
        .arguments(&small)
        .scopes(&["tickets:read", "tickets:write"]);
    assert!(engine.evaluate(&writer).is_allowed());
    assert_eq!(engine.evaluate(&writer).code(), "rate_limited");
}

#[test]
fn all_tools_scopes_apply_to_every_tool_and_a_deny_still_comes_first() {
    let engine = engine(json!({"version": "1", "default": "allow",
        "all_tools": {"scopes": ["mcp"]},
        "tools": {"closed": {"action": "deny"}, "t": {"scopes": ["tickets:write"]}}}));
    let owned = vec!["mcp".to_owned()];
    let call = |tool| ToolCall::new(tool).scopes(&owned);
    assert!(engine.evaluate(&call("other")).is_allowed());
    assert_eq!(
        engine.evaluate(&ToolCall::new("other")).code(),
        "insufficient_scope"
    );
    let (_, reason) = refusal(&engine.evaluate(&call("t")));
    assert!(
        reason.contains("tickets:write mcp"),
        "both, the rule's first: {reason}"
    );
    assert_eq!(engine.evaluate(&call("closed")).code(), "rule_denied");
    assert_eq!(engine.peek(&call("t")).code(), "insufficient_scope");
}

#[test]
fn scopes_are_written_back_and_bad_ones_are_named() {
    let text = r#"{"version":"1","tools":{"t":{"scopes":["tickets:write","a/b"]}}}"#;
    let policy = Policy::from_json(text).unwrap();
    assert_eq!(
        policy.to_json_value()["tools"]["t"]["scopes"],
        json!(["tickets:write", "a/b"])
    );
    let bad = Policy::from_json(
        r#"{"version":"1","tools":{"t":{"scopes":["two words","x","x",7]},
            "d":{"action":"deny","scopes":["y"]}}}"#,
    )
    .unwrap_err();
    let text = bad.to_string();
    for expected in [
        "tools.t.scopes[0]",
        "printable ASCII",
        "tools.t.scopes[2]",
        "listed twice",
        "tools.t.scopes[3]",
        "tools.d.scopes",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let not_a_list = Policy::from_json(r#"{"version":"1","tools":{"t":{"scopes":"a"}}}"#);
    assert!(not_a_list
        .unwrap_err()
        .to_string()
        .contains("a list of OAuth scopes"));
}
