//! The policy format: every field loads, means what it says, and
//! round-trips through `Serialize`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_policy::{Action, Policy};
use serde_json::json;

fn load(value: serde_json::Value) -> Policy {
    Policy::from_json(&value.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn round_trips(policy: &Policy) {
    let text = serde_json::to_string(policy).unwrap();
    let again = Policy::from_json(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(&again, policy, "{text}");
}

#[test]
fn the_bundled_example_policies_load_and_round_trip() {
    for file in [
        "examples/policies/seed.json",
        "examples/policies/whmcs.json",
    ] {
        let text = std::fs::read_to_string(file).unwrap();
        let policy = Policy::from_json(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        round_trips(&policy);
    }
}

#[test]
fn the_design_example_policy_loads() {
    let policy = load(json!({
      "version": "1",
      "default": "deny",
      "hide": ["whmcs_delete_*"],
      "all_tools": { "limits": [ { "window": "minute", "max": 120, "scope": "grant" } ] },
      "tools": {
        "whmcs_update_ticket": {
          "limits": [
            { "counter": "whmcs_update_ticket_rate", "window": "minute", "max": 30, "scope": "grant" }
          ],
          "deny_if":    [ { "path": "args.priority", "op": "eq", "value": "Emergency" } ],
          "approve_if": [ { "path": "args.status", "op": "in", "value": ["Closed"],
                            "reason": "closing a ticket needs a person" } ]
        },
        "whmcs_get_*": {},
        "whmcs_add_credit": {
          "require": [ { "path": "args.amount", "op": "lte", "value": 100 } ],
          "limits": [ { "counter": "credit_per_day", "window": "day", "max": 500,
                        "cost": "args.amount", "scope": "global" } ]
        },
        "whmcs_close_client": { "action": "deny", "reason": "never automated" },
        "whmcs_send_email": { "action": "require_approval", "rate_limit": "10/minute" }
      }
    }));
    round_trips(&policy);
    assert_eq!(policy.rule_keys().count(), 5);
}

#[test]
fn version_1_is_all_a_minimal_policy_needs() {
    let policy = load(json!({"version": "1"}));
    assert_eq!(
        policy.default_action(),
        Action::Deny,
        "default is deny when absent"
    );
    assert_eq!(policy.description(), None);
    assert_eq!(policy.rule_keys().count(), 0);
    round_trips(&policy);
}

#[test]
fn description_is_free_text() {
    let policy = load(json!({"version": "1", "description": "support desk"}));
    assert_eq!(policy.description(), Some("support desk"));
}

#[test]
fn default_takes_each_action() {
    for (name, action) in [
        ("allow", Action::Allow),
        ("deny", Action::Deny),
        ("require_approval", Action::RequireApproval),
    ] {
        let policy = load(json!({"version": "1", "default": name}));
        assert_eq!(policy.default_action(), action);
        round_trips(&policy);
    }
}

#[test]
fn hide_takes_names_and_globs() {
    let policy = load(json!({"version": "1", "hide": ["whmcs_delete_*", "debug_dump"]}));
    assert!(policy.is_hidden("whmcs_delete_client"));
    assert!(policy.is_hidden("whmcs_delete_"));
    assert!(policy.is_hidden("debug_dump"));
    assert!(!policy.is_hidden("debug_dump2"));
    assert!(!policy.is_hidden("whmcs_get_client"));
    round_trips(&policy);
}

#[test]
fn rule_keys_match_exactly_then_by_most_literal_glob_then_bytes() {
    let policy = load(json!({"version": "1", "tools": {
        "*": {}, "whmcs_*": {}, "whmcs_get_*": {}, "whmcs_get_ticket": {}, "*_ticket": {},
        "x*z": {}, "*yz": {}
    }}));
    assert_eq!(
        policy.rule_for("whmcs_get_ticket"),
        Some("whmcs_get_ticket")
    );
    assert_eq!(policy.rule_for("whmcs_get_client"), Some("whmcs_get_*"));
    // "*_ticket" has 7 literal characters, "whmcs_*" only 6.
    assert_eq!(policy.rule_for("whmcs_update_ticket"), Some("*_ticket"));
    assert_eq!(policy.rule_for("whmcs_add_credit"), Some("whmcs_*"));
    assert_eq!(policy.rule_for("other"), Some("*"));
    // "*yz" and "x*z" both have 2 literals: "*yz" sorts first by bytes.
    assert_eq!(policy.rule_for("xyz"), Some("*yz"));
}

#[test]
fn every_rule_field_loads_and_round_trips() {
    let policy = load(json!({"version": "1", "tools": {
        "t": {
            "action": "require_approval",
            "reason": "why",
            "require": [{"path": "args.a", "op": "exists", "value": true}],
            "deny_if": [{"path": "args.b", "op": "regex", "value": "^x+$", "reason": "no x"}],
            "approve_if": [{"path": "args.c.0", "op": "gt", "value": 1.5}],
            "limits": [{"counter": "c", "window": 90, "max": 7, "scope": "agent", "cost": 2}],
            "rate_limit": {"max": 3, "window": "hour", "scope": "global"}
        },
        "u": {"action": "deny"},
        "v": {"rate_limit": "10/second"}
    }}));
    round_trips(&policy);
    let written = policy.to_json_value();
    assert_eq!(written["tools"]["u"], json!({"action": "deny"}));
    assert_eq!(
        written["tools"]["v"]["rate_limit"],
        json!({"max": 10, "window": "second", "scope": "session"})
    );
    assert_eq!(written["tools"]["t"]["limits"][0]["window"], json!(90));
}

#[test]
fn an_empty_rule_allows_and_writes_back_as_empty() {
    let policy = load(json!({"version": "1", "tools": {"whmcs_get_*": {}}}));
    assert_eq!(policy.to_json_value()["tools"]["whmcs_get_*"], json!({}));
}

#[test]
fn all_operators_load() {
    for (op, value) in [
        ("eq", json!("x")),
        ("neq", json!(null)),
        ("in", json!([1, "a"])),
        ("not_in", json!([])),
        ("lt", json!(1)),
        ("lte", json!(-1.5)),
        ("gt", json!(0)),
        ("gte", json!(1e3)),
        ("contains", json!("x")),
        ("prefix", json!("re:")),
        ("regex", json!("a|b")),
        ("exists", json!(false)),
    ] {
        let policy = load(json!({"version": "1", "tools": {"t": {
            "deny_if": [{"path": "args.x", "op": op, "value": value}]}}}));
        round_trips(&policy);
    }
}

#[test]
fn limit_fields_default_to_grant_scope_and_unit_cost() {
    let policy =
        load(json!({"version": "1", "tools": {"t": {"limits": [{"window": "day", "max": 5}]}}}));
    let limit = &policy.to_json_value()["tools"]["t"]["limits"][0];
    assert_eq!(limit["scope"], "grant");
    assert!(limit.get("cost").is_none());
    assert!(
        limit.get("counter").is_none(),
        "a private counter stays unnamed"
    );
}

#[test]
fn limits_may_share_a_counter_across_rules() {
    let policy = load(json!({"version": "1", "tools": {
        "a": {"limits": [{"counter": "writes", "window": "minute", "max": 10}]},
        "b": {"limits": [{"counter": "writes", "window": 60, "max": 20}]}
    }}));
    round_trips(&policy);
}

#[test]
fn policies_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_send_sync::<Policy>();
}

#[test]
fn long_numbers_survive_a_round_trip() {
    // serde_json's default float parsing reads this one a unit in the last place off,
    // so a policy would not survive its own round trip.
    let digits = "12145389806734000435919463368450440470644293734899792191337657291169148287996721824363323489831987964892162013161949375586871020497";
    let text = format!(
        r#"{{"version": "1", "tools": {{"t": {{"require": [
            {{"path": "args.a", "op": "lte", "value": {digits}}},
            {{"path": "args.b", "op": "gt", "value": 0.1000000000000000055511151231257827}}]}}}}}}"#
    );
    let policy: Policy = text.parse().unwrap();
    let again: Policy = policy.to_json_value().to_string().parse().unwrap();
    assert_eq!(again, policy);
    let twice: Policy = again.to_json_value().to_string().parse().unwrap();
    assert_eq!(twice.to_json_value(), again.to_json_value());
}

#[test]
fn ignore_case_makes_string_comparisons_case_blind_and_round_trips() {
    let policy: Policy = r#"{"version": "1", "tools": {"t": {
        "approve_if": [{"path": "args.status", "op": "in", "value": ["Closed"], "ignore_case": true}],
        "deny_if": [{"path": "args.tags", "op": "contains", "value": "Urgent", "ignore_case": true},
                    {"path": "args.note", "op": "prefix", "value": "DROP", "ignore_case": true}]}}}"#
        .parse()
        .unwrap();
    let engine = mcp_policy::Engine::new(policy.clone());
    let code = |args: serde_json::Value| {
        engine
            .peek(&mcp_policy::ToolCall::new("t").arguments(&args))
            .code()
    };
    assert_eq!(code(json!({"status": "closed"})), "approval_required");
    assert_eq!(code(json!({"status": "CLOSED"})), "approval_required");
    assert_eq!(code(json!({"status": "Open"})), "allowed");
    assert_eq!(code(json!({"tags": ["low", "URGENT"]})), "deny_condition");
    assert_eq!(code(json!({"tags": "not urgent at all"})), "deny_condition");
    assert_eq!(code(json!({"note": "drop table"})), "deny_condition");
    // Without it, comparisons stay exact.
    let exact: Policy = r#"{"version": "1", "tools": {"t": {
        "approve_if": [{"path": "args.status", "op": "in", "value": ["Closed"]}]}}}"#
        .parse()
        .unwrap();
    let args = json!({"status": "closed"});
    assert_eq!(
        mcp_policy::Engine::new(exact)
            .peek(&mcp_policy::ToolCall::new("t").arguments(&args))
            .code(),
        "allowed"
    );
    // The policy serializes as written: the operand keeps its case.
    let json = policy.to_json_value();
    assert_eq!(
        json["tools"]["t"]["approve_if"][0]["value"],
        json!(["Closed"])
    );
    assert_eq!(json["tools"]["t"]["approve_if"][0]["ignore_case"], true);
    let again: Policy = json.to_string().parse().unwrap();
    assert_eq!(again, policy);
}
