//! Property tests: no input makes loading panic, and valid policies round-trip.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_policy::Policy;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Arbitrary JSON, biased toward the words a policy uses so that generated documents get
/// deep into validation instead of failing at the first field.
fn policy_like_json() -> impl Strategy<Value = Value> {
    let word = prop::sample::select(vec![
        "version",
        "1",
        "default",
        "allow",
        "deny",
        "require_approval",
        "hide",
        "all_tools",
        "tools",
        "t",
        "t*",
        "*",
        "action",
        "reason",
        "require",
        "deny_if",
        "approve_if",
        "limits",
        "rate_limit",
        "path",
        "args.a",
        "args.a.0",
        "op",
        "eq",
        "in",
        "lt",
        "regex",
        "exists",
        "contains",
        "value",
        "counter",
        "c",
        "window",
        "minute",
        "day",
        "max",
        "scope",
        "grant",
        "global",
        "cost",
        "args.n",
        "10/minute",
        "(",
        "",
        "\u{1}",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        word.clone().prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((word.clone(), inner), 0..6).prop_map(|pairs| Value::Object(
                pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

fn condition() -> impl Strategy<Value = Value> {
    let operand = prop_oneof![
        (
            prop::sample::select(vec!["eq", "neq", "contains"]),
            any::<i32>().prop_map(Value::from)
        ),
        (
            prop::sample::select(vec!["in", "not_in"]),
            prop::collection::vec("[a-z]{0,4}", 0..3).prop_map(|v| json!(v))
        ),
        (
            prop::sample::select(vec!["lt", "lte", "gt", "gte"]),
            (-1000.0f64..1000.0).prop_map(|f| json!(f))
        ),
        (Just("prefix"), "[a-z]{0,4}".prop_map(Value::from)),
        (Just("regex"), Just(json!("^[a-z]+$"))),
        (Just("exists"), any::<bool>().prop_map(Value::from)),
    ];
    (
        operand,
        "args(\\.[a-z0-9]{1,3}){1,3}",
        prop::option::of("[ -~]{0,10}"),
    )
        .prop_map(|((op, value), path, reason)| {
            let mut c = json!({"path": path, "op": op, "value": value});
            if let Some(reason) = reason {
                c["reason"] = json!(reason);
            }
            c
        })
}

fn limit(index: usize) -> impl Strategy<Value = Value> {
    let window = prop_oneof![
        prop::sample::select(vec!["second", "minute", "hour", "day"]).prop_map(Value::from),
        (1u64..=31_536_000).prop_map(Value::from),
    ];
    let cost = prop_oneof![
        Just(None),
        (1u64..1000).prop_map(|c| Some(json!(c))),
        Just(Some(json!("args.n")))
    ];
    (
        window,
        1u64..=(1 << 53),
        prop::sample::select(vec!["grant", "session", "agent", "global"]),
        cost,
        any::<bool>(),
    )
        .prop_map(move |(window, max, scope, cost, named)| {
            let mut l = json!({"window": window, "max": max, "scope": scope});
            if let Some(cost) = cost {
                l["cost"] = cost;
            }
            if named {
                // Unique per limit, so generated counters never disagree.
                l["counter"] = json!(format!("counter{index}"));
            }
            l
        })
}

fn rule(index: usize) -> impl Strategy<Value = Value> {
    let conditions = || prop::collection::vec(condition(), 0..3);
    (
        prop::sample::select(vec!["allow", "deny", "require_approval"]),
        prop::option::of("[ -~]{0,12}"),
        conditions(),
        conditions(),
        conditions(),
        prop::option::of(limit(index)),
        prop::option::of(prop_oneof![
            (
                1u64..100,
                prop::sample::select(vec!["second", "minute", "hour", "day"])
            )
                .prop_map(|(n, u)| json!(format!("{n}/{u}"))),
            (1u64..100).prop_map(|n| json!({"max": n, "window": 30, "scope": "agent"})),
        ]),
    )
        .prop_map(
            |(action, reason, require, deny_if, approve_if, limit, rate_limit)| {
                let mut r = Map::new();
                r.insert("action".into(), json!(action));
                if let Some(reason) = reason {
                    r.insert("reason".into(), json!(reason));
                }
                if action != "deny" {
                    r.insert("require".into(), json!(require));
                    r.insert("deny_if".into(), json!(deny_if));
                    r.insert("approve_if".into(), json!(approve_if));
                    if let Some(limit) = limit {
                        r.insert("limits".into(), json!([limit]));
                    }
                    if let Some(rate_limit) = rate_limit {
                        r.insert("rate_limit".into(), rate_limit);
                    }
                }
                Value::Object(r)
            },
        )
}

fn valid_policy() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["allow", "deny", "require_approval"]),
        prop::collection::vec("[a-z_]{1,6}\\*?", 0..4),
        prop::collection::btree_map("[a-z_]{1,8}\\*?[a-z]{0,3}", 0usize..1, 0..6),
    )
        .prop_flat_map(|(default, hide, keys)| {
            let rules: Vec<_> = keys
                .into_keys()
                .enumerate()
                .map(|(i, key)| (Just(key), rule(i)))
                .collect();
            (
                Just(default),
                Just(hide),
                rules,
                prop::option::of(limit(1000)),
            )
        })
        .prop_map(|(default, hide, rules, all_tools_limit)| {
            let tools: Map<String, Value> = rules.into_iter().collect();
            let mut p = json!({"version": "1", "default": default, "hide": hide, "tools": tools});
            if let Some(limit) = all_tools_limit {
                p["all_tools"] = json!({"limits": [limit]});
            }
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Policy::from_json(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_json_never_panics(value in policy_like_json()) {
        let _ = Policy::from_json(&value.to_string());
    }

    #[test]
    fn arbitrary_json_inside_a_rule_never_panics(rule in policy_like_json()) {
        let text = json!({"version": "1", "tools": {"t": rule}}).to_string();
        if let Err(err) = Policy::from_json(&text) {
            prop_assert!(err.path().is_some_and(|p| p.starts_with("tools.t")), "{}", err);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn valid_policies_load_and_round_trip(value in valid_policy()) {
        let policy = Policy::from_json(&value.to_string()).map_err(|e| TestCaseError::fail(format!("{e}\n{value}")))?;
        let written = serde_json::to_string(&policy).unwrap();
        let again = Policy::from_json(&written).map_err(|e| TestCaseError::fail(format!("{e}\n{written}")))?;
        prop_assert_eq!(again, policy);
    }
}

#[test]
fn deeply_nested_input_is_an_error_not_a_stack_overflow() {
    let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(Policy::from_json(&text).is_err());
    let text = format!(
        r#"{{"version":"1","tools":{{"t":{{"deny_if":[{{"path":"args.a","op":"eq","value":{}1{}}}]}}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    assert!(Policy::from_json(&text).is_ok());
}
