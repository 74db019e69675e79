//! Calls beyond tools through `Engine::explain`: the section's rule (no `all_tools`), a
//! resource's conditions reading its normalized URI, and a kind the policy has no key for.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_policy::{Action, Engine, Policy, ToolCall};
use serde_json::json;

fn engine() -> Engine {
    let policy: Policy = r#"{"version": "1", "default": "deny",
        "all_tools": {"limits": [{"counter": "all", "window": "minute", "max": 100}]},
        "resources": {"whmcs://desk/*": {
            "deny_if": [{"path": "uri.path", "op": "prefix", "value": "/admin"}]}},
        "server_requests": {"sampling/createMessage": {
            "deny_if": [{"path": "params.includeContext", "op": "eq", "value": "allServers"}]}}}"#
        .parse()
        .unwrap();
    Engine::new(policy)
}

#[test]
fn explain_follows_the_section_of_the_calls_kind() {
    let engine = engine();
    let why = engine.explain(&ToolCall::resource("WHMCS://Desk/tickets/../admin/x").grant("g"));
    assert_eq!(why.rule.as_ref().unwrap().key, "whmcs://desk/*");
    assert!(
        why.limits.is_empty(),
        "all_tools is for tools: {:?}",
        why.limits
    );
    assert_eq!(why.conditions[0].path, "uri.path");
    assert_eq!(
        why.conditions[0].seen,
        Some(json!("/admin/x")),
        "the normalized path"
    );
    assert!(why.conditions[0].holds);
    assert_eq!(why.decision.code(), "deny_condition");

    let params = json!({"includeContext": "thisServer"});
    let call = ToolCall::server_request("sampling/createMessage").arguments(&params);
    let why = engine.explain(&call);
    assert_eq!(why.action, Action::Allow);
    assert!(!why.conditions[0].holds);
    assert!(why.decision.is_allowed());

    // No `prompts` key: every prompt is allowed, whatever the default says.
    let why = engine.explain(&ToolCall::prompt("anything"));
    assert_eq!(why.action, Action::Allow);
    assert!(why.rule.is_none());
    assert!(why.decision.is_allowed());
}
