//! Conditions over call arguments: `{ "path", "op", "value", "reason"? }`.

use super::arg_path::ArgPath;
use regex::{Regex, RegexBuilder};
use serde_json::{Number, Value};
use std::cmp::Ordering;
use std::sync::Arc;

/// The most memory one compiled `regex` condition may take.
pub(crate) const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// One compiled condition. Evaluating it never allocates.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    pub(crate) path: ArgPath,
    pub(crate) op: Op,
    pub(crate) reason: Option<Arc<str>>,
    /// The reason to give when the policy gives none, such as
    /// `requirement not met: args.amount lte 100`; built at load so evaluation never formats.
    pub(crate) fallback: Arc<str>,
    /// With `ignore_case`: the operator with its strings lowercased, compared with the
    /// argument lowercased (one copy of the argument string per check).
    pub(crate) folded: Option<Op>,
}

/// Operators whose string comparisons `ignore_case` applies to.
pub(crate) const CASE_OPS: [&str; 6] = ["eq", "neq", "in", "not_in", "contains", "prefix"];

/// An operator with its validated operand.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Eq(Value),
    Neq(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Lt(Number),
    Lte(Number),
    Gt(Number),
    Gte(Number),
    Contains(Value),
    Prefix(String),
    Regex(Regex),
    Exists(bool),
}

/// Operator names as written in a policy, in the order the design lists them.
pub(crate) const OP_NAMES: [&str; 12] = [
    "eq", "neq", "in", "not_in", "lt", "lte", "gt", "gte", "contains", "prefix", "regex", "exists",
];

impl Op {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Eq(_) => "eq",
            Op::Neq(_) => "neq",
            Op::In(_) => "in",
            Op::NotIn(_) => "not_in",
            Op::Lt(_) => "lt",
            Op::Lte(_) => "lte",
            Op::Gt(_) => "gt",
            Op::Gte(_) => "gte",
            Op::Contains(_) => "contains",
            Op::Prefix(_) => "prefix",
            Op::Regex(_) => "regex",
            Op::Exists(_) => "exists",
        }
    }

    /// The operand as it is written in a policy.
    pub(crate) fn value(&self) -> Value {
        match self {
            Op::Eq(v) | Op::Neq(v) | Op::Contains(v) => v.clone(),
            Op::In(vs) | Op::NotIn(vs) => Value::Array(vs.clone()),
            Op::Lt(n) | Op::Lte(n) | Op::Gt(n) | Op::Gte(n) => Value::Number(n.clone()),
            Op::Prefix(s) => Value::String(s.clone()),
            Op::Regex(r) => Value::String(r.as_str().to_owned()),
            Op::Exists(b) => Value::Bool(*b),
        }
    }

    /// Builds an operator from its name and operand; the error says what the operand
    /// should have been.
    pub(crate) fn build(name: &str, value: &Value) -> Result<Op, String> {
        let number = |value: &Value| match value {
            Value::Number(n) => Ok(n.clone()),
            _ => Err(format!(
                "operator \"{name}\" compares numbers; expected a number"
            )),
        };
        let list = |value: &Value| match value {
            Value::Array(items) => Ok(items.clone()),
            _ => Err(format!(
                "operator \"{name}\" takes a list; expected an array such as [\"a\", \"b\"]"
            )),
        };
        Ok(match name {
            "eq" => Op::Eq(value.clone()),
            "neq" => Op::Neq(value.clone()),
            "in" => Op::In(list(value)?),
            "not_in" => Op::NotIn(list(value)?),
            "lt" => Op::Lt(number(value)?),
            "lte" => Op::Lte(number(value)?),
            "gt" => Op::Gt(number(value)?),
            "gte" => Op::Gte(number(value)?),
            "contains" => Op::Contains(value.clone()),
            "prefix" => match value {
                Value::String(s) => Op::Prefix(s.clone()),
                _ => return Err("operator \"prefix\" takes a string; expected a string".into()),
            },
            "regex" => match value {
                Value::String(s) => Op::Regex(
                    // Bounded so that a policy cannot make loading slow or memory-hungry:
                    // `\w{200}` (Unicode classes repeated) is refused, not compiled.
                    RegexBuilder::new(s)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .dfa_size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| match e {
                            regex::Error::CompiledTooBig(_) => format!(
                                "regular expression too large once compiled (over {} KiB); \
                                 use fewer or smaller repetitions, or ASCII classes such as \
                                 (?-u:\\w)",
                                REGEX_SIZE_LIMIT / 1024
                            ),
                            other => format!("invalid regular expression: {other}"),
                        })?,
                ),
                _ => return Err("operator \"regex\" takes a pattern; expected a string".into()),
            },
            "exists" => match value {
                Value::Bool(b) => Op::Exists(*b),
                _ => {
                    return Err(
                        "operator \"exists\" takes true or false; expected a boolean".into(),
                    )
                }
            },
            _ => return Err(format!("unknown operator {name:?}")),
        })
    }
}

impl PartialEq for Op {
    fn eq(&self, other: &Op) -> bool {
        self.name() == other.name() && self.value() == other.value()
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Condition) -> bool {
        self.path == other.path
            && self.op == other.op
            && self.reason == other.reason
            && self.folded.is_some() == other.folded.is_some()
    }
}

impl Condition {
    /// Whether the condition holds for these arguments. An absent path makes every
    /// operator false except `exists: false`; a type mismatch is false.
    pub(crate) fn holds(&self, args: Option<&Value>) -> bool {
        let Some(found) = self.path.resolve(args) else {
            return matches!(self.op, Op::Exists(false));
        };
        if let Some(folded) = &self.folded {
            return folded.holds_on(&fold_value(found));
        }
        self.op.holds_on(found)
    }
}

/// A value with its strings lowercased (a list's too), for `ignore_case`.
pub(crate) fn fold_value(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(s.to_lowercase()),
        Value::Array(items) => Value::Array(items.iter().map(fold_value).collect()),
        other => other.clone(),
    }
}

impl Op {
    /// The operator with its string operands lowercased, for `ignore_case`.
    pub(crate) fn folded(&self) -> Op {
        match self {
            Op::Eq(v) => Op::Eq(fold_value(v)),
            Op::Neq(v) => Op::Neq(fold_value(v)),
            Op::In(vs) => Op::In(vs.iter().map(fold_value).collect()),
            Op::NotIn(vs) => Op::NotIn(vs.iter().map(fold_value).collect()),
            Op::Contains(v) => Op::Contains(fold_value(v)),
            Op::Prefix(p) => Op::Prefix(p.to_lowercase()),
            other => other.clone(),
        }
    }

    fn holds_on(&self, found: &Value) -> bool {
        match (self, found) {
            (Op::Exists(want), _) => *want,
            (Op::Eq(v), x) => json_eq(x, v),
            (Op::Neq(v), x) => !json_eq(x, v),
            (Op::In(vs), x) => vs.iter().any(|v| json_eq(x, v)),
            (Op::NotIn(vs), x) => !vs.iter().any(|v| json_eq(x, v)),
            (Op::Lt(n), Value::Number(x)) => number_cmp(x, n) == Some(Ordering::Less),
            (Op::Lte(n), Value::Number(x)) => {
                matches!(number_cmp(x, n), Some(Ordering::Less | Ordering::Equal))
            }
            (Op::Gt(n), Value::Number(x)) => number_cmp(x, n) == Some(Ordering::Greater),
            (Op::Gte(n), Value::Number(x)) => {
                matches!(number_cmp(x, n), Some(Ordering::Greater | Ordering::Equal))
            }
            (Op::Contains(Value::String(needle)), Value::String(s)) => s.contains(needle.as_str()),
            (Op::Contains(v), Value::Array(items)) => items.iter().any(|item| json_eq(item, v)),
            (Op::Prefix(p), Value::String(s)) => s.starts_with(p.as_str()),
            (Op::Regex(r), Value::String(s)) => r.is_match(s),
            _ => false,
        }
    }
}

/// JSON equality where numbers compare by value, so `5` equals `5.0`.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

/// Compares two JSON numbers by value: exactly when both are integers, as `f64` otherwise.
pub(crate) fn number_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    match (as_integer(a), as_integer(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn as_integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(path: &str, op: &str, value: Value, args: Value) -> bool {
        let condition = Condition {
            path: ArgPath::parse_in(path, crate::policy::arg_path::PathRoot::Args).unwrap(),
            op: Op::build(op, &value).unwrap(),
            reason: None,
            fallback: "".into(),
            folded: None,
        };
        condition.holds(Some(&args))
    }

    #[test]
    fn eq_and_neq_compare_numbers_by_value() {
        assert!(holds("args.n", "eq", json!(5), json!({"n": 5.0})));
        assert!(holds(
            "args.n",
            "eq",
            json!([1, {"a": 2}]),
            json!({"n": [1.0, {"a": 2}]})
        ));
        assert!(!holds("args.n", "eq", json!("5"), json!({"n": 5})));
        assert!(holds("args.n", "neq", json!("5"), json!({"n": 5})));
        assert!(!holds("args.n", "neq", json!(5), json!({"n": 5})));
    }

    #[test]
    fn in_and_not_in_test_membership() {
        assert!(holds(
            "args.s",
            "in",
            json!(["Closed", "Open"]),
            json!({"s": "Closed"})
        ));
        assert!(!holds(
            "args.s",
            "in",
            json!(["Closed"]),
            json!({"s": "Open"})
        ));
        assert!(holds(
            "args.s",
            "not_in",
            json!(["Closed"]),
            json!({"s": "Open"})
        ));
        assert!(!holds(
            "args.s",
            "not_in",
            json!(["Closed"]),
            json!({"s": "Closed"})
        ));
    }

    #[test]
    fn ordering_operators_compare_numbers_only() {
        assert!(holds("args.a", "lt", json!(100), json!({"a": 99.5})));
        assert!(!holds("args.a", "lt", json!(100), json!({"a": 100})));
        assert!(holds("args.a", "lte", json!(100), json!({"a": 100})));
        assert!(holds("args.a", "gt", json!(-1), json!({"a": 0})));
        assert!(holds("args.a", "gte", json!(0.5), json!({"a": 0.5})));
        assert!(holds(
            "args.a",
            "gt",
            json!(u64::MAX - 1),
            json!({"a": u64::MAX})
        ));
        assert!(
            !holds("args.a", "lt", json!(100), json!({"a": "5"})),
            "strings never compare"
        );
    }

    #[test]
    fn contains_prefix_and_regex_work_on_strings_and_lists() {
        assert!(holds(
            "args.t",
            "contains",
            json!("urgent"),
            json!({"t": "very urgent!"})
        ));
        assert!(holds(
            "args.t",
            "contains",
            json!(3),
            json!({"t": [1, 2, 3.0]})
        ));
        assert!(!holds("args.t", "contains", json!(3), json!({"t": "123"})));
        assert!(holds(
            "args.t",
            "prefix",
            json!("re:"),
            json!({"t": "re: hello"})
        ));
        assert!(!holds(
            "args.t",
            "prefix",
            json!("re:"),
            json!({"t": ["re:"]})
        ));
        assert!(holds(
            "args.e",
            "regex",
            json!("^[a-z]+@example\\.com$"),
            json!({"e": "bo@example.com"})
        ));
        assert!(!holds(
            "args.e",
            "regex",
            json!("^[a-z]+@example\\.com$"),
            json!({"e": "bo@evil.com"})
        ));
    }

    #[test]
    fn absent_paths_make_everything_false_but_exists_false() {
        let args = json!({"a": {"b": null}});
        for (op, value) in [
            ("eq", json!(1)),
            ("neq", json!(1)),
            ("in", json!([1])),
            ("not_in", json!([1])),
            ("lt", json!(1)),
            ("contains", json!("x")),
            ("prefix", json!("x")),
            ("regex", json!(".*")),
            ("exists", json!(true)),
        ] {
            assert!(!holds("args.missing", op, value, args.clone()), "{op}");
        }
        assert!(holds("args.missing", "exists", json!(false), args.clone()));
        assert!(holds("args.a.b", "exists", json!(true), args));
    }

    #[test]
    fn paths_descend_objects_and_index_arrays() {
        let args = json!({"items": [{"id": 7}], "map": {"0": "zero"}});
        assert!(holds("args.items.0.id", "eq", json!(7), args.clone()));
        assert!(holds("args.map.0", "eq", json!("zero"), args.clone()));
        assert!(!holds(
            "args.items.1.id",
            "exists",
            json!(true),
            args.clone()
        ));
        assert!(!holds("args.items.x", "exists", json!(true), args));
    }

    #[test]
    fn missing_arguments_are_absent() {
        let condition = Condition {
            path: ArgPath::parse_in("args.a", crate::policy::arg_path::PathRoot::Args).unwrap(),
            op: Op::Exists(false),
            reason: None,
            fallback: "".into(),
            folded: None,
        };
        assert!(condition.holds(None));
    }
}
