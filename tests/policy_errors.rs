//! Every validation rule of the policy format, with the message a person sees.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_policy::{Policy, PolicyError};

fn error(text: &str) -> PolicyError {
    match Policy::from_json(text) {
        Ok(policy) => panic!("expected an error, loaded {policy:?}"),
        Err(err) => err,
    }
}

/// A policy with one rule `t` whose body is `rule`.
fn rule_error(rule: &str) -> PolicyError {
    error(&format!(r#"{{"version":"1","tools":{{"t":{rule}}}}}"#))
}

fn assert_error(err: &PolicyError, path: &str, fragments: &[&str]) {
    assert_eq!(err.path(), Some(path), "wrong path in: {err}");
    let text = err.to_string();
    for fragment in fragments {
        assert!(text.contains(fragment), "{text:?} lacks {fragment:?}");
    }
}

#[test]
fn syntax_errors_give_line_and_column() {
    let err = error("{\n  \"version\": \"1\",\n  \"tools\": {,}\n}");
    assert_eq!(err.line_column(), Some((3, 13)));
    assert_eq!(err.path(), None);
    assert!(
        err.to_string()
            .starts_with("policy is not valid JSON: line 3, column 13: "),
        "{err}"
    );
}

#[test]
fn an_empty_file_says_it_is_empty() {
    for text in ["", "  \n\t", "\u{feff}"] {
        let err = error(text);
        assert!(
            err.to_string().starts_with("policy: the policy is empty;"),
            "{err}"
        );
        assert!(err.to_string().contains("{\"version\": \"1\""), "{err}");
    }
}

#[test]
fn a_yaml_file_is_told_it_is_not_json() {
    for text in [
        "version: \"1\"\ndefault: deny\n",
        "---\nversion: 1\n",
        "tools:\n  - a\n",
    ] {
        let err = error(text);
        assert!(err.to_string().contains("this looks like YAML"), "{err}");
    }
    // Plain garbage is a syntax error with a position.
    assert!(error("nonsense").line_column().is_some());
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let policy: Policy = "\u{feff}{\"version\": \"1\"}".parse().unwrap();
    assert_eq!(policy.rule_keys().count(), 0);
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let err = error(
        r#"{"version": "2", "defualt": "deny", "hide": [5],
        "all_tools": {"limits": [{"window": "minutes", "max": 1}]},
        "tools": {
          "a": {"limts": [], "action": "maybe"},
          "b": {"require": [{"path": "amount", "op": "lte", "value": 1},
                            {"path": "args.x", "op": "less", "value": 1}],
                "limits": [{"window": "minute"}, {"window": "hour", "max": 0}]}}}"#,
    );
    let paths: Vec<&str> = err.errors().map(|e| e.path().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "defualt",
            "version",
            "hide[0]",
            "all_tools.limits[0].window",
            "tools.a.limts",
            "tools.a.action",
            "tools.b.require[0].path",
            "tools.b.require[1].op",
            "tools.b.limits[0]",
            "tools.b.limits[1].max",
        ]
    );
    assert_eq!(err.to_string().lines().count(), paths.len(), "{err}");
    assert_eq!(
        err.path(),
        Some("defualt"),
        "the accessors describe the first"
    );
}

#[test]
fn a_huge_broken_policy_gives_a_bounded_report() {
    let rules: Vec<String> = (0..500)
        .map(|i| format!("\"t{i}\": {{\"x\": 1}}"))
        .collect();
    let err = error(&format!(
        "{{\"version\": \"1\", \"tools\": {{{}}}}}",
        rules.join(",")
    ));
    assert_eq!(err.errors().count(), 50);
    assert_eq!(err.dropped(), 450);
    assert!(err.to_string().ends_with("… and 450 more problems"));
}

#[test]
fn huge_keys_and_patterns_are_refused_quickly_with_short_messages() {
    // A 10 MB unknown key: the message quotes a bounded part of it.
    let key = "k".repeat(10 << 20);
    let err = error(&format!("{{\"version\": \"1\", \"{key}\": 1}}"));
    assert!(
        err.to_string().len() < 400,
        "{} bytes",
        err.to_string().len()
    );
    // A rule key longer than any MCP tool name.
    let err = error(&format!(
        "{{\"version\": \"1\", \"tools\": {{\"{}\": {{}}}}}}",
        "t".repeat(600)
    ));
    assert!(err.to_string().contains("at most 512 bytes"), "{err}");
    assert!(err.to_string().len() < 400);
    // A regex whose compiled form is huge is refused rather than compiled.
    let err = error(
        r#"{"version": "1", "tools": {"t": {"require": [{"path": "args.a", "op": "regex", "value": "\\w{200}"}]}}}"#,
    );
    assert!(err.to_string().contains("too large once compiled"), "{err}");
    // More regex conditions than the bound.
    let conditions: Vec<String> = (0..300)
        .map(|i| format!("{{\"path\": \"args.a\", \"op\": \"regex\", \"value\": \"^{i}$\"}}"))
        .collect();
    let err = error(&format!(
        "{{\"version\": \"1\", \"tools\": {{\"t\": {{\"require\": [{}]}}}}}}",
        conditions.join(",")
    ));
    assert!(err.to_string().contains("300 regex conditions"), "{err}");
}

#[test]
fn truncated_input_is_a_syntax_error() {
    assert!(error("{\"version\": \"1\"").line_column().is_some());
    assert!(error("{\"version\": \"1\"} trailing")
        .line_column()
        .is_some());
}

#[test]
fn duplicate_keys_are_rejected_not_silently_merged() {
    let err = error(r#"{"version":"1","tools":{"t":{},"t":{"action":"deny"}}}"#);
    assert!(err.line_column().is_some());
    assert!(err.to_string().contains("duplicate key \"t\""), "{err}");
}

#[test]
fn the_policy_must_be_an_object() {
    assert_error(
        &error("[]"),
        "",
        &["expected the policy to be an object", "found an array"],
    );
}

#[test]
fn version_is_required_and_must_be_1() {
    assert_error(
        &error("{}"),
        "",
        &["missing field \"version\"", "\"version\": \"1\""],
    );
    assert_error(
        &error(r#"{"version":"2"}"#),
        "version",
        &["expected \"1\", found \"2\""],
    );
    assert_error(
        &error(r#"{"version":1}"#),
        "version",
        &["expected \"1\", found 1"],
    );
}

#[test]
fn unknown_top_level_fields_are_rejected_with_a_suggestion() {
    assert_error(
        &error(r#"{"version":"1","tool":{}}"#),
        "tool",
        &["unknown field \"tool\"", "did you mean \"tools\"?"],
    );
}

#[test]
fn unknown_rule_fields_are_rejected_so_a_typo_never_drops_a_limit() {
    assert_error(
        &rule_error(r#"{"limts":[{"window":"minute","max":30}]}"#),
        "tools.t.limts",
        &[
            "unknown field \"limts\"",
            "expected one of action, reason, require",
            "did you mean \"limits\"?",
        ],
    );
}

#[test]
fn unknown_fields_in_limits_conditions_and_all_tools_are_rejected() {
    assert_error(
        &rule_error(r#"{"limits":[{"window":"minute","max":30,"scpoe":"grant"}]}"#),
        "tools.t.limits[0].scpoe",
        &["did you mean \"scope\"?"],
    );
    assert_error(
        &rule_error(r#"{"require":[{"path":"args.a","op":"eq","value":1,"reasn":"x"}]}"#),
        "tools.t.require[0].reasn",
        &["did you mean \"reason\"?"],
    );
    assert_error(
        &error(r#"{"version":"1","all_tools":{"action":"deny"}}"#),
        "all_tools.action",
        &[
            "unknown field \"action\"",
            "expected one of limits, require, deny_if, approve_if",
        ],
    );
    assert_error(
        &rule_error(r#"{"rate_limit":{"max":3,"window":"minute","counter":"c"}}"#),
        "tools.t.rate_limit.counter",
        &["unknown field \"counter\""],
    );
}

#[test]
fn default_must_be_an_action() {
    assert_error(
        &error(r#"{"version":"1","default":"allw"}"#),
        "default",
        &[
            "expected \"allow\", \"deny\" or \"require_approval\"",
            "found \"allw\"",
            "did you mean \"allow\"?",
        ],
    );
}

#[test]
fn rule_action_must_be_known() {
    assert_error(
        &rule_error(r#"{"action":"block"}"#),
        "tools.t.action",
        &["found \"block\""],
    );
}

#[test]
fn wrong_types_name_what_was_expected() {
    assert_error(
        &error(r#"{"version":"1","tools":[]}"#),
        "tools",
        &["expected an object mapping tool names", "found an array"],
    );
    assert_error(
        &rule_error("true"),
        "tools.t",
        &["expected a rule", "found true"],
    );
    assert_error(
        &rule_error(r#"{"reason":5}"#),
        "tools.t.reason",
        &["expected a string, found 5"],
    );
    assert_error(
        &rule_error(r#"{"limits":{}}"#),
        "tools.t.limits",
        &["expected a list of limits, found an object"],
    );
    assert_error(
        &rule_error(r#"{"require":"args.a"}"#),
        "tools.t.require",
        &["expected a list of conditions"],
    );
    assert_error(
        &error(r#"{"version":"1","description":[]}"#),
        "description",
        &["expected a string"],
    );
    assert_error(
        &error(r#"{"version":"1","hide":"x"}"#),
        "hide",
        &["expected a list of tool names"],
    );
    assert_error(
        &error(r#"{"version":"1","hide":[1]}"#),
        "hide[0]",
        &["expected a tool name or glob, found 1"],
    );
}

#[test]
fn rule_keys_must_be_non_empty_without_control_characters() {
    assert_error(
        &error(r#"{"version":"1","tools":{"":{}}}"#),
        "tools[\"\"]",
        &["found an empty string"],
    );
    assert_error(
        &error(r#"{"version":"1","tools":{"a\tb":{}}}"#),
        "tools[\"a\\tb\"]",
        &["without control characters"],
    );
    assert_error(
        &error(r#"{"version":"1","hide":[""]}"#),
        "hide[0]",
        &["found an empty string"],
    );
}

#[test]
fn windows_are_named_units_or_seconds_in_range() {
    let with_window = |w: &str| rule_error(&format!(r#"{{"limits":[{{"window":{w},"max":1}}]}}"#));
    for bad in ["\"minutes\"", "0", "31536001", "1.5", "-1", "null"] {
        assert_error(&with_window(bad), "tools.t.limits[0].window", &["expected \"second\", \"minute\", \"hour\", \"day\", or a whole number of seconds from 1 to 31536000"]);
    }
    assert!(with_window("\"minutes\"")
        .to_string()
        .contains("did you mean \"minute\"?"));
    assert!(Policy::from_json(
        r#"{"version":"1","tools":{"t":{"limits":[{"window":31536000,"max":1}]}}}"#
    )
    .is_ok());
}

#[test]
fn max_is_an_integer_from_1_to_2_pow_53() {
    let with_max = |m: &str| {
        rule_error(&format!(
            r#"{{"limits":[{{"window":"minute","max":{m}}}]}}"#
        ))
    };
    for bad in ["0", "-3", "2.5", "9007199254740993", "\"30\""] {
        assert_error(
            &with_max(bad),
            "tools.t.limits[0].max",
            &[
                "expected an integer from 1 to 9007199254740992",
                &format!("found {bad}"),
            ],
        );
    }
    assert!(Policy::from_json(
        r#"{"version":"1","tools":{"t":{"limits":[{"window":"minute","max":9007199254740992}]}}}"#
    )
    .is_ok());
}

#[test]
fn limits_need_window_and_max() {
    assert_error(
        &rule_error(r#"{"limits":[{"max":1}]}"#),
        "tools.t.limits[0]",
        &["missing field \"window\""],
    );
    assert_error(
        &rule_error(r#"{"limits":[{"window":"day"}]}"#),
        "tools.t.limits[0]",
        &["missing field \"max\""],
    );
}

#[test]
fn scope_must_be_known() {
    assert_error(
        &rule_error(r#"{"limits":[{"window":"day","max":1,"scope":"user"}]}"#),
        "tools.t.limits[0].scope",
        &["expected \"grant\", \"session\", \"agent\" or \"global\", found \"user\""],
    );
}

#[test]
fn cost_is_a_positive_integer_or_an_argument_path() {
    let with_cost = |c: &str| {
        rule_error(&format!(
            r#"{{"limits":[{{"window":"day","max":10,"cost":{c}}}]}}"#
        ))
    };
    assert_error(
        &with_cost("0"),
        "tools.t.limits[0].cost",
        &["expected an integer from 1"],
    );
    assert_error(
        &with_cost("true"),
        "tools.t.limits[0].cost",
        &["expected a positive integer or an argument path"],
    );
    assert_error(
        &with_cost("\"amount\""),
        "tools.t.limits[0].cost",
        &["does not start with \"args.\""],
    );
    assert_error(
        &with_cost("\"args.\""),
        "tools.t.limits[0].cost",
        &["empty segment"],
    );
}

#[test]
fn counter_names_are_non_empty_strings() {
    assert_error(
        &rule_error(r#"{"limits":[{"window":"day","max":1,"counter":""}]}"#),
        "tools.t.limits[0].counter",
        &["non-empty counter name"],
    );
    assert_error(
        &rule_error(r#"{"limits":[{"window":"day","max":1,"counter":7}]}"#),
        "tools.t.limits[0].counter",
        &["expected a counter name, found 7"],
    );
}

#[test]
fn a_shared_counter_must_agree_on_window_and_scope() {
    let err = error(
        r#"{"version":"1","tools":{
            "a":{"limits":[{"counter":"c","window":"minute","max":5}]},
            "b":{"limits":[{"counter":"c","window":"hour","max":5}]}}}"#,
    );
    assert_error(
        &err,
        "tools.b.limits[0].counter",
        &[
            "counter \"c\" is used here with window 3600 s",
            "at tools.a.limits[0].counter with window 60 s",
        ],
    );
    let err = error(
        r#"{"version":"1","tools":{
            "a":{"limits":[{"counter":"c","window":"minute","max":5}]},
            "b":{"limits":[{"counter":"c","window":60,"max":9,"scope":"agent"}]}}}"#,
    );
    assert_error(
        &err,
        "tools.b.limits[0].counter",
        &["scope \"agent\"", "scope \"grant\""],
    );
}

#[test]
fn a_rate_limit_counter_is_its_rule_key_and_must_agree_too() {
    let err = error(
        r#"{"version":"1","tools":{
            "a":{"limits":[{"counter":"b","window":"minute","max":5,"scope":"grant"}]},
            "b":{"rate_limit":"5/minute"}}}"#,
    );
    assert_error(
        &err,
        "tools.b.rate_limit",
        &["counter \"b\"", "scope \"session\""],
    );
}

#[test]
fn a_deny_rule_cannot_carry_limits_conditions_or_approval() {
    for field in ["require", "deny_if", "approve_if"] {
        let err = rule_error(&format!(
            r#"{{"action":"deny","{field}":[{{"path":"args.a","op":"exists","value":true}}]}}"#
        ));
        assert_error(
            &err,
            &format!("tools.t.{field}"),
            &["action is \"deny\"", "would never apply"],
        );
    }
    assert_error(
        &rule_error(r#"{"action":"deny","limits":[{"window":"day","max":1}]}"#),
        "tools.t.limits",
        &["would never apply"],
    );
    assert_error(
        &rule_error(r#"{"action":"deny","rate_limit":"1/day"}"#),
        "tools.t.rate_limit",
        &["would never apply"],
    );
}

#[test]
fn rate_limit_strings_are_max_slash_unit() {
    for bad in [
        "30",
        "30/minutes",
        "/minute",
        "x/minute",
        "-1/minute",
        "0/minute",
        "30/60",
    ] {
        let err = rule_error(&format!(r#"{{"rate_limit":"{bad}"}}"#));
        assert_eq!(err.path(), Some("tools.t.rate_limit"), "{bad}: {err}");
    }
    assert!(rule_error(r#"{"rate_limit":"30/minutes"}"#)
        .to_string()
        .contains("such as \"30/minute\""));
    assert_error(
        &rule_error(r#"{"rate_limit":30}"#),
        "tools.t.rate_limit",
        &["found 30"],
    );
    assert_error(
        &rule_error(r#"{"rate_limit":{"window":"minute"}}"#),
        "tools.t.rate_limit",
        &["missing field \"max\""],
    );
    assert_error(
        &rule_error(r#"{"rate_limit":{"max":1,"window":"fortnight"}}"#),
        "tools.t.rate_limit.window",
        &["found \"fortnight\""],
    );
}

#[test]
fn conditions_need_path_op_and_value() {
    assert_error(
        &rule_error(r#"{"require":[{"op":"eq","value":1}]}"#),
        "tools.t.require[0]",
        &["missing field \"path\""],
    );
    assert_error(
        &rule_error(r#"{"require":[{"path":"args.a","value":1}]}"#),
        "tools.t.require[0]",
        &["missing field \"op\""],
    );
    assert_error(
        &rule_error(r#"{"require":[{"path":"args.a","op":"eq"}]}"#),
        "tools.t.require[0]",
        &["missing field \"value\""],
    );
    assert_error(
        &rule_error(r#"{"deny_if":[7]}"#),
        "tools.t.deny_if[0]",
        &["expected a condition", "found 7"],
    );
}

#[test]
fn condition_paths_start_with_args() {
    assert_error(
        &rule_error(r#"{"deny_if":[{"path":"priority","op":"eq","value":1}]}"#),
        "tools.t.deny_if[0].path",
        &["does not start with \"args.\"", "such as \"args.amount\""],
    );
    assert_error(
        &rule_error(r#"{"deny_if":[{"path":"args.a..b","op":"eq","value":1}]}"#),
        "tools.t.deny_if[0].path",
        &["empty segment"],
    );
}

#[test]
fn operators_must_be_known() {
    assert_error(
        &rule_error(r#"{"deny_if":[{"path":"args.a","op":"equals","value":1}]}"#),
        "tools.t.deny_if[0].op",
        &["unknown operator \"equals\"", "expected one of eq, neq, in, not_in, lt, lte, gt, gte, contains, prefix, regex, exists"],
    );
    assert!(
        rule_error(r#"{"deny_if":[{"path":"args.a","op":"not-in","value":[]}]}"#)
            .to_string()
            .contains("did you mean \"not_in\"?")
    );
}

#[test]
fn operands_must_fit_their_operator() {
    let op_error = |op: &str, value: &str| {
        rule_error(&format!(
            r#"{{"deny_if":[{{"path":"args.a","op":"{op}","value":{value}}}]}}"#
        ))
    };
    assert_error(
        &op_error("in", "\"Closed\""),
        "tools.t.deny_if[0].value",
        &["takes a list", "found \"Closed\""],
    );
    assert_error(
        &op_error("not_in", "1"),
        "tools.t.deny_if[0].value",
        &["takes a list"],
    );
    for op in ["lt", "lte", "gt", "gte"] {
        assert_error(
            &op_error(op, "\"100\""),
            "tools.t.deny_if[0].value",
            &["compares numbers", "found \"100\""],
        );
    }
    assert_error(
        &op_error("prefix", "1"),
        "tools.t.deny_if[0].value",
        &["takes a string"],
    );
    assert_error(
        &op_error("regex", "[]"),
        "tools.t.deny_if[0].value",
        &["takes a pattern"],
    );
    assert_error(
        &op_error("exists", "\"yes\""),
        "tools.t.deny_if[0].value",
        &["takes true or false"],
    );
}

#[test]
fn a_bad_regex_is_a_load_error() {
    assert_error(
        &rule_error(r#"{"deny_if":[{"path":"args.a","op":"regex","value":"(unclosed"}]}"#),
        "tools.t.deny_if[0].value",
        &["invalid regular expression", "unclosed group"],
    );
}

#[test]
fn long_values_are_cut_short_in_messages() {
    let long = "x".repeat(500);
    let err = error(&format!(r#"{{"version":"1","default":"{long}"}}"#));
    assert!(err.to_string().len() < 250, "{err}");
    assert!(err.to_string().contains("…"));
}

#[test]
fn ignore_case_is_a_boolean_for_string_comparisons() {
    let err = rule_error(
        r#"{"require": [{"path": "args.a", "op": "lte", "value": 1, "ignore_case": true}]}"#,
    );
    assert_error(
        &err,
        "tools.t.require[0].ignore_case",
        &["applies to the string comparisons"],
    );
    let err = rule_error(
        r#"{"require": [{"path": "args.a", "op": "eq", "value": "x", "ignore_case": "yes"}]}"#,
    );
    assert_error(
        &err,
        "tools.t.require[0].ignore_case",
        &["expected true or false"],
    );
}
