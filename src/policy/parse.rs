//! Turning policy JSON into a validated [`Policy`], with a path in every error.

use super::annotations::{is_pin, AnnotationRule, Hints, OnDrift};
use super::arg_path::ArgPath;
use super::condition::{Condition, Op, CASE_OPS, OP_NAMES};
use super::error::PolicyError;
use super::limit::{
    window_from_name, Cost, Counter, Limit, Refund, Scope, MAX_UNITS, MAX_WINDOW_SECS,
};
use super::rule::{Action, Rule};
use super::{CaseGuard, Policy};
use crate::json::parse_strict;
use crate::matcher::Matcher;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const TOP_FIELDS: &[&str] = &[
    "$schema",
    "version",
    "description",
    "default",
    "hide",
    "all_tools",
    "annotations",
    "pins",
    "on_drift",
    "tools",
];
/// An annotation rule's fields: `match`, then a rule's.
const ANNOTATION_FIELDS: &[&str] = &[
    "match",
    "action",
    "reason",
    "require",
    "deny_if",
    "approve_if",
    "limits",
    "rate_limit",
];
const RULE_FIELDS: &[&str] = ANNOTATION_FIELDS.split_at(1).1;
const ALL_TOOLS_FIELDS: &[&str] = &["limits", "require", "deny_if", "approve_if"];
const CONDITION_FIELDS: &[&str] = &["path", "op", "value", "reason", "ignore_case"];
const LIMIT_FIELDS: &[&str] = &["counter", "window", "max", "scope", "key", "cost", "refund"];
const RATE_LIMIT_FIELDS: &[&str] = &["max", "window", "scope"];
const ACTIONS: &str = "\"allow\", \"deny\" or \"require_approval\"";
const SCOPES: &str = "\"grant\", \"session\", \"agent\" or \"global\"";
const WINDOWS: &str =
    "\"second\", \"minute\", \"hour\", \"day\", or a whole number of seconds from 1 to 31536000";

/// The longest rule key, `hide` entry or tool name the engine considers, in bytes: MCP
/// tool names are at most 128 characters, and a bound keeps matching cheap.
pub(crate) const MAX_NAME_BYTES: usize = 512;
/// The most `regex` conditions one policy may have (each is bounded in size too).
const MAX_REGEXES: usize = 256;

/// Problems found so far: loading goes on after one, so that every problem is reported.
#[derive(Default)]
struct Problems(Vec<PolicyError>);

impl Problems {
    /// The value, or `None` after noting why there is none.
    fn take<T>(&mut self, result: Result<T, PolicyError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    fn into_result<T>(self, value: T) -> Result<T, PolicyError> {
        match PolicyError::combine(self.0) {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}

pub(super) fn parse(text: &str) -> Result<Policy, PolicyError> {
    // A byte-order mark, as some editors write, is not part of the JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(PolicyError::at(
            "",
            "the policy is empty; write a JSON object such as \
             {\"version\": \"1\", \"default\": \"deny\", \"tools\": {}}",
        ));
    }
    let value = parse_strict(text).map_err(|e| match looks_like_yaml(text) {
        true => PolicyError::at(
            "",
            "this looks like YAML; a policy is JSON, such as \
             {\"version\": \"1\", \"default\": \"deny\", \"tools\": {}}",
        ),
        false => PolicyError::syntax(&e),
    })?;
    from_value(&value)
}

/// Text that does not start like JSON but has a `name:` line or a `---` marker.
fn looks_like_yaml(text: &str) -> bool {
    let start = text.trim_start();
    if start.starts_with(['{', '[', '"']) {
        return false;
    }
    start.starts_with("---")
        || start.lines().any(|line| {
            let line = line.trim_start_matches([' ', '-']);
            line.split_once(':').is_some_and(|(key, _)| {
                !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '"' | '\''))
            })
        })
}

pub(super) fn from_value(value: &Value) -> Result<Policy, PolicyError> {
    let top = object(
        value,
        "",
        "the policy to be an object such as {\"version\": \"1\", \"tools\": {}}",
    )?;
    let mut problems = Problems::default();
    problems.take(known_fields(top, "", TOP_FIELDS));

    match top.get("version") {
        Some(Value::String(v)) if v == "1" => {}
        Some(other) => problems.0.push(PolicyError::at(
            "version",
            format!("expected \"1\", found {}", describe(other)),
        )),
        None => problems.0.push(PolicyError::at(
            "",
            "missing field \"version\"; add \"version\": \"1\"",
        )),
    }
    // `$schema` only helps editors find the schema; it must be a string if present.
    problems.take(optional_string(top, "", "$schema"));
    let description = problems
        .take(optional_string(top, "", "description"))
        .flatten()
        .map(str::to_owned);
    let default = match problems.take(optional_string(top, "", "default")).flatten() {
        Some(name) => problems
            .take(action(name, "default"))
            .unwrap_or(Action::Deny),
        None => Action::Deny,
    };

    let mut hide = Vec::new();
    if let Some(list) = top.get("hide") {
        let items = problems.take(array(list, "hide", "a list of tool names or globs"));
        for (i, item) in items.unwrap_or_default().iter().enumerate() {
            let path = index(&join("", "hide"), i);
            let Value::String(name) = item else {
                problems.0.push(PolicyError::at(
                    &path,
                    format!("expected a tool name or glob, found {}", describe(item)),
                ));
                continue;
            };
            if problems.take(check_tool_key(name, &path)).is_some() {
                hide.push(Arc::<str>::from(name.as_str()));
            }
        }
    }

    let mut counters = Counters::default();
    let all_tools = top
        .get("all_tools")
        .and_then(|v| {
            let expected = "an object with limits, require, deny_if or approve_if";
            let map = problems.take(object(v, "all_tools", expected))?;
            problems.take(known_fields(map, "all_tools", ALL_TOOLS_FIELDS));
            problems.take(body(
                "all_tools",
                map,
                "all_tools",
                Action::Allow,
                &mut counters,
            ))
        })
        .unwrap_or_else(|| empty_rule("all_tools"));

    let mut rules = Vec::new();
    if let Some(v) = top.get("tools") {
        let map = problems.take(object(
            v,
            "tools",
            "an object mapping tool names or globs to rules",
        ));
        for (key, rule_value) in map.into_iter().flatten() {
            let path = join("tools", key);
            if problems.take(check_tool_key(key, &path)).is_none() {
                continue;
            }
            let expected = "a rule: an object such as {} or {\"action\": \"deny\"}";
            let Some(rule_map) = problems.take(object(rule_value, &path, expected)) else {
                continue;
            };
            problems.take(known_fields(rule_map, &path, RULE_FIELDS));
            if let Some(mut rule) = problems.take(rule(key, rule_map, &path, &mut counters)) {
                rule.slot = u32::try_from(rules.len()).unwrap_or(u32::MAX);
                rules.push(rule);
            }
        }
    }
    let mut annotations = Vec::new();
    if let Some(list) = top.get("annotations") {
        let expected = "a list of annotation rules such as \
                        [{\"match\": {\"readOnlyHint\": true}, \"action\": \"allow\"}]";
        for (i, item) in problems
            .take(array(list, "annotations", expected))
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let path = index("annotations", i);
            let expected = "an annotation rule: a rule with \"match\", such as \
                            {\"match\": {\"destructiveHint\": true}, \"action\": \"require_approval\"}";
            let Some(map) = problems.take(object(item, &path, expected)) else {
                continue;
            };
            problems.take(known_fields(map, &path, ANNOTATION_FIELDS));
            let hints = match map.get("match") {
                Some(Value::Object(hints)) => match Hints::parse_match(hints) {
                    Ok(hints) => Some(hints),
                    Err((field, message)) => {
                        problems.0.push(PolicyError::at(
                            &join(&join(&path, "match"), &field),
                            message,
                        ));
                        None
                    }
                },
                Some(other) => {
                    problems.0.push(PolicyError::at(
                        &join(&path, "match"),
                        format!(
                            "expected an object of hints such as {{\"readOnlyHint\": true}}, found {}",
                            describe(other)
                        ),
                    ));
                    None
                }
                None => {
                    problems.0.push(PolicyError::at(
                        &path,
                        "missing field \"match\": the hints a tool must have, such as \
                         {\"readOnlyHint\": true} ({} matches every tool)",
                    ));
                    None
                }
            };
            let rule = problems.take(rule(&path, map, &path, &mut counters));
            if let (Some(hints), Some(mut rule)) = (hints, rule) {
                rule.slot = u32::try_from(rules.len() + annotations.len()).unwrap_or(u32::MAX);
                annotations.push(AnnotationRule { hints, rule });
            }
        }
    }

    let mut pins = BTreeMap::new();
    if let Some(v) = top.get("pins") {
        let expected = "an object mapping tool names to \"sha256:<64 hex digits>\" \
                        (mcp-policy pin --tools TOOLS.json prints one)";
        for (name, digest) in problems
            .take(object(v, "pins", expected))
            .into_iter()
            .flatten()
        {
            let path = join("pins", name);
            if name.contains('*') {
                problems.0.push(PolicyError::at(
                    &path,
                    "pins name exact tools; a glob cannot be pinned",
                ));
                continue;
            }
            if problems.take(check_tool_key(name, &path)).is_none() {
                continue;
            }
            match digest {
                Value::String(text) if is_pin(text) => {
                    pins.insert(name.clone(), text.clone());
                }
                other => problems.0.push(PolicyError::at(
                    &path,
                    format!(
                        "expected \"sha256:\" and 64 lowercase hex digits (as mcp-policy pin \
                         prints), found {}",
                        describe(other)
                    ),
                )),
            }
        }
    }
    let on_drift = match problems
        .take(optional_string(top, "", "on_drift"))
        .flatten()
    {
        None => OnDrift::default(),
        Some(name) => match OnDrift::from_name(name) {
            Some(on_drift) => on_drift,
            None => {
                problems.0.push(PolicyError::at(
                    "on_drift",
                    format!(
                        "expected \"deny\", \"hide\" or \"require_approval\", found {}{}",
                        describe_str(name),
                        suggestion(name, &["deny", "hide", "require_approval"])
                    ),
                ));
                OnDrift::default()
            }
        },
    };

    let regexes = std::iter::once(&all_tools)
        .chain(&rules)
        .chain(annotations.iter().map(|a| &a.rule))
        .flat_map(|r| r.require.iter().chain(&r.deny_if).chain(&r.approve_if))
        .filter(|c| c.op.name() == "regex")
        .count();
    if regexes > MAX_REGEXES {
        problems.0.push(PolicyError::at(
            "",
            format!(
                "the policy has {regexes} regex conditions; at most {MAX_REGEXES} are allowed, \
                 so that loading it stays fast"
            ),
        ));
    }

    let matcher = Matcher::new(&hide, rules.iter().map(|r| &*r.key));
    let mut policy = Policy {
        id: Policy::next_id(),
        description,
        default,
        hide,
        all_tools,
        rules,
        annotations,
        pins,
        on_drift,
        matcher,
        case_guard: Arc::default(),
    };
    policy.case_guard = Arc::new(CaseGuard::new(policy.argument_names()));
    problems.into_result(policy)
}

fn empty_rule(key: &str) -> Rule {
    Rule {
        key: key.into(),
        slot: 0,
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
    let mut problems = Problems::default();
    let action = match problems
        .take(optional_string(map, path, "action"))
        .flatten()
    {
        Some(name) => problems.take(action(name, &join(path, "action"))),
        None => Some(Action::Allow),
    };
    if action == Some(Action::Deny) {
        for field in ["require", "deny_if", "approve_if", "limits", "rate_limit"] {
            if map.get(field).is_some_and(|v| !is_empty_list(v)) {
                problems.0.push(PolicyError::at(
                    &join(path, field),
                    format!(
                        "this rule's action is \"deny\", so it refuses every call and \
                         \"{field}\" would never apply; remove \"{field}\" or change the action"
                    ),
                ));
            }
        }
    }
    let body = problems.take(body(
        key,
        map,
        path,
        action.unwrap_or(Action::Allow),
        counters,
    ));
    let reason = problems
        .take(optional_string(map, path, "reason"))
        .flatten()
        .map(Arc::from);
    let mut rate = None;
    if let Some(v) = map.get("rate_limit") {
        let rate_path = join(path, "rate_limit");
        let limit = rate_limit(v, &rate_path).and_then(|(max, window_secs, scope)| {
            let (counter, slot) = counters.get(key, window_secs, scope, None, &rate_path)?;
            Ok(Limit {
                counter,
                key: None,
                slot,
                max,
                cost: Cost::Fixed(1),
                refund: Refund::default(),
            })
        });
        rate = problems.take(limit);
    }
    let mut rule = body.unwrap_or_else(|| empty_rule(key));
    rule.reason = reason;
    rule.rate_limit = rate;
    problems.into_result(rule)
}

/// The parts a rule shares with `all_tools`: conditions and limits.
fn body(
    key: &str,
    map: &Map<String, Value>,
    path: &str,
    action: Action,
    counters: &mut Counters,
) -> Result<Rule, PolicyError> {
    let mut problems = Problems::default();
    let mut rule = empty_rule(key);
    rule.action = action;
    rule.require = problems
        .take(conditions(map, path, "require"))
        .unwrap_or_default();
    rule.deny_if = problems
        .take(conditions(map, path, "deny_if"))
        .unwrap_or_default();
    rule.approve_if = problems
        .take(conditions(map, path, "approve_if"))
        .unwrap_or_default();
    if let Some(v) = map.get("limits") {
        let list_path = join(path, "limits");
        let items = problems.take(array(v, &list_path, "a list of limits"));
        for (i, item) in items.unwrap_or_default().iter().enumerate() {
            if let Some(limit) = problems.take(limit(item, &index(&list_path, i), counters)) {
                rule.limits.push(limit);
            }
        }
    }
    problems.into_result(rule)
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
    let mut problems = Problems::default();
    let parsed = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| problems.take(condition(item, &index(&list_path, i), field)))
        .collect();
    problems.into_result(parsed)
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
    let ignore_case = match map.get("ignore_case") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) if CASE_OPS.contains(&op_name) => true,
        Some(Value::Bool(true)) => {
            return Err(PolicyError::at(
                &join(path, "ignore_case"),
                format!(
                    "ignore_case applies to the string comparisons of {}; \"{op_name}\" has none",
                    CASE_OPS.join(", ")
                ),
            ))
        }
        Some(other) => {
            return Err(PolicyError::at(
                &join(path, "ignore_case"),
                format!("expected true or false, found {}", describe(other)),
            ))
        }
    };
    let fallback = format!("{because} {} {op_name} {operand}", arg_path.as_str());
    Ok(Condition {
        path: arg_path,
        folded: ignore_case.then(|| op.folded()),
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
    let key = match map.get("key") {
        None => None,
        Some(Value::String(text)) => {
            Some(ArgPath::parse(text).map_err(|msg| PolicyError::at(&join(path, "key"), msg))?)
        }
        Some(other) => {
            return Err(PolicyError::at(
                &join(path, "key"),
                format!(
                    "expected an argument path such as \"args.ticket_id\", found {}",
                    describe(other)
                ),
            ))
        }
    };
    let key_text = key.as_ref().map(ArgPath::as_str);
    let (counter, slot) = match map.get("counter") {
        None => counters.private(path, window_secs, scope, key_text),
        Some(Value::String(name)) => {
            let counter_path = join(path, "counter");
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(PolicyError::at(
                    &counter_path,
                    "expected a non-empty counter name without control characters",
                ));
            }
            counters.get(name, window_secs, scope, key_text, &counter_path)?
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
        key,
        slot,
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

/// Named counters seen so far, so that limits sharing a counter agree on its identity;
/// and the slot numbers of every counter, for the engine's per-thread copies.
#[derive(Default)]
struct Counters {
    named: HashMap<String, (Arc<Counter>, u32, String)>,
    slots: u32,
}

impl Counters {
    /// The counter of a limit that names none.
    fn private(
        &mut self,
        path: &str,
        window_secs: u64,
        scope: Scope,
        key: Option<&str>,
    ) -> (Arc<Counter>, u32) {
        let slot = self.next_slot();
        let counter = Arc::new(Counter::with_identity(path, true, window_secs, scope, key));
        (counter, slot)
    }

    fn next_slot(&mut self) -> u32 {
        self.slots = self.slots.saturating_add(1);
        self.slots - 1
    }

    fn get(
        &mut self,
        name: &str,
        window_secs: u64,
        scope: Scope,
        key: Option<&str>,
        path: &str,
    ) -> Result<(Arc<Counter>, u32), PolicyError> {
        if let Some((existing, slot, first_path)) = self.named.get(name) {
            if existing.key_path() != key {
                let shown =
                    |k: Option<&str>| k.map_or("no key".to_owned(), |k| format!("key \"{k}\""));
                return Err(PolicyError::at(
                    path,
                    format!(
                        "counter {} is used here with {}, but at {} with {}; limits sharing a \
                         counter must use the same key (or give one a different counter name)",
                        describe_str(name),
                        shown(key),
                        first_path,
                        shown(existing.key_path()),
                    ),
                ));
            }
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
            return Ok((Arc::clone(existing), *slot));
        }
        let slot = self.next_slot();
        let counter = Arc::new(Counter::with_identity(name, false, window_secs, scope, key));
        self.named.insert(
            name.to_owned(),
            (Arc::clone(&counter), slot, path.to_owned()),
        );
        Ok((counter, slot))
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
    if key.len() > MAX_NAME_BYTES {
        return Err(PolicyError::at(
            path,
            format!(
                "a tool name or glob is at most {MAX_NAME_BYTES} bytes (MCP tool names are at \
                 most 128 characters); this one has {} bytes: {}",
                key.len(),
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
    let unknown = map
        .keys()
        .filter(|key| !allowed.contains(&key.as_str()))
        .map(|key| {
            PolicyError::at(
                &join(path, key),
                format!(
                    "unknown field {}; expected one of {}{}",
                    describe_str(key),
                    allowed.join(", "),
                    suggestion(key, allowed)
                ),
            )
        })
        .collect();
    match PolicyError::combine(unknown) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// `" (did you mean \"limits\"?)"` when a known word is a small edit away.
fn suggestion(found: &str, known: &[&str]) -> String {
    closest_name(found, known.iter().copied())
        .map(|word| format!(" (did you mean \"{word}\"?)"))
        .unwrap_or_default()
}

/// The name among `known` a small edit away from `found` (at most two edits, or a
/// quarter of its length for long names), for "did you mean" messages; `None` when none
/// is close, or `found` is one of them.
///
/// ```
/// use mcp_policy::closest_name;
///
/// let tools = ["whmcs_get_ticket", "whmcs_update_ticket"];
/// assert_eq!(closest_name("whmcs_get_tickets", tools), Some("whmcs_get_ticket"));
/// assert_eq!(closest_name("whmcs_delete_client", tools), None);
/// ```
pub fn closest_name<'k>(found: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    // Names are short: a long word is no typo of one, and comparing costs its length.
    if found.len() > 256 {
        return None;
    }
    known
        .into_iter()
        .filter(|word| word.len() <= 256)
        .map(|word| (edit_distance(found, word), word))
        .filter(|&(distance, word)| distance <= 2.max(word.chars().count() / 4) && distance > 0)
        .min()
        .map(|(_, word)| word)
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
        && key.len() <= 60
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
