//! Turning policy JSON into a validated [`Policy`], with a path in every error.

use super::arg_path::ArgPath;
use super::condition::{Condition, Op, OP_NAMES};
use super::error::PolicyError;
use super::limit::{
    window_from_name, Cost, Counter, Limit, Refund, Scope, MAX_UNITS, MAX_WINDOW_SECS,
};
use super::rule::{Action, Rule};
use super::Policy;
use crate::json::parse_strict;
use crate::matcher::Matcher;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

const TOP_FIELDS: &[&str] = &[
    "version",
    "description",
    "default",
    "hide",
    "all_tools",
    "tools",
];
const RULE_FIELDS: &[&str] = &[
    "action",
    "reason",
    "require",
    "deny_if",
    "approve_if",
    "limits",
    "rate_limit",
];
const ALL_TOOLS_FIELDS: &[&str] = &["limits", "require", "deny_if", "approve_if"];
const CONDITION_FIELDS: &[&str] = &["path", "op", "value", "reason"];
const LIMIT_FIELDS: &[&str] = &["counter", "window", "max", "scope", "cost", "refund"];
const RATE_LIMIT_FIELDS: &[&str] = &["max", "window", "scope"];
const ACTIONS: &str = "\"allow\", \"deny\" or \"require_approval\"";
const SCOPES: &str = "\"grant\", \"session\", \"agent\" or \"global\"";
const WINDOWS: &str =
    "\"second\", \"minute\", \"hour\", \"day\", or a whole number of seconds from 1 to 31536000";

pub(super) fn parse(text: &str) -> Result<Policy, PolicyError> {
    let value = parse_strict(text).map_err(|e| PolicyError::syntax(&e))?;
    let top = object(
        &value,
        "",
        "the policy to be an object such as {\"version\": \"1\", \"tools\": {}}",
    )?;
    known_fields(top, "", TOP_FIELDS)?;

    match top.get("version") {
        Some(Value::String(v)) if v == "1" => {}
        Some(other) => {
            return Err(PolicyError::at(
                "version",
                format!("expected \"1\", found {}", describe(other)),
            ))
        }
        None => {
            return Err(PolicyError::at(
                "",
                "missing field \"version\"; add \"version\": \"1\"",
            ))
        }
    }
    let description = optional_string(top, "", "description")?.map(str::to_owned);
    let default = match optional_string(top, "", "default")? {
        Some(name) => action(name, "default")?,
        None => Action::Deny,
    };

    let mut hide = Vec::new();
    if let Some(list) = top.get("hide") {
        for (i, item) in array(list, "hide", "a list of tool names or globs")?
            .iter()
            .enumerate()
        {
            let path = index(&join("", "hide"), i);
            let Value::String(name) = item else {
                return Err(PolicyError::at(
                    &path,
                    format!("expected a tool name or glob, found {}", describe(item)),
                ));
            };
            check_tool_key(name, &path)?;
            hide.push(Arc::<str>::from(name.as_str()));
        }
    }

    let mut counters = Counters::default();
    let all_tools = match top.get("all_tools") {
        Some(v) => {
            let map = object(
                v,
                "all_tools",
                "an object with limits, require, deny_if or approve_if",
            )?;
            known_fields(map, "all_tools", ALL_TOOLS_FIELDS)?;
            body("all_tools", map, "all_tools", Action::Allow, &mut counters)?
        }
        None => empty_rule("all_tools"),
    };

    let mut rules = Vec::new();
    if let Some(v) = top.get("tools") {
        let map = object(v, "tools", "an object mapping tool names or globs to rules")?;
        for (key, rule_value) in map {
            let path = join("tools", key);
            check_tool_key(key, &path)?;
            let rule_map = object(
                rule_value,
                &path,
                "a rule: an object such as {} or {\"action\": \"deny\"}",
            )?;
            known_fields(rule_map, &path, RULE_FIELDS)?;
            rules.push(rule(key, rule_map, &path, &mut counters)?);
        }
    }

    let matcher = Arc::new(Matcher::new(
        rules.iter().enumerate().map(|(i, r)| (&*r.key, i)),
    ));
    let hidden = Arc::new(Matcher::new(hide.iter().map(|key| (&**key, 0))));
    Ok(Policy {
        description,
        default,
        hide,
        all_tools,
        rules,
        matcher,
        hidden,
    })
}

fn empty_rule(key: &str) -> Rule {
    Rule {
        key: key.into(),
        glob: key.contains('*'),
        action: Action::Allow,
        reason: None,
        require: Vec::new(),
        deny_if: Vec::new(),
        approve_if: Vec::new(),
        limits: Vec::new(),
        rate_limit: None,
    }
}

fn rule(
    key: &str,
    map: &Map<String, Value>,
    path: &str,
    counters: &mut Counters,
) -> Result<Rule, PolicyError> {
    let action = match optional_string(map, path, "action")? {
        Some(name) => action(name, &join(path, "action"))?,
        None => Action::Allow,
    };
    if action == Action::Deny {
        for field in ["require", "deny_if", "approve_if", "limits", "rate_limit"] {
            if map.get(field).is_some_and(|v| !is_empty_list(v)) {
                return Err(PolicyError::at(
                    &join(path, field),
                    format!(
                        "this rule's action is \"deny\", so it refuses every call and \
                         \"{field}\" would never apply; remove \"{field}\" or change the action"
                    ),
                ));
            }
        }
    }
    let mut rule = body(key, map, path, action, counters)?;
    rule.reason = optional_string(map, path, "reason")?.map(Arc::from);
    if let Some(v) = map.get("rate_limit") {
        let rate_path = join(path, "rate_limit");
        let (max, window_secs, scope) = rate_limit(v, &rate_path)?;
        let counter = counters.get(key, window_secs, scope, &rate_path)?;
        rule.rate_limit = Some(Limit {
            counter,
            max,
            cost: Cost::Fixed(1),
            refund: Refund::default(),
        });
    }
    Ok(rule)
}

/// The parts a rule shares with `all_tools`: conditions and limits.
fn body(
    key: &str,
    map: &Map<String, Value>,
    path: &str,
    action: Action,
    counters: &mut Counters,
) -> Result<Rule, PolicyError> {
    let mut rule = empty_rule(key);
    rule.action = action;
    rule.require = conditions(map, path, "require")?;
    rule.deny_if = conditions(map, path, "deny_if")?;
    rule.approve_if = conditions(map, path, "approve_if")?;
    if let Some(v) = map.get("limits") {
        let list_path = join(path, "limits");
        for (i, item) in array(v, &list_path, "a list of limits")?.iter().enumerate() {
            rule.limits
                .push(limit(item, &index(&list_path, i), counters)?);
        }
    }
    Ok(rule)
}

fn conditions(
    map: &Map<String, Value>,
    path: &str,
    field: &str,
) -> Result<Vec<Condition>, PolicyError> {
    let Some(v) = map.get(field) else {
        return Ok(Vec::new());
    };
    let list_path = join(path, field);
    let items = array(
        v,
        &list_path,
        "a list of conditions such as [{\"path\": \"args.amount\", \"op\": \"lte\", \"value\": 100}]",
    )?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| condition(item, &index(&list_path, i), field))
        .collect()
}

fn condition(v: &Value, path: &str, field: &str) -> Result<Condition, PolicyError> {
    let map = object(
        v,
        path,
        "a condition such as {\"path\": \"args.status\", \"op\": \"eq\", \"value\": \"Open\"}",
    )?;
    known_fields(map, path, CONDITION_FIELDS)?;
    let arg_path_text = required_string(map, path, "path", "a path such as \"args.amount\"")?;
    let arg_path =
        ArgPath::parse(arg_path_text).map_err(|msg| PolicyError::at(&join(path, "path"), msg))?;
    let op_name = required_string(map, path, "op", "an operator name")?;
    if !OP_NAMES.contains(&op_name) {
        return Err(PolicyError::at(
            &join(path, "op"),
            format!(
                "unknown operator {}; expected one of {}{}",
                describe_str(op_name),
                OP_NAMES.join(", "),
                suggestion(op_name, &OP_NAMES)
            ),
        ));
    }
    let Some(operand) = map.get("value") else {
        return Err(PolicyError::at(
            path,
            format!("missing field \"value\": the operand of \"{op_name}\""),
        ));
    };
    let op = Op::build(op_name, operand).map_err(|msg| {
        PolicyError::at(
            &join(path, "value"),
            format!("{msg}, found {}", describe(operand)),
        )
    })?;
    let because = match field {
        "require" => "requirement not met:",
        "deny_if" => "denied because",
        _ => "needs approval because",
    };
    let fallback = format!("{because} {} {op_name} {operand}", arg_path.as_str());
    Ok(Condition {
        path: arg_path,
        op,
        reason: optional_string(map, path, "reason")?.map(Arc::from),
        fallback: fallback.into(),
    })
}

fn limit(v: &Value, path: &str, counters: &mut Counters) -> Result<Limit, PolicyError> {
    let map = object(
        v,
        path,
        "a limit such as {\"window\": \"minute\", \"max\": 30}",
    )?;
    known_fields(map, path, LIMIT_FIELDS)?;
    let window_secs = match map.get("window") {
        Some(w) => window(w, &join(path, "window"))?,
        None => {
            return Err(PolicyError::at(
                path,
                format!("missing field \"window\"; expected {WINDOWS}"),
            ))
        }
    };
    let max = match map.get("max") {
        Some(m) => units(m, &join(path, "max"))?,
        None => {
            return Err(PolicyError::at(
                path,
                "missing field \"max\": how many units the window admits, such as \"max\": 30",
            ))
        }
    };
    let scope = match optional_string(map, path, "scope")? {
        Some(name) => scope(name, &join(path, "scope"))?,
        None => Scope::Grant,
    };
    let cost = match map.get("cost") {
        None => Cost::Fixed(1),
        Some(Value::String(text)) => Cost::Argument(
            ArgPath::parse(text).map_err(|msg| PolicyError::at(&join(path, "cost"), msg))?,
        ),
        Some(n @ Value::Number(_)) => Cost::Fixed(units(n, &join(path, "cost"))?),
        Some(other) => {
            return Err(PolicyError::at(
                &join(path, "cost"),
                format!(
                "expected a positive integer or an argument path such as \"args.amount\", found {}",
                describe(other)
            ),
            ))
        }
    };
    let refund = match optional_string(map, path, "refund")? {
        None => Refund::default(),
        Some(name) => Refund::from_name(name).ok_or_else(|| {
            PolicyError::at(
                &join(path, "refund"),
                format!(
                    "expected \"not_run\", \"failed\" or \"never\", found {}{}",
                    describe_str(name),
                    suggestion(name, &["not_run", "failed", "never"])
                ),
            )
        })?,
    };
    let counter = match map.get("counter") {
        None => Arc::new(Counter::with_identity(path, true, window_secs, scope)),
        Some(Value::String(name)) => {
            let counter_path = join(path, "counter");
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(PolicyError::at(
                    &counter_path,
                    "expected a non-empty counter name without control characters",
                ));
            }
            counters.get(name, window_secs, scope, &counter_path)?
        }
        Some(other) => {
            return Err(PolicyError::at(
                &join(path, "counter"),
                format!("expected a counter name, found {}", describe(other)),
            ))
        }
    };
    Ok(Limit {
        counter,
        max,
        cost,
        refund,
    })
}

fn rate_limit(v: &Value, path: &str) -> Result<(u64, u64, Scope), PolicyError> {
    match v {
        Value::String(text) => {
            let malformed = || {
                PolicyError::at(
                    path,
                    format!(
                        "expected \"<max>/<second|minute|hour|day>\" such as \"30/minute\", found {}",
                        describe_str(text)
                    ),
                )
            };
            let (count, unit) = text.split_once('/').ok_or_else(malformed)?;
            if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            let max: u64 = count.parse().map_err(|_| malformed())?;
            let window = window_from_name(unit).ok_or_else(malformed)?;
            if !(1..=MAX_UNITS).contains(&max) {
                return Err(PolicyError::at(
                    path,
                    format!("expected a max from 1 to {MAX_UNITS}, found {max}"),
                ));
            }
            Ok((max, window, Scope::Session))
        }
        Value::Object(map) => {
            known_fields(map, path, RATE_LIMIT_FIELDS)?;
            let max = match map.get("max") {
                Some(m) => units(m, &join(path, "max"))?,
                None => return Err(PolicyError::at(path, "missing field \"max\"")),
            };
            let window = match map.get("window") {
                Some(w) => window(w, &join(path, "window"))?,
                None => {
                    return Err(PolicyError::at(
                        path,
                        format!("missing field \"window\"; expected {WINDOWS}"),
                    ))
                }
            };
            let scope = match optional_string(map, path, "scope")? {
                Some(name) => scope(name, &join(path, "scope"))?,
                None => Scope::Session,
            };
            Ok((max, window, scope))
        }
        other => Err(PolicyError::at(
            path,
            format!(
                "expected \"<max>/<window>\" such as \"30/minute\", or an object such as \
                 {{\"max\": 30, \"window\": \"minute\"}}, found {}",
                describe(other)
            ),
        )),
    }
}

/// Named counters seen so far, so that limits sharing a counter agree on its identity.
#[derive(Default)]
struct Counters {
    named: HashMap<String, (Arc<Counter>, String)>,
}

impl Counters {
    fn get(
        &mut self,
        name: &str,
        window_secs: u64,
        scope: Scope,
        path: &str,
    ) -> Result<Arc<Counter>, PolicyError> {
        if let Some((existing, first_path)) = self.named.get(name) {
            if existing.window_secs() != window_secs || existing.scope() != scope {
                return Err(PolicyError::at(
                    path,
                    format!(
                        "counter {} is used here with window {} s and scope \"{}\", but at {} \
                         with window {} s and scope \"{}\"; limits sharing a counter must use \
                         the same window and scope (or give one a different counter name)",
                        describe_str(name),
                        window_secs,
                        scope,
                        first_path,
                        existing.window_secs(),
                        existing.scope()
                    ),
                ));
            }
            return Ok(Arc::clone(existing));
        }
        let counter = Arc::new(Counter::with_identity(name, false, window_secs, scope));
        self.named
            .insert(name.to_owned(), (Arc::clone(&counter), path.to_owned()));
        Ok(counter)
    }
}

fn window(v: &Value, path: &str) -> Result<u64, PolicyError> {
    let found = match v {
        Value::String(name) => match window_from_name(name) {
            Some(secs) => return Ok(secs),
            None => format!(
                "{}{}",
                describe(v),
                suggestion(name, &["second", "minute", "hour", "day"])
            ),
        },
        Value::Number(n) => match n.as_u64() {
            Some(secs) if (1..=MAX_WINDOW_SECS).contains(&secs) => return Ok(secs),
            _ => describe(v),
        },
        _ => describe(v),
    };
    Err(PolicyError::at(
        path,
        format!("expected {WINDOWS}, found {found}"),
    ))
}

/// An integer count of units: 1 ..= 2^53.
fn units(v: &Value, path: &str) -> Result<u64, PolicyError> {
    match v.as_u64() {
        Some(n) if (1..=MAX_UNITS).contains(&n) => Ok(n),
        _ => Err(PolicyError::at(
            path,
            format!(
                "expected an integer from 1 to {MAX_UNITS}, found {}",
                describe(v)
            ),
        )),
    }
}

fn action(name: &str, path: &str) -> Result<Action, PolicyError> {
    Action::from_name(name).ok_or_else(|| {
        PolicyError::at(
            path,
            format!(
                "expected {ACTIONS}, found {}{}",
                describe_str(name),
                suggestion(name, &["allow", "deny", "require_approval"])
            ),
        )
    })
}

fn scope(name: &str, path: &str) -> Result<Scope, PolicyError> {
    Scope::from_name(name).ok_or_else(|| {
        PolicyError::at(
            path,
            format!(
                "expected {SCOPES}, found {}{}",
                describe_str(name),
                suggestion(name, &["grant", "session", "agent", "global"])
            ),
        )
    })
}

fn check_tool_key(key: &str, path: &str) -> Result<(), PolicyError> {
    if key.is_empty() {
        return Err(PolicyError::at(
            path,
            "expected a tool name or glob such as \"whmcs_get_*\", found an empty string",
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(PolicyError::at(
            path,
            format!(
                "expected a tool name or glob without control characters, found {}",
                describe_str(key)
            ),
        ));
    }
    Ok(())
}

fn object<'v>(
    v: &'v Value,
    path: &str,
    expected: &str,
) -> Result<&'v Map<String, Value>, PolicyError> {
    match v {
        Value::Object(map) => Ok(map),
        other => Err(PolicyError::at(
            path,
            format!("expected {expected}, found {}", describe(other)),
        )),
    }
}

fn array<'v>(v: &'v Value, path: &str, expected: &str) -> Result<&'v [Value], PolicyError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(PolicyError::at(
            path,
            format!("expected {expected}, found {}", describe(other)),
        )),
    }
}

fn is_empty_list(v: &Value) -> bool {
    matches!(v, Value::Array(items) if items.is_empty())
}

fn optional_string<'v>(
    map: &'v Map<String, Value>,
    path: &str,
    field: &str,
) -> Result<Option<&'v str>, PolicyError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(PolicyError::at(
            &join(path, field),
            format!("expected a string, found {}", describe(other)),
        )),
    }
}

fn required_string<'v>(
    map: &'v Map<String, Value>,
    path: &str,
    field: &str,
    expected: &str,
) -> Result<&'v str, PolicyError> {
    optional_string(map, path, field)?.ok_or_else(|| {
        PolicyError::at(
            path,
            format!("missing field \"{field}\": expected {expected}"),
        )
    })
}

fn known_fields(map: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), PolicyError> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(PolicyError::at(
                &join(path, key),
                format!(
                    "unknown field {}; expected one of {}{}",
                    describe_str(key),
                    allowed.join(", "),
                    suggestion(key, allowed)
                ),
            ));
        }
    }
    Ok(())
}

/// `" (did you mean \"limits\"?)"` when a known word is a small edit away.
fn suggestion(found: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|word| (edit_distance(found, word), *word))
        .filter(|&(distance, word)| distance <= 2.max(word.len() / 4) && distance > 0)
        .min()
        .map(|(_, word)| format!(" (did you mean \"{word}\"?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = i;
        let mut left = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let substitute = diagonal + usize::from(ca != *cb);
            let next = substitute.min(up + 1).min(left + 1);
            diagonal = up;
            if let Some(slot) = row.get_mut(j + 1) {
                *slot = next;
            }
            left = next;
        }
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
    }
    row.last().copied().unwrap_or(0)
}

/// `path.key`, or `path["odd key"]` when the key is not a plain name.
pub(crate) fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'*');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", describe_str(key)),
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => describe_str(s),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A JSON-quoted string, cut short when long so messages stay readable.
fn describe_str(s: &str) -> String {
    const LIMIT: usize = 60;
    match s.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!(
            "{}…",
            serde_json::to_string(s.get(..cut).unwrap_or_default()).unwrap_or_default()
        ),
        None => serde_json::to_string(s).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("limts", "limits"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("minutes", "minute"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn paths_quote_keys_that_are_not_plain_names() {
        assert_eq!(join("tools", "whmcs_get_*"), "tools.whmcs_get_*");
        assert_eq!(join("tools", "a.b"), "tools[\"a.b\"]");
        assert_eq!(join("", "version"), "version");
    }
}
