//! The policy file: parsing, validation, and the immutable [`Policy`] value.

mod annotations;
mod arg_path;
mod case_guard;
pub use annotations::OnDrift;
pub(crate) use annotations::{AnnotationRule, Hints};
pub(crate) use arg_path::ArgPath;
pub(crate) use case_guard::CaseGuard;
pub use case_guard::CaseVariant;
mod condition;
mod error;
mod interned;
mod limit;
mod parse;
mod rule;
mod section;
mod write;

pub(crate) use condition::Condition;
pub use error::PolicyError;
pub(crate) use limit::{Cost, Limit};
pub use limit::{Counter, Outcome, Refund, Scope};
pub use parse::closest_name;
pub(crate) use parse::MAX_NAME_BYTES;
pub(crate) use rule::Rule;
pub use rule::{Action, Approvers};

use crate::matcher::{Matcher, Target};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};
use std::str::FromStr;
use std::sync::Arc;

/// What a policy makes of a tool name: hidden, or governed by a rule or the default.
pub(crate) enum Resolved<'p> {
    Hidden,
    Rule(Option<&'p Rule>),
}

/// A validated, immutable policy: parse it once, then share it.
///
/// Loading checks everything up front (unknown fields, types, ranges, counters that
/// disagree, regexes), so evaluation never meets a malformed rule. Rule keys are compiled
/// once: exact tool names into a hash map, globs into a list ordered by precedence.
///
/// A `Policy` serializes back to policy JSON that loads to an equal `Policy`.
///
/// # Memory
/// Its counters and rule keys, which every decision names, are kept once per process, for
/// the life of the process, so that decisions refer to them without a reference count.
/// Loading the same policy again, or a changed one, keeps only what is new: a process
/// that reloads its policy keeps about 100 bytes per distinct counter and each distinct
/// rule key it ever loaded. Everything else is freed with the last copy of the policy.
///
/// ```
/// use mcp_policy::{Action, Policy};
///
/// let policy: Policy = r#"{
///     "version": "1",
///     "default": "deny",
///     "hide": ["whmcs_delete_*"],
///     "tools": {
///         "whmcs_get_*": {},
///         "whmcs_update_ticket": { "rate_limit": "30/minute" }
///     }
/// }"#.parse()?;
///
/// assert_eq!(policy.default_action(), Action::Deny);
/// assert_eq!(policy.rule_for("whmcs_get_ticket"), Some("whmcs_get_*"));
/// assert!(policy.is_hidden("whmcs_delete_client"));
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) description: Option<String>,
    pub(crate) default: Action,
    pub(crate) hide: Vec<Arc<str>>,
    pub(crate) all_tools: Rule,
    /// Rules in key order.
    pub(crate) rules: Vec<Rule>,
    /// Rules chosen by tool annotations, in policy order.
    pub(crate) annotations: Vec<AnnotationRule>,
    /// Tool name → `sha256:<hex>` of its definition.
    pub(crate) pins: std::collections::BTreeMap<String, String>,
    pub(crate) on_drift: OnDrift,
    /// Tool name → hidden, or the index of its rule.
    pub(crate) matcher: Matcher,
    /// The argument names the policy reads, by folded case.
    pub(crate) case_guard: Arc<CaseGuard>,
    /// `resources`, `prompts`, `server_requests`: `None` when the policy has no such key
    /// (then every call of that kind is allowed).
    pub(crate) resources: Option<section::Section>,
    pub(crate) prompts: Option<section::Section>,
    pub(crate) server_requests: Option<section::Section>,
    /// An empty rule: what calls of other kinds get in place of `all_tools`.
    pub(crate) nothing_added: Rule,
}

impl Policy {
    /// Parses and validates a policy from JSON text.
    ///
    /// # Errors
    /// A [`PolicyError`] naming the line and column of a syntax error, or the JSON path of
    /// the first invalid value and what was expected there.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        parse::parse(text)
    }

    /// Validates a policy already read into a `serde_json::Value`, such as one field of a
    /// larger configuration. Errors name JSON paths; there are no lines and columns, and
    /// duplicate keys can no longer be seen (`serde_json` kept the last): prefer
    /// [`from_json`](Self::from_json) for text.
    ///
    /// ```
    /// use mcp_policy::Policy;
    ///
    /// let config = serde_json::json!({"listen": "127.0.0.1:8080", "policy": {
    ///     "version": "1", "tools": {"whmcs_get_*": {}}}});
    /// let policy = Policy::from_value(&config["policy"])?;
    /// assert_eq!(policy.rule_for("whmcs_get_ticket"), Some("whmcs_get_*"));
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    ///
    /// # Errors
    /// A [`PolicyError`] listing every problem, each with its JSON path.
    pub fn from_value(value: &Value) -> Result<Policy, PolicyError> {
        parse::from_value(value)
    }

    /// The policy's free-text `description`, if it has one.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// What happens to a tool that no rule matches (`default`, `"deny"` when absent).
    pub fn default_action(&self) -> Action {
        self.default
    }

    /// Whether `hide` matches the tool: it is left out of `tools/list` and denied.
    pub fn is_hidden(&self, tool: &str) -> bool {
        self.matcher.is_hidden(tool)
    }

    /// Whether every call of `tool` is denied before its arguments are looked at, judged on
    /// the name alone: it is hidden, its rule's action is `deny`, or no rule matches and
    /// the default is `deny`. Annotation rules and pins need the tool's `tools/list` entry;
    /// [`mcp::filter_tools_list`](crate::mcp::filter_tools_list) judges those too.
    pub fn denies_outright(&self, tool: &str) -> bool {
        self.is_hidden(tool) || self.rule(tool).map_or(self.default, |r| r.action) == Action::Deny
    }

    /// The section of `kind` (`None` for tools, and for a kind the policy has no key for).
    pub(crate) fn section(&self, kind: crate::call::CallKind) -> Option<&section::Section> {
        use crate::call::CallKind;
        match kind {
            CallKind::Resource => self.resources.as_ref(),
            CallKind::Prompt => self.prompts.as_ref(),
            CallKind::ServerRequest => self.server_requests.as_ref(),
            _ => None,
        }
    }

    /// The key of the rule that governs `tool`: the exact name, else the most specific
    /// glob; `None` when only the default applies.
    pub fn rule_for(&self, tool: &str) -> Option<&str> {
        self.rule(tool).map(|rule| rule.key)
    }

    /// For a tool no `tools` key matches, the annotation rule that decides it, given its
    /// `tools/list` entry (judged on the entry's `annotations`; a hint not sent takes
    /// MCP's default): `annotations[i]`. `None` when no annotation rule matches.
    ///
    /// ```
    /// use mcp_policy::Policy;
    /// use serde_json::json;
    ///
    /// let policy: Policy = r#"{"version": "1", "annotations": [
    ///     {"match": {"readOnlyHint": true}, "action": "allow"},
    ///     {"match": {"destructiveHint": true}, "action": "require_approval"}]}"#.parse()?;
    /// let reader = json!({"name": "get", "annotations": {"readOnlyHint": true}});
    /// assert_eq!(policy.annotation_rule_for(&reader), Some("annotations[0]"));
    /// // No annotations: destructiveHint defaults to true.
    /// assert_eq!(policy.annotation_rule_for(&json!({"name": "delete"})), Some("annotations[1]"));
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn annotation_rule_for(&self, tool: &Value) -> Option<&str> {
        self.annotation_rule(Some(&Hints::of_tool(tool)))
            .map(|rule| rule.key)
    }

    /// The first annotation rule matched by a tool with these listed hints (`None`: a
    /// tool never listed).
    pub(crate) fn annotation_rule(&self, hints: Option<&Hints>) -> Option<&Rule> {
        self.annotations
            .iter()
            .find(|a| a.hints.matched_by(hints))
            .map(|a| &a.rule)
    }

    /// The key of the rule that governs a listed tool, as evaluation would resolve it given
    /// this `tools/list` entry: its `tools` key (exact name, else the most specific glob),
    /// else the first annotation rule its annotations match (`annotations[i]`). `None` when
    /// the tool is hidden or only the default applies.
    ///
    /// ```
    /// use mcp_policy::Policy;
    /// use serde_json::json;
    ///
    /// let policy: Policy = r#"{"version": "1", "tools": {"whmcs_get_*": {}},
    ///     "annotations": [{"match": {"readOnlyHint": true}, "action": "allow"}]}"#.parse()?;
    /// assert_eq!(policy.rule_for_listed(&json!({"name": "whmcs_get_ticket"})), Some("whmcs_get_*"));
    /// let reader = json!({"name": "list", "annotations": {"readOnlyHint": true}});
    /// assert_eq!(policy.rule_for_listed(&reader), Some("annotations[0]"));
    /// assert_eq!(policy.rule_for_listed(&json!({"name": "delete"})), None);
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn rule_for_listed(&self, tool: &Value) -> Option<&str> {
        let name = tool.get("name").and_then(Value::as_str)?;
        let digest = crate::mcp::tool_digest(tool);
        let listed = crate::engine::Listed::Entry {
            hints: Hints::of_tool(tool),
            digest: &digest,
        };
        crate::engine::resolve(self, name, listed).rule_key()
    }

    /// The pinned digest of `tool`'s definition (`sha256:<hex>`), if the policy pins it.
    pub fn pin(&self, tool: &str) -> Option<&str> {
        self.pins.get(tool).map(String::as_str)
    }

    /// The keys of all rules, sorted by bytes.
    pub fn rule_keys(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|rule| rule.key)
    }

    /// Every argument name any path of the policy reads — conditions, limit `cost` and
    /// `key` paths, of `all_tools`, `tools` rules and annotation rules: for
    /// `args.items.0.id`, `items`, `0` and `id`. A gateway uses them to refuse arguments
    /// that spell one of them in another case (`Priority` for `priority`), which a server
    /// that matches names ignoring case would read while the policy would not
    /// ([`case_variant_argument`](Self::case_variant_argument)).
    ///
    /// ```
    /// use mcp_policy::Policy;
    ///
    /// let policy: Policy = r#"{"version": "1", "tools": {"t": {
    ///     "deny_if": [{"path": "args.ticket.priority", "op": "eq", "value": "Emergency"}]}},
    ///     "annotations": [{"match": {}, "limits": [{"window": "hour", "max": 3, "key": "args.ticket_id"}]}]}"#
    ///     .parse()?;
    /// let mut names: Vec<&str> = policy.argument_names().collect();
    /// names.sort();
    /// assert_eq!(names, ["priority", "ticket", "ticket_id"]);
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn argument_names(&self) -> impl Iterator<Item = &str> {
        // Resource rules read the URI the gateway parsed, never names a client sent.
        let prompts_and_requests = [&self.prompts, &self.server_requests]
            .into_iter()
            .flatten()
            .flat_map(|section| &section.rules);
        std::iter::once(&self.all_tools)
            .chain(&self.rules)
            .chain(self.annotations.iter().map(|a| &a.rule))
            .chain(prompts_and_requests)
            .flat_map(Rule::arg_paths)
            .flat_map(arg_path::ArgPath::keys)
    }

    /// An argument name, at any depth of `args`, that differs only in case from a name
    /// the policy reads ([`argument_names`](Self::argument_names)) without being that
    /// name. Gateways refuse such calls: a server that matches names ignoring case would
    /// act on a value the policy never evaluated. The names are gathered once, when the
    /// policy is loaded.
    ///
    /// ```
    /// use mcp_policy::Policy;
    /// use serde_json::json;
    ///
    /// let policy: Policy = r#"{"version": "1", "annotations": [{"match": {},
    ///     "deny_if": [{"path": "args.priority", "op": "eq", "value": "Emergency"}]}]}"#.parse()?;
    /// let variant = policy.case_variant_argument(&json!({"Priority": "Emergency"})).unwrap();
    /// assert_eq!((variant.found.as_str(), variant.expected.as_str()), ("Priority", "priority"));
    /// assert!(policy.case_variant_argument(&json!({"priority": "Low", "Other": 1})).is_none());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn case_variant_argument(&self, args: &Value) -> Option<CaseVariant> {
        self.case_guard.find(args)
    }

    /// The rule governing `tool`, hidden or not.
    pub(crate) fn rule(&self, tool: &str) -> Option<&Rule> {
        self.matcher.rule(tool).and_then(|i| self.rules.get(i))
    }

    /// Hidden, or the rule governing `tool` (`None`: the default), in one lookup. An index
    /// without a rule cannot happen; it would resolve to hidden (fail closed).
    pub(crate) fn resolve(&self, tool: &str) -> Resolved<'_> {
        match self.matcher.resolve(tool) {
            Target::Hidden => Resolved::Hidden,
            Target::Rule(None) => Resolved::Rule(None),
            Target::Rule(Some(i)) => self
                .rules
                .get(i)
                .map_or(Resolved::Hidden, |rule| Resolved::Rule(Some(rule))),
        }
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Policy, PolicyError> {
        Policy::from_json(text)
    }
}

impl PartialEq for Policy {
    /// Policies are equal when they say the same thing; the compiled matchers follow from
    /// the rules.
    fn eq(&self, other: &Policy) -> bool {
        self.description == other.description
            && self.default == other.default
            && self.hide == other.hide
            && self.all_tools == other.all_tools
            && self.rules == other.rules
            && self.annotations == other.annotations
            && self.pins == other.pins
            && self.on_drift == other.on_drift
    }
}

impl<'de> Deserialize<'de> for Policy {
    /// Reads and validates a policy from any serde format; duplicate keys are refused.
    ///
    /// ```
    /// use mcp_policy::Policy;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Config { policy: Policy }
    ///
    /// let config: Config = serde_json::from_str(r#"{"policy": {"version": "1"}}"#)?;
    /// assert_eq!(config.policy.rule_keys().count(), 0);
    /// assert!(serde_json::from_str::<Config>(r#"{"policy": {"version": "2"}}"#).is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Policy, D::Error> {
        let value = crate::json::deserialize_strict(deserializer)?;
        Policy::from_value(&value).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json_value().serialize(serializer)
    }
}
