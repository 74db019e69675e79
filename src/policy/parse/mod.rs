//! Turning policy JSON into a validated [`Policy`], with a path in every error.
//!
//! This file reads the top level; `rule` reads rules and conditions, `limit` limits and
//! counters, `values` the small JSON readers and the wording of errors.

mod limit;
mod rule;
mod section;
mod values;

use limit::*;
use rule::*;
use section::*;
pub use values::closest_name;
use values::*;

use super::annotations::{is_pin, AnnotationRule, Hints, OnDrift};
use super::arg_path::{ArgPath, PathRoot};
use super::condition::{Condition, Op, CASE_OPS, OP_NAMES};
use super::error::PolicyError;
use super::limit::{
    window_from_name, Cost, Counter, Limit, Refund, Scope, MAX_UNITS, MAX_WINDOW_SECS,
};
use super::rule::{Action, Approvers, Rule};
use super::section::{Section, SECTIONS};
use super::{interned, CaseGuard, Policy};
use crate::call::CallKind;
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
    "resources",
    "prompts",
    "server_requests",
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
    "scopes",
    "approvers",
];
const RULE_FIELDS: &[&str] = ANNOTATION_FIELDS.split_at(1).1;
/// A rule's fields past `action` and `reason`: none of them applies to a `deny` rule.
const ALLOWING_FIELDS: &[&str] = RULE_FIELDS.split_at(2).1;
const ALL_TOOLS_FIELDS: &[&str] = &[
    "limits",
    "require",
    "deny_if",
    "approve_if",
    "scopes",
    "approvers",
];
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
            let expected = "an object with limits, require, deny_if, approve_if or scopes";
            let map = problems.take(object(v, "all_tools", expected))?;
            problems.take(known_fields(map, "all_tools", ALL_TOOLS_FIELDS));
            problems.take(body(
                "all_tools",
                map,
                "all_tools",
                Action::Allow,
                PathRoot::Args,
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
            if let Some(rule) =
                problems.take(rule(key, rule_map, &path, PathRoot::Args, &mut counters))
            {
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
            let rule = problems.take(rule(&path, map, &path, PathRoot::Args, &mut counters));
            if let (Some(hints), Some(rule)) = (hints, rule) {
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

    let mut sections = [None, None, None];
    for (at, (field, kind, root)) in SECTIONS.iter().enumerate() {
        if let (Some(v), Some(section)) = (top.get(*field), sections.get_mut(at)) {
            let parsed = section_rules(v, field, *kind, *root, &mut counters);
            *section = problems.take(parsed).map(Section::new);
        }
    }
    let [resources, prompts, server_requests] = sections;
    let matcher = Matcher::new(&hide, rules.iter().map(|r| r.key));
    let mut policy = Policy {
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
        resources,
        prompts,
        server_requests,
        nothing_added: empty_rule(""),
    };
    policy.case_guard = Arc::new(CaseGuard::new(policy.argument_names()));
    problems.into_result(policy)
}

fn empty_rule(key: &str) -> Rule {
    Rule {
        key: interned::text(key),
        glob: key.contains('*'),
        action: Action::Allow,
        reason: None,
        require: Vec::new(),
        deny_if: Vec::new(),
        approve_if: Vec::new(),
        limits: Vec::new(),
        rate_limit: None,
        scopes: Vec::new(),
        approvers: None,
    }
}
