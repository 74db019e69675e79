//! [`Decision`]: what the engine answers for one call, with what an audit log needs.
//!
//! `answer` holds the answer alone ([`Answer`], `Copy`), `reply` how the engine's steps
//! write either form, `text` the texts a decision carries (tool name, rule key, reason),
//! `usage` what a limit says and what an allowed call recorded.

mod answer;
mod reply;
mod text;
mod usage;

pub use answer::Answer;
pub(crate) use reply::{Reply, Why};
pub use text::{Reason, RuleKey, ToolName};
pub(crate) use usage::{Charge, Charges, Seconds};
pub use usage::{LimitInfo, Usage};

use crate::clock::Timestamp;
use crate::policy::{Counter, Refund, Scope};
use crate::store::{KeyValue, OwnedKeyValue};
use compact_str::CompactString;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The engine's answer for one tool call.
///
/// New kinds of decision may be added in a minor release, so a `match` needs an arm for
/// the others; a gateway refuses what it does not know (fail closed).
///
/// A decision owns what it holds and borrows nothing from the call: a function that takes
/// the arguments by value can return the decision it got for them. Making one allocates
/// nothing for tool names and ids of up to 24 bytes; rule keys and reasons are shared with
/// the policy.
///
/// ```
/// use mcp_policy::{Decision, Engine, Policy, ToolCall};
///
/// let policy: Policy = r#"{"version": "1", "tools": {
///     "whmcs_close_client": {"action": "deny", "reason": "never automated"}
/// }}"#.parse()?;
/// let engine = Engine::new(policy);
/// let decision = engine.evaluate(&ToolCall::new("whmcs_close_client"));
/// match &decision {
///     Decision::Deny { reason, .. } => assert_eq!(reason, "never automated"),
///     other => panic!("unexpected {other}"),
/// }
/// assert_eq!(decision.to_string(), "denied: whmcs_close_client: never automated");
/// assert_eq!(serde_json::to_value(&decision)?["code"], "rule_denied");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Decision {
    /// Let the call through. If it had limits, each recorded its cost; see
    /// [`Engine::refund`](crate::Engine::refund).
    Allow {
        /// The tool called.
        tool: ToolName,
        /// The key of the matched rule; `None` when the policy default allowed it.
        rule: Option<RuleKey>,
        /// What the call's limits recorded.
        usage: Usage,
        /// The approval that approved the call ([`ToolCall::approval`]), if one was named.
        ///
        /// [`ToolCall::approval`]: crate::ToolCall::approval
        approval: Option<String>,
    },
    /// Refuse the call.
    Deny {
        /// The tool called.
        tool: ToolName,
        /// The key of the matched rule, if any.
        rule: Option<RuleKey>,
        /// Why, as a stable machine-readable code.
        code: DenyCode,
        /// Why, for a person or an agent: the policy's most specific reason.
        reason: Reason,
        /// The limit concerned, for denials about a limit (missing id, bad cost).
        limit: Option<LimitInfo>,
    },
    /// A limit has no room for the call now; it may pass after `retry_after`.
    Limit {
        /// The tool called.
        tool: ToolName,
        /// The key of the matched rule, if any.
        rule: Option<RuleKey>,
        /// The limit with the longest wait.
        limit: LimitInfo,
        /// How long until that limit has room for this call.
        retry_after: Duration,
    },
    /// A person must approve the call; re-submit it with
    /// [`ToolCall::approved`](crate::ToolCall::approved) once they have.
    RequireApproval {
        /// The tool called.
        tool: ToolName,
        /// The key of the matched rule, if any.
        rule: Option<RuleKey>,
        /// Why approval is needed.
        reason: Reason,
    },
}

impl Decision {
    /// A denial made outside the policy's steps (by a gateway: a declined or invalid
    /// approval, a store that failed to record one).
    pub(crate) fn refused(call: &crate::ToolCall<'_>, code: DenyCode, reason: String) -> Decision {
        <Decision as Reply>::deny(call, None, code, Why::Composed(reason), None)
    }

    /// Why, for a person or an agent: the reason of a denial or of an approval asked
    /// for, the whole line ([`Display`](fmt::Display)) of a rate limit; `None` for an
    /// allowed call.
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "tools": {"t": {"rate_limit": "1/minute"}}}"#
    ///     .parse()?;
    /// let engine = Engine::new(policy);
    /// let call = ToolCall::new("t").session("s1");
    /// assert_eq!(engine.evaluate(&call).why(), None);
    /// assert!(engine.evaluate(&call).why().unwrap().starts_with("rate limited: t: "));
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn why(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Decision::Deny { reason, .. } | Decision::RequireApproval { reason, .. } => {
                Some(std::borrow::Cow::Borrowed(reason))
            }
            Decision::Limit { .. } => Some(std::borrow::Cow::Owned(self.to_string())),
            Decision::Allow { .. } => None,
        }
    }

    /// [`retry_after`](Self::retry_after) in whole milliseconds, as records carry it.
    pub(crate) fn retry_after_ms(&self) -> Option<u64> {
        self.retry_after()
            .map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
    }

    /// The answer alone, `Copy`: kind, code, rule, and how long to wait after a limit.
    ///
    /// ```
    /// use mcp_policy::{Answer, Engine, Policy, ToolCall};
    ///
    /// let engine = Engine::new(r#"{"version": "1", "default": "deny"}"#.parse::<Policy>()?);
    /// let call = ToolCall::new("whmcs_close_client");
    /// assert_eq!(engine.evaluate(&call).answer(), engine.check(&call));
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn answer(&self) -> Answer {
        match self {
            Decision::Allow { rule, .. } => Answer::Allow { rule: *rule },
            Decision::Deny { rule, code, .. } => Answer::Deny {
                rule: *rule,
                code: *code,
            },
            Decision::Limit {
                rule, retry_after, ..
            } => Answer::Limit {
                rule: *rule,
                retry_after: *retry_after,
            },
            Decision::RequireApproval { rule, .. } => Answer::RequireApproval { rule: *rule },
        }
    }

    /// The kind of decision: `"allow"`, `"deny"`, `"limit"` or `"require_approval"`.
    pub fn kind(&self) -> &'static str {
        self.answer().kind()
    }

    /// Whether the call may go ahead.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// How long to wait before retrying, for [`Decision::Limit`].
    pub fn retry_after(&self) -> Option<Duration> {
        self.answer().retry_after()
    }

    /// The tool the decision is about.
    pub fn tool(&self) -> &str {
        match self {
            Decision::Allow { tool, .. }
            | Decision::Deny { tool, .. }
            | Decision::Limit { tool, .. }
            | Decision::RequireApproval { tool, .. } => tool,
        }
    }

    /// The key of the matched rule; `None` when no rule matched (the default decided, or
    /// the tool is hidden).
    pub fn rule(&self) -> Option<&str> {
        self.answer().rule()
    }

    /// A stable machine-readable code: `"allowed"`, `"rate_limited"`,
    /// `"approval_required"`, or the [`DenyCode`] of a denial.
    pub fn code(&self) -> &'static str {
        self.answer().code()
    }

    /// The limit the decision is about, if any.
    pub fn limit(&self) -> Option<&LimitInfo> {
        match self {
            Decision::Limit { limit, .. } => Some(limit),
            Decision::Deny { limit, .. } => limit.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for Decision {
    /// One line a person or an agent can act on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow { tool, rule, .. } => match rule {
                Some(rule) => write!(f, "allowed: {tool} (rule \"{rule}\")"),
                None => write!(f, "allowed: {tool} (policy default)"),
            },
            Decision::Deny { tool, reason, .. } => write!(f, "denied: {tool}: {reason}"),
            Decision::Limit {
                tool,
                limit,
                retry_after,
                ..
            } => write!(
                f,
                "rate limited: {tool}: {limit}; retry in {}",
                Seconds(*retry_after)
            ),
            Decision::RequireApproval { tool, reason, .. } => {
                write!(f, "needs approval: {tool}: {reason}")
            }
        }
    }
}

impl Serialize for Decision {
    /// A flat audit record: `decision`, `code`, `tool`, `rule`, and as they apply
    /// `reason`, `limit`, `retry_after_ms`, `charged`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("decision", self.kind())?;
        map.serialize_entry("code", self.code())?;
        map.serialize_entry("tool", self.tool())?;
        map.serialize_entry("rule", &self.rule())?;
        if let Some(why) = self.why() {
            map.serialize_entry("reason", &why)?;
        }
        if let Decision::Allow {
            usage, approval, ..
        } = self
        {
            map.serialize_entry("charged", usage)?;
            map.serialize_entry("approval", approval)?;
        }
        if let Some(limit) = self.limit() {
            map.serialize_entry("limit", limit)?;
        }
        if let Some(wait) = self.retry_after_ms() {
            map.serialize_entry("retry_after_ms", &wait)?;
        }
        map.end()
    }
}

/// Why a call was denied, as a stable code for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DenyCode {
    /// The tool is listed in `hide`, or its name is longer than 512 bytes.
    Hidden,
    /// The matched rule's action is `deny`.
    RuleDenied,
    /// No rule matched and the default is `deny`.
    DefaultDenied,
    /// A `require` condition did not hold.
    RequirementFailed,
    /// A `deny_if` condition held.
    DenyCondition,
    /// A limit is scoped to an id (grant, agent, session) the call lacks.
    MissingIdentity,
    /// A limit's `cost` argument is absent or not a non-negative integer.
    InvalidCost,
    /// A limit's `key` argument is absent, or neither a string nor an integer.
    InvalidKey,
    /// The call costs more than a limit's `max`: it can never pass.
    CostExceedsMax,
    /// The counter store failed and the engine fails closed.
    StoreFailed,
    /// A person declined to approve the call, or did not answer in time.
    ApprovalDeclined,
    /// The approval the call carried is forged, expired, used before, or for another call.
    ApprovalInvalid,
    /// The tool is pinned and its definition, as the server last listed it, differs from
    /// the pin or was never listed (`on_drift` `deny` or `hide`).
    PinDrift,
    /// The rule names OAuth `scopes` the caller's token lacks (or the call carries no
    /// token's scopes at all): the caller may ask its authorization server for them.
    InsufficientScope,
    /// A resource URI the gateway cannot read the way a server would, unambiguously (an
    /// encoded `/`, dot segments above the root, a malformed escape…): refused, never
    /// relayed.
    InvalidUri,
    /// The call waits for a person on the approval console, and this client can neither
    /// show the console's page nor hold the call: the refusal carries the page's address,
    /// and the same call retried once it is approved runs once.
    ApprovalPending,
}

impl DenyCode {
    /// The code as text: `"hidden"`, `"rule_denied"`, `"default_denied"`, …
    pub fn as_str(self) -> &'static str {
        match self {
            DenyCode::Hidden => "hidden",
            DenyCode::RuleDenied => "rule_denied",
            DenyCode::DefaultDenied => "default_denied",
            DenyCode::RequirementFailed => "requirement_failed",
            DenyCode::DenyCondition => "deny_condition",
            DenyCode::MissingIdentity => "missing_identity",
            DenyCode::InvalidCost => "invalid_cost",
            DenyCode::InvalidKey => "invalid_key",
            DenyCode::CostExceedsMax => "cost_exceeds_max",
            DenyCode::StoreFailed => "store_failed",
            DenyCode::ApprovalDeclined => "approval_declined",
            DenyCode::ApprovalInvalid => "approval_invalid",
            DenyCode::PinDrift => "pin_drift",
            DenyCode::InsufficientScope => "insufficient_scope",
            DenyCode::InvalidUri => "invalid_uri",
            DenyCode::ApprovalPending => "approval_pending",
        }
    }
}

impl fmt::Display for DenyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
