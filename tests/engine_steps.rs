//! Evaluation, step by step: hidden, match, deny, approval, limits, allow.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_policy::{Decision, DenyCode, Engine, ManualClock, Policy, Scope, ToolCall};
use serde_json::{json, Value};
use std::time::Duration;

fn engine(policy: Value) -> (Engine, ManualClock) {
    let policy = Policy::from_json(&policy.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let clock = ManualClock::new();
    (Engine::builder(policy).clock(clock.clone()).build(), clock)
}

fn denial(decision: &Decision) -> (DenyCode, String) {
    match decision {
        Decision::Deny { code, reason, .. } => (*code, reason.to_string()),
        other => panic!("expected a denial, got {other}"),
    }
}

fn approval_reason(decision: &Decision) -> String {
    match decision {
        Decision::RequireApproval { reason, .. } => reason.to_string(),
        other => panic!("expected RequireApproval, got {other}"),
    }
}

#[test]
fn hidden_tools_are_denied_even_when_a_rule_allows_them() {
    let (engine, _) = engine(
        json!({"version": "1", "default": "allow", "hide": ["whmcs_delete_*"],
        "tools": {"whmcs_delete_client": {}}}),
    );
    let decision = engine.evaluate(&ToolCall::new("whmcs_delete_client"));
    assert_eq!(denial(&decision).0, DenyCode::Hidden);
    assert_eq!(decision.rule(), None);
}

#[test]
fn match_the_exact_rule_wins_over_globs() {
    let (engine, _) = engine(json!({"version": "1", "tools": {
        "whmcs_*": {"action": "deny", "reason": "glob"},
        "whmcs_get_ticket": {}}}));
    let decision = engine.evaluate(&ToolCall::new("whmcs_get_ticket"));
    assert!(decision.is_allowed());
    assert_eq!(decision.rule(), Some("whmcs_get_ticket"));
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("whmcs_get_client"))).1,
        "glob"
    );
}

#[test]
fn match_the_glob_with_most_literals_wins_then_bytes() {
    let (engine, _) = engine(json!({"version": "1", "tools": {
        "whmcs_*": {"action": "deny"}, "whmcs_get_*": {}, "*_x": {"action": "deny"}, "a*": {}}}));
    assert_eq!(
        engine.evaluate(&ToolCall::new("whmcs_get_invoice")).rule(),
        Some("whmcs_get_*")
    );
    assert_eq!(engine.evaluate(&ToolCall::new("a_x")).rule(), Some("*_x"));
}

#[test]
fn match_default_applies_when_no_rule_matches() {
    for (default, allowed) in [("allow", true), ("deny", false)] {
        let (engine, _) = engine(json!({"version": "1", "default": default, "tools": {"a": {}}}));
        let decision = engine.evaluate(&ToolCall::new("unknown"));
        assert_eq!(decision.is_allowed(), allowed);
        assert_eq!(decision.rule(), None);
    }
    let (engine, _) = engine(json!({"version": "1"}));
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("x"))).0,
        DenyCode::DefaultDenied,
        "deny when absent"
    );
}

#[test]
fn deny_a_deny_rule_denies_with_its_reason() {
    let (engine, _) = engine(json!({"version": "1", "default": "allow", "tools": {
        "whmcs_close_client": {"action": "deny", "reason": "never automated"},
        "no_reason": {"action": "deny"}}}));
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("whmcs_close_client"))),
        (DenyCode::RuleDenied, "never automated".into())
    );
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("no_reason"))).0,
        DenyCode::RuleDenied
    );
}

#[test]
fn deny_a_failed_require_denies_and_an_absent_argument_fails_it() {
    let (engine, _) = engine(json!({"version": "1", "tools": {"whmcs_add_credit": {
        "require": [{"path": "args.amount", "op": "lte", "value": 100}]}}}));
    let ok = json!({"amount": 100});
    let too_much = json!({"amount": 100.5});
    let absent = json!({});
    assert!(engine
        .evaluate(&ToolCall::new("whmcs_add_credit").arguments(&ok))
        .is_allowed());
    let (code, reason) =
        denial(&engine.evaluate(&ToolCall::new("whmcs_add_credit").arguments(&too_much)));
    assert_eq!(code, DenyCode::RequirementFailed);
    assert_eq!(reason, "requirement not met: args.amount lte 100");
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("whmcs_add_credit").arguments(&absent))).0,
        DenyCode::RequirementFailed
    );
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("whmcs_add_credit"))).0,
        DenyCode::RequirementFailed,
        "no arguments at all"
    );
}

#[test]
fn deny_a_firing_deny_if_denies_and_an_absent_argument_does_not_fire() {
    let (engine, _) = engine(json!({"version": "1", "tools": {"whmcs_update_ticket": {
        "reason": "rule reason",
        "deny_if": [{"path": "args.priority", "op": "eq", "value": "Emergency", "reason": "on-call handles emergencies"},
                    {"path": "args.priority", "op": "eq", "value": "High"}]}}}));
    let emergency = json!({"priority": "Emergency"});
    let high = json!({"priority": "High"});
    let absent = json!({"status": "Open"});
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("whmcs_update_ticket").arguments(&emergency))),
        (
            DenyCode::DenyCondition,
            "on-call handles emergencies".into()
        ),
        "the condition's own reason is most specific"
    );
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("whmcs_update_ticket").arguments(&high))).1,
        "rule reason",
        "then the rule's"
    );
    assert!(engine
        .evaluate(&ToolCall::new("whmcs_update_ticket").arguments(&absent))
        .is_allowed());
}

#[test]
fn deny_all_tools_conditions_apply_after_the_rules() {
    let (engine, _) = engine(json!({"version": "1", "default": "allow",
        "all_tools": {"deny_if": [{"path": "args.dry_run", "op": "eq", "value": false, "reason": "dry runs only"}]},
        "tools": {"t": {"deny_if": [{"path": "args.x", "op": "exists", "value": true, "reason": "rule first"}]}}}));
    let both = json!({"x": 1, "dry_run": false});
    let live = json!({"dry_run": false});
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("t").arguments(&both))).1,
        "rule first"
    );
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("t").arguments(&live))).1,
        "dry runs only"
    );
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("unmatched").arguments(&live))).1,
        "dry runs only",
        "default allow gets all_tools too"
    );
}

#[test]
fn approval_require_approval_action_holds_until_approved() {
    let (engine, _) = engine(json!({"version": "1", "tools": {"whmcs_send_email": {
        "action": "require_approval", "reason": "emails are reviewed"}}}));
    let call = ToolCall::new("whmcs_send_email");
    assert_eq!(
        approval_reason(&engine.evaluate(&call)),
        "emails are reviewed"
    );
    assert!(engine.evaluate(&call.approved(true)).is_allowed());
}

#[test]
fn approval_default_require_approval_holds_unmatched_tools() {
    let (engine, _) = engine(json!({"version": "1", "default": "require_approval"}));
    let decision = engine.evaluate(&ToolCall::new("anything"));
    assert!(approval_reason(&decision).contains("requires approval by default"));
    assert!(engine
        .evaluate(&ToolCall::new("anything").approved(true))
        .is_allowed());
}

#[test]
fn approval_a_firing_approve_if_holds_the_call() {
    let (engine, _) = engine(json!({"version": "1", "tools": {"whmcs_update_ticket": {
        "approve_if": [{"path": "args.status", "op": "in", "value": ["Closed"], "reason": "closing a ticket needs a person"}]}}}));
    let close = json!({"status": "Closed"});
    let open = json!({"status": "Open"});
    let call = ToolCall::new("whmcs_update_ticket").arguments(&close);
    assert_eq!(
        approval_reason(&engine.evaluate(&call)),
        "closing a ticket needs a person"
    );
    assert!(engine.evaluate(&call.approved(true)).is_allowed());
    assert!(engine
        .evaluate(&ToolCall::new("whmcs_update_ticket").arguments(&open))
        .is_allowed());
}

#[test]
fn approval_approval_touches_no_counter() {
    let (engine, _) = engine(json!({"version": "1", "tools": {"t": {
        "action": "require_approval", "limits": [{"window": "minute", "max": 1}]}}}));
    let call = ToolCall::new("t").grant("g");
    for _ in 0..5 {
        assert!(matches!(
            engine.evaluate(&call),
            Decision::RequireApproval { .. }
        ));
    }
    assert!(
        engine.evaluate(&call.approved(true)).is_allowed(),
        "the held calls used no quota"
    );
    assert!(matches!(
        engine.evaluate(&call.approved(true)),
        Decision::Limit { .. }
    ));
}

#[test]
fn deny_comes_before_approval() {
    let (engine, _) = engine(
        json!({"version": "1", "tools": {"t": {"action": "require_approval",
        "deny_if": [{"path": "args.a", "op": "eq", "value": 1}]}}}),
    );
    let args = json!({"a": 1});
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("t").arguments(&args).approved(true))).0,
        DenyCode::DenyCondition
    );
}

#[test]
fn limits_admit_max_per_window_then_answer_limit() {
    let (engine, clock) = engine(
        json!({"version": "1", "tools": {"whmcs_update_ticket": {"limits": [
        {"counter": "whmcs_update_ticket_rate", "window": "minute", "max": 30, "scope": "grant"}]}}}),
    );
    let call = ToolCall::new("whmcs_update_ticket").grant("g1");
    for _ in 0..30 {
        assert!(engine.evaluate(&call).is_allowed());
    }
    let refused = engine.evaluate(&call);
    let Decision::Limit {
        limit,
        retry_after,
        rule,
        ..
    } = &refused
    else {
        panic!("{refused}")
    };
    assert_eq!(limit.counter().name(), "whmcs_update_ticket_rate");
    assert_eq!(limit.counter().scope(), Scope::Grant);
    assert_eq!(limit.scope_id(), Some("g1"));
    assert_eq!(limit.max(), 30);
    assert_eq!(limit.window(), Duration::from_secs(60));
    assert_eq!(rule.as_deref(), Some("whmcs_update_ticket"));
    assert!(*retry_after <= Duration::from_secs(60) * 17 / 16);
    clock.advance(*retry_after);
    assert!(engine.evaluate(&call).is_allowed());
}

#[test]
fn limits_scopes_keep_separate_counts() {
    let (engine, _) = engine(json!({"version": "1", "tools": {
        "g": {"limits": [{"window": "minute", "max": 1, "scope": "grant"}]},
        "s": {"limits": [{"window": "minute", "max": 1, "scope": "session"}]},
        "a": {"limits": [{"window": "minute", "max": 1, "scope": "agent"}]},
        "x": {"limits": [{"window": "minute", "max": 1, "scope": "global"}]}}}));
    let one = |tool| ToolCall::new(tool).grant("g1").session("s1").agent("a1");
    let two = |tool| ToolCall::new(tool).grant("g2").session("s2").agent("a2");
    for tool in ["g", "s", "a"] {
        assert!(engine.evaluate(&one(tool)).is_allowed());
        assert!(
            !engine.evaluate(&one(tool)).is_allowed(),
            "{tool}: same id shares the count"
        );
        assert!(
            engine.evaluate(&two(tool)).is_allowed(),
            "{tool}: another id has its own"
        );
    }
    assert!(engine.evaluate(&one("x")).is_allowed());
    assert!(
        !engine.evaluate(&two("x")).is_allowed(),
        "global: one count for everyone"
    );
}

#[test]
fn limits_a_missing_id_fails_closed_naming_it() {
    let (engine, _) = engine(json!({"version": "1", "tools": {"t": {"rate_limit": "5/minute"}}}));
    let decision = engine.evaluate(&ToolCall::new("t").grant("g1"));
    let (code, reason) = denial(&decision);
    assert_eq!(code, DenyCode::MissingIdentity);
    assert_eq!(
        reason,
        "counter \"t\" counts calls per session, but the call has no session id"
    );
    assert_eq!(
        denial(&engine.evaluate(&ToolCall::new("t").session(""))).0,
        DenyCode::MissingIdentity,
        "empty ids count as missing"
    );
}

#[test]
fn limits_cost_comes_from_arguments_and_bad_values_are_denied() {
    let (engine, _) = engine(
        json!({"version": "1", "tools": {"whmcs_add_credit": {"limits": [
        {"counter": "credit_per_day", "window": "day", "max": 500, "cost": "args.amount", "scope": "global"}]}}}),
    );
    let call = |args: &'static Value| ToolCall::new("whmcs_add_credit").arguments(args);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "the cost argument args.amount is missing"),
        // Reasons reach logs: they say what is wrong, never quote the value.
        (
            json!({"amount": -5}),
            "must be a non-negative integer, found a negative or non-integer number",
        ),
        (
            json!({"amount": 2.5}),
            "found a negative or non-integer number",
        ),
        (json!({"amount": "100"}), "found a string"),
        (json!({"amount": "PASSWORD=hunter2"}), "found a string"),
    ];
    for (args, expected) in cases {
        let args: &'static Value = Box::leak(Box::new(args));
        let (code, reason) = denial(&engine.evaluate(&call(args)));
        assert_eq!(code, DenyCode::InvalidCost);
        assert!(reason.contains(expected), "{reason}");
        assert!(
            !reason.contains("hunter2") && !reason.contains("-5"),
            "{reason}"
        );
    }
    let big: &'static Value = Box::leak(Box::new(json!({"amount": 300})));
    let zero: &'static Value = Box::leak(Box::new(json!({"amount": 0})));
    assert!(engine.evaluate(&call(big)).is_allowed());
    let refused = engine.evaluate(&call(big));
    assert!(matches!(refused, Decision::Limit { .. }), "300 + 300 > 500");
    assert!(
        engine.evaluate(&call(zero)).is_allowed(),
        "zero cost always fits"
    );
}

#[test]
fn limits_a_cost_above_max_is_denied_not_limited() {
    let (engine, _) = engine(json!({"version": "1", "tools": {"t": {"limits": [
        {"window": "day", "max": 500, "cost": "args.amount", "scope": "global"}]}}}));
    let args = json!({"amount": 501});
    let decision = engine.evaluate(&ToolCall::new("t").arguments(&args));
    let (code, reason) = denial(&decision);
    assert_eq!(code, DenyCode::CostExceedsMax);
    assert!(reason.contains("can never pass"), "{reason}");
    assert_eq!(decision.limit().unwrap().cost(), Some(501));
}

#[test]
fn limits_are_atomic_a_refused_call_records_nothing() {
    let (engine, _) = engine(json!({"version": "1",
        "all_tools": {"limits": [{"counter": "all", "window": "minute", "max": 100, "scope": "grant"}]},
        "tools": {"small": {"limits": [{"window": "minute", "max": 1, "scope": "grant"}]}, "other": {}}}));
    let small = ToolCall::new("small").grant("g");
    assert!(engine.evaluate(&small).is_allowed());
    for _ in 0..50 {
        assert!(matches!(engine.evaluate(&small), Decision::Limit { .. }));
    }
    // The 50 refused calls charged nothing to "all": 98 more fit beside the first.
    let other = ToolCall::new("other").grant("g");
    for i in 0..99 {
        assert!(engine.evaluate(&other).is_allowed(), "call {i}");
    }
    assert!(!engine.evaluate(&other).is_allowed());
}

#[test]
fn limits_the_limit_named_is_the_one_with_the_longest_wait() {
    let (engine, clock) = engine(json!({"version": "1", "tools": {"t": {"limits": [
        {"counter": "per_second", "window": "second", "max": 1, "scope": "grant"},
        {"counter": "per_hour", "window": "hour", "max": 1, "scope": "grant"}]}}}));
    let call = ToolCall::new("t").grant("g");
    assert!(engine.evaluate(&call).is_allowed());
    let refused = engine.evaluate(&call);
    assert_eq!(refused.limit().unwrap().counter().name(), "per_hour");
    assert!(refused.retry_after().unwrap() > Duration::from_secs(3600));
    clock.advance(refused.retry_after().unwrap());
    assert!(engine.evaluate(&call).is_allowed());
}

#[test]
fn limits_naming_one_counter_share_its_count() {
    let (engine, _) = engine(json!({"version": "1", "tools": {
        "a": {"limits": [{"counter": "writes", "window": "minute", "max": 3}]},
        "b": {"limits": [{"counter": "writes", "window": "minute", "max": 3}]},
        "c": {"limits": [{"window": "minute", "max": 3}]}}}));
    let call = |tool| ToolCall::new(tool).grant("g");
    for tool in ["a", "b", "a"] {
        assert!(engine.evaluate(&call(tool)).is_allowed());
    }
    assert!(!engine.evaluate(&call("b")).is_allowed());
    assert!(
        engine.evaluate(&call("c")).is_allowed(),
        "an unnamed counter is private"
    );
}

#[test]
fn limits_rate_limit_shorthand_counts_per_session_under_the_rule_key() {
    let (engine, _) =
        engine(json!({"version": "1", "tools": {"whmcs_get_*": {"rate_limit": "2/minute"}}}));
    let call = |tool| ToolCall::new(tool).session("s");
    assert!(engine.evaluate(&call("whmcs_get_a")).is_allowed());
    assert!(engine.evaluate(&call("whmcs_get_b")).is_allowed());
    let refused = engine.evaluate(&call("whmcs_get_c"));
    assert_eq!(refused.limit().unwrap().counter().name(), "whmcs_get_*");
    assert!(engine
        .evaluate(&ToolCall::new("whmcs_get_a").session("s2"))
        .is_allowed());
}

#[test]
fn allow_a_call_with_nothing_against_it_is_allowed() {
    let (engine, _) = engine(json!({"version": "1", "tools": {"whmcs_get_*": {}}}));
    let decision = engine.evaluate(&ToolCall::new("whmcs_get_ticket"));
    assert!(decision.is_allowed());
    assert_eq!(
        decision.to_string(),
        "allowed: whmcs_get_ticket (rule \"whmcs_get_*\")"
    );
}

#[test]
fn peek_answers_like_evaluate_and_records_nothing() {
    let (engine, _) = engine(
        json!({"version": "1", "tools": {"t": {"limits": [{"window": "minute", "max": 1}]}}}),
    );
    let call = ToolCall::new("t").grant("g");
    for _ in 0..3 {
        assert!(engine.peek(&call).is_allowed());
    }
    assert!(engine.evaluate(&call).is_allowed());
    assert!(matches!(engine.peek(&call), Decision::Limit { .. }));
    assert!(matches!(engine.evaluate(&call), Decision::Limit { .. }));
}

#[test]
fn refund_gives_back_exactly_once() {
    let (engine, _) = engine(
        json!({"version": "1", "tools": {"t": {"limits": [{"window": "minute", "max": 2, "cost": 2}]}}}),
    );
    let call = ToolCall::new("t").grant("g");
    let first = engine.evaluate(&call);
    assert!(first.is_allowed());
    assert!(!engine.evaluate(&call).is_allowed());
    engine.refund(&first).unwrap();
    engine.refund(&first).unwrap();
    let second = engine.evaluate(&call);
    assert!(second.is_allowed(), "refund gave the 2 units back");
    assert!(!engine.evaluate(&call).is_allowed(), "but only once");
    let limited = engine.evaluate(&call);
    engine.refund(&limited).unwrap();
    assert!(
        !engine.evaluate(&call).is_allowed(),
        "refunding a refusal gives nothing"
    );
}

#[test]
fn refund_after_the_window_passed_gives_nothing_to_the_new_window() {
    let (engine, clock) = engine(
        json!({"version": "1", "tools": {"t": {"limits": [{"window": "second", "max": 1}]}}}),
    );
    let call = ToolCall::new("t").grant("g");
    let old = engine.evaluate(&call);
    clock.advance(Duration::from_secs(2));
    assert!(engine.evaluate(&call).is_allowed());
    engine.refund(&old).unwrap();
    assert!(!engine.evaluate(&call).is_allowed());
}

#[test]
fn decisions_serialize_as_audit_records() {
    let (engine, _) = engine(json!({"version": "1", "tools": {"t": {"limits": [
        {"counter": "c", "window": "minute", "max": 1, "scope": "grant"}]}}}));
    let call = ToolCall::new("t").grant("g1");
    let allowed = serde_json::to_value(engine.evaluate(&call)).unwrap();
    assert_eq!(
        allowed,
        json!({"decision": "allow", "code": "allowed", "tool": "t", "rule": "t",
        "charged": [{"counter": "c", "scope_id": "g1", "key": null, "cost": 1}], "approval": null})
    );
    let limited = engine.evaluate(&call);
    let record = serde_json::to_value(&limited).unwrap();
    assert_eq!(record["decision"], "limit");
    assert_eq!(record["code"], "rate_limited");
    assert_eq!(
        record["limit"],
        json!({"counter": "c", "scope": "grant", "scope_id": "g1", "key": null, "max": 1, "window_s": 60, "cost": 1})
    );
    assert!(record["retry_after_ms"].as_u64().unwrap() > 0);
    assert!(
        limited.to_string().starts_with(
            "rate limited: t: counter \"c\" admits 1 per minute per grant \"g1\"; retry in "
        ),
        "{limited}"
    );
}

/// A function that takes the arguments by value returns the decision it got for them.
fn decide(engine: &Engine, tool: &str, args: Value) -> Decision {
    let grant = String::from("g");
    engine.evaluate(&ToolCall::new(tool).grant(&grant).arguments(&args))
}

#[test]
fn decisions_outlive_their_call() {
    let (engine, _) = engine(
        json!({"version": "1", "tools": {"t": {"limits": [{"window": "minute", "max": 1}]}}}),
    );
    let owned = decide(&engine, "t", json!({"x": 1}));
    assert!(owned.is_allowed());
    engine.refund(&owned).unwrap();
    // Decisions collect in a Vec in a loop, each outliving its call.
    let mut decisions = Vec::new();
    for n in 0..3 {
        let args = json!({"n": n});
        decisions.push(engine.evaluate(&ToolCall::new("t").grant("g").arguments(&args)));
    }
    let codes: Vec<&str> = decisions.iter().map(Decision::code).collect();
    assert_eq!(codes, ["allowed", "rate_limited", "rate_limited"]);
    assert_eq!(decisions[1], decisions[1].clone());
}

#[test]
fn clones_of_a_decision_share_one_refund() {
    let (engine, _) = engine(
        json!({"version": "1", "tools": {"t": {"limits": [{"window": "minute", "max": 2}]}}}),
    );
    let call = ToolCall::new("t").grant("g");
    let first = engine.evaluate(&call);
    let copy = first.clone();
    assert_eq!(copy, first);
    assert!(engine.evaluate(&call).is_allowed());
    // A gateway that kept only a copy (for its audit log) can still report the outcome.
    engine.refund(&copy).unwrap();
    let refunded = |d: &Decision| match d {
        Decision::Allow { usage, .. } => usage.is_refunded(),
        _ => false,
    };
    assert!(refunded(&first), "the original sees its clone's refund");
    engine.refund(&first).unwrap();
    engine.refund(&first.clone()).unwrap();
    assert!(
        engine.evaluate(&call).is_allowed(),
        "one unit was given back"
    );
    assert!(!engine.evaluate(&call).is_allowed(), "only one");
}

#[test]
fn clones_refunding_on_many_threads_give_back_once() {
    for _ in 0..50 {
        let (engine, _) = engine(
            json!({"version": "1", "tools": {"t": {"limits": [{"window": "minute", "max": 3}]}}}),
        );
        let call = ToolCall::new("t").grant("g");
        let first = engine.evaluate(&call);
        assert!(engine.evaluate(&call).is_allowed());
        // Two units in one bucket: a second give-back would not be clamped away.
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let copy = first.clone();
                    engine.refund(&copy).unwrap();
                    engine.refund(&first).unwrap();
                });
            }
        });
        let admitted = (0..4)
            .filter(|_| engine.evaluate(&call).is_allowed())
            .count();
        assert_eq!(admitted, 2, "one unit given back, not more");
    }
}

#[test]
fn engines_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<Decision>();
}

#[test]
fn limits_naming_one_count_add_their_costs() {
    // A rule's limit and an all_tools limit share counter "c": one count, charged 2 + 2.
    let policy = |max: u64| {
        json!({"version": "1", "default": "allow",
        "all_tools": {"limits": [{"counter": "c", "window": "minute", "max": max, "cost": 2}]},
        "tools": {"t": {"limits": [{"counter": "c", "window": "minute", "max": max, "cost": 2}]}}})
    };
    let (small, _) = engine(policy(3));
    let call = ToolCall::new("t").grant("g1");
    assert_eq!(small.peek(&call).code(), "cost_exceeds_max");
    let decision = small.evaluate(&call);
    assert_eq!(denial(&decision).0, DenyCode::CostExceedsMax);
    assert!(denial(&decision).1.contains("costs 4 units"), "{decision}");

    let (engine, clock) = engine(policy(5));
    let first = engine.evaluate(&call);
    assert!(first.is_allowed());
    let charged: Vec<u64> = match &first {
        Decision::Allow { usage, .. } => usage.charges().map(|(_, _, cost)| cost).collect(),
        other => panic!("{other}"),
    };
    assert_eq!(charged, [4], "the sum is recorded once");
    assert_eq!(engine.peek(&call).code(), "rate_limited");
    let limited = engine.evaluate(&call);
    assert_eq!(limited.code(), "rate_limited");
    clock.advance(limited.retry_after().unwrap());
    assert!(engine.peek(&call).is_allowed());
    assert!(engine.evaluate(&call).is_allowed());
    // Another tool charges only all_tools' 2 units; the count holds 4 of 5.
    assert_eq!(
        engine.evaluate(&ToolCall::new("other").grant("g1")).code(),
        "rate_limited"
    );
}

#[test]
fn hidden_names_longer_than_any_mcp_tool_name_are_refused_before_matching() {
    let globs: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("*x{i}"), json!({}))).collect();
    let (engine, _) = engine(json!({"version": "1", "default": "allow", "tools": globs}));
    let long = "a".repeat(1 << 20);
    let decision = engine.evaluate(&ToolCall::new(&long));
    assert_eq!(denial(&decision).0, DenyCode::Hidden);
    assert!(denial(&decision).1.contains("longer than 512 bytes"));
    let edge = "a".repeat(512);
    assert!(engine.evaluate(&ToolCall::new(&edge)).is_allowed());
}
