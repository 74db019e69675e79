//! [`Explanation`]: how the engine reached a decision, step by step, for people who write
//! policies.

use crate::call::{CallKind, ToolCall};
use crate::decision::Decision;
use crate::engine::{key_value, Engine, MatchedBy, Resolution};
use crate::policy::{Action, Condition, Cost, Rule};
use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// Each step of evaluation as it applied to one call, and the decision
/// ([`Engine::peek`]'s: nothing is recorded). Built by [`Engine::explain`].
///
/// `Display` prints one line per step; `Serialize` gives the same as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Explanation {
    /// The tool called.
    pub tool: String,
    /// Whether `hide` matches the tool.
    pub hidden: bool,
    /// The rule that matched, and why; `None` when no rule matched.
    pub rule: Option<RuleMatch>,
    /// The action that applies: the rule's, or the policy's default.
    pub action: Action,
    /// For a pinned tool whose definition as last listed is not the pinned one (or that
    /// was never listed): why; `on_drift` then applies.
    pub pin: Option<String>,
    /// Every condition of the rule, then of `all_tools`, with the value it saw.
    pub conditions: Vec<ConditionCheck>,
    /// Every limit of the rule, then of `all_tools`, with its count key.
    pub limits: Vec<LimitCheck>,
    /// The decision.
    pub decision: Decision,
}

/// The rule a tool matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RuleMatch {
    /// The rule's key.
    pub key: String,
    /// `"exact"`: the key is the tool's name; `"glob"`: the matching glob with the most
    /// literal characters; `"annotation"`: no key matched, and this annotation rule
    /// (`annotations[i]`) matched the tool's annotations as last listed.
    pub kind: &'static str,
}

/// One condition and what it saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ConditionCheck {
    /// `"rule"` or `"all_tools"`.
    pub section: &'static str,
    /// `"require"`, `"deny_if"` or `"approve_if"`.
    pub list: &'static str,
    /// The argument path, such as `args.amount`.
    pub path: String,
    /// The operator.
    pub op: &'static str,
    /// The operand.
    pub value: Value,
    /// The argument's value; `None` when the path is absent.
    pub seen: Option<Value>,
    /// Whether the condition holds.
    pub holds: bool,
}

/// One limit and the count it would use.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LimitCheck {
    /// `"rule"` or `"all_tools"`.
    pub section: &'static str,
    /// The counter's name.
    pub counter: String,
    /// `"grant"`, `"session"`, `"agent"` or `"global"`.
    pub scope: &'static str,
    /// The id the count is kept for; `None` when the call lacks it.
    pub scope_id: Option<String>,
    /// The window in seconds.
    pub window_s: u64,
    /// Units admitted per window.
    pub max: u64,
    /// Units this call uses; `None` when its cost argument cannot be used.
    pub cost: Option<u64>,
    /// Why the cost argument cannot be used, when it cannot.
    pub cost_error: Option<String>,
    /// The `key` argument path and the value it saw (`args.ticket_id 7`), or why that
    /// value cannot be used; `None` when the limit has no key.
    pub key: Option<String>,
}

impl Engine {
    /// How the current policy decides `call`, step by step, recording nothing.
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "tools": {"whmcs_add_credit": {
    ///     "require": [{"path": "args.amount", "op": "lte", "value": 100}]}}}"#.parse()?;
    /// let engine = Engine::new(policy);
    /// let args = serde_json::json!({"amount": 250});
    /// let why = engine.explain(&ToolCall::new("whmcs_add_credit").arguments(&args));
    /// assert_eq!(why.conditions[0].seen, Some(serde_json::json!(250)));
    /// assert!(!why.conditions[0].holds);
    /// assert_eq!(why.decision.code(), "requirement_failed");
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn explain(&self, call: &ToolCall<'_>) -> Explanation {
        let policy = self.policy();
        let tool = call.name();
        let kind = call.kind();
        // Other kinds: their section's rule, no `all_tools`; a resource's conditions read
        // its URI as the engine normalizes it.
        let governed = match kind {
            CallKind::Tool => None,
            _ => policy.section(kind).and_then(|s| s.govern(kind, tool).ok()),
        };
        let parts = governed
            .as_ref()
            .and_then(|g| g.uri.as_ref())
            .map(|u| u.parts());
        let args = parts.as_ref().or(call.args());
        let (rule, by, pin, extra) = match (kind, policy.section(kind)) {
            (CallKind::Tool, _) => match self.resolve(&policy, tool) {
                Resolution::Hidden(_) => {
                    (policy.rule(tool), MatchedBy::Exact, None, &policy.all_tools)
                }
                Resolution::Governed { rule, by, drift } => {
                    (rule, by, drift.map(|(why, _)| why), &policy.all_tools)
                }
            },
            (_, Some(section)) => {
                // A URI that cannot be normalized is matched as sent (the decision refuses it).
                let rule = match &governed {
                    Some(governed) => governed.rule,
                    None => section.rule(tool),
                };
                (rule, MatchedBy::Exact, None, &policy.nothing_added)
            }
            (_, None) => (None, MatchedBy::Default, None, &policy.nothing_added),
        };
        let extra_name = match kind {
            CallKind::Tool => Some(("all_tools", extra)),
            _ => None,
        };
        let sections = || rule.map(|r| ("rule", r)).into_iter().chain(extra_name);
        let mut conditions = Vec::new();
        let mut limits = Vec::new();
        for (section, body) in sections() {
            for (list, items) in [
                ("require", &body.require),
                ("deny_if", &body.deny_if),
                ("approve_if", &body.approve_if),
            ] {
                conditions.extend(items.iter().map(|c| check(section, list, c, args)));
            }
            limits.extend(Rule::all_limits(body).map(|limit| {
                let cost = match &limit.cost {
                    Cost::Fixed(units) => Ok(*units),
                    Cost::Argument(path) => match path.resolve(args) {
                        Some(value) => value.as_u64().ok_or_else(|| {
                            format!("{} is {value}, not a non-negative integer", path.as_str())
                        }),
                        None => Err(format!("{} is missing", path.as_str())),
                    },
                };
                LimitCheck {
                    section,
                    counter: limit.counter.name().to_owned(),
                    scope: limit.counter.scope().as_str(),
                    scope_id: call.scope_id(limit.counter.scope()).map(str::to_owned),
                    window_s: limit.counter.window_secs(),
                    max: limit.max,
                    cost: cost.as_ref().ok().copied(),
                    cost_error: cost.err(),
                    key: limit.key.as_ref().map(|path| match key_value(path, args) {
                        Ok(value) => format!("{} {value}", path.as_str()),
                        Err(why) => format!("{} ({why}): denies", path.as_str()),
                    }),
                }
            }));
        }
        // A kind the policy has no key for is allowed whatever the default.
        let action = match (kind, policy.section(kind)) {
            (CallKind::Tool, _) | (_, Some(_)) => rule.map_or(policy.default, |r| r.action),
            (_, None) => Action::Allow,
        };
        Explanation {
            tool: tool.to_owned(),
            hidden: kind == CallKind::Tool && policy.is_hidden(tool),
            rule: rule.map(|r| RuleMatch {
                key: r.key.to_string(),
                kind: match by {
                    MatchedBy::Annotation => "annotation",
                    _ if r.glob => "glob",
                    _ => "exact",
                },
            }),
            action,
            pin,
            conditions,
            limits,
            decision: self.peek(call),
        }
    }
}

fn check(
    section: &'static str,
    list: &'static str,
    condition: &Condition,
    args: Option<&Value>,
) -> ConditionCheck {
    ConditionCheck {
        section,
        list,
        path: condition.path.as_str().to_owned(),
        op: condition.op.name(),
        value: condition.op.value(),
        seen: condition.path.resolve(args).cloned(),
        holds: condition.holds(args),
    }
}

impl fmt::Display for Explanation {
    /// One line per step, then the decision.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tool:      {}", self.tool)?;
        writeln!(
            f,
            "hidden:    {}",
            if self.hidden {
                "yes (matched by \"hide\")"
            } else {
                "no"
            }
        )?;
        if let Some(why) = &self.pin {
            writeln!(f, "pin:       drifted: {why}")?;
        }
        match &self.rule {
            Some(rule) if rule.kind == "exact" => {
                writeln!(f, "rule:      \"{}\" (exact name)", rule.key)?
            }
            Some(rule) if rule.kind == "annotation" => writeln!(
                f,
                "rule:      \"{}\" (no key matches; the first annotation rule the tool's \
                 listed annotations match)",
                rule.key
            )?,
            Some(rule) => writeln!(
                f,
                "rule:      \"{}\" (the matching glob with the most literal characters)",
                rule.key
            )?,
            None => writeln!(f, "rule:      none matches; the default applies")?,
        }
        writeln!(f, "action:    {}", self.action)?;
        for c in &self.conditions {
            let seen = c
                .seen
                .as_ref()
                .map_or_else(|| "absent".to_owned(), Value::to_string);
            let effect = match (c.list, c.holds) {
                ("require", true) | ("deny_if", false) | ("approve_if", false) => "ok",
                ("require", false) => "fails: denies",
                ("deny_if", true) => "holds: denies",
                _ => "holds: needs approval",
            };
            writeln!(
                f,
                "condition: {}.{}: {} {} {} (saw {seen}): {effect}",
                c.section, c.list, c.path, c.op, c.value
            )?;
        }
        for l in &self.limits {
            let id = l.scope_id.as_deref().map_or_else(
                || format!("no {} id: denies", l.scope),
                |id| format!("{} \"{id}\"", l.scope),
            );
            let cost = match (&l.cost, &l.cost_error) {
                (Some(units), _) => format!("cost {units}"),
                (None, why) => format!(
                    "cost unusable ({}): denies",
                    why.as_deref().unwrap_or_default()
                ),
            };
            let key = l
                .key
                .as_deref()
                .map_or_else(String::new, |key| format!(", per {key}"));
            writeln!(
                f,
                "limit:     {}: counter \"{}\", {} per {} s, per {id}{key}, {cost}",
                l.section, l.counter, l.max, l.window_s
            )?;
        }
        write!(f, "decision:  {}", self.decision)
    }
}
