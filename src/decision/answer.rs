//! [`Answer`]: the engine's answer alone, and the one table of its kinds and codes.

use super::*;

/// The engine's answer for one call, without what refunds, audit records and
/// explanations need: what [`Engine::check`] returns, and what
/// [`Decision::answer`] reads from a full decision.
///
/// `Copy`, 32 bytes, and nothing to drop: the rule key is the policy's own text. Getting
/// one from [`Engine::check`] copies no tool name, id or argument value out of the call.
///
/// New kinds may be added in a minor release, so a `match` needs an arm for the others;
/// a gateway refuses what it does not know (fail closed).
///
/// ```
/// use mcp_policy::{Answer, Engine, ManualClock, Policy, ToolCall};
///
/// let policy: Policy = r#"{"version": "1", "tools": {
///     "whmcs_update_ticket": {"limits": [{"window": "minute", "max": 1, "scope": "grant"}]}
/// }}"#.parse()?;
/// let engine = Engine::builder(policy).clock(ManualClock::new()).build();
/// let call = ToolCall::new("whmcs_update_ticket").grant("g1");
/// assert_eq!(engine.check(&call).rule(), Some("whmcs_update_ticket"));
/// match engine.check(&call) {
///     Answer::Limit { retry_after, .. } => assert!(retry_after.as_secs() >= 60),
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
///
/// [`Engine::check`]: crate::Engine::check
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// Let the call through; its limits recorded its cost.
    Allow {
        /// The key of the matched rule; `None` when the policy default allowed it.
        rule: Option<RuleKey>,
    },
    /// Refuse the call.
    Deny {
        /// The key of the matched rule, if any.
        rule: Option<RuleKey>,
        /// Why, as a stable machine-readable code.
        code: DenyCode,
    },
    /// A limit has no room for the call now; it may pass after `retry_after`.
    Limit {
        /// The key of the matched rule, if any.
        rule: Option<RuleKey>,
        /// How long until the limit with the longest wait has room for this call.
        retry_after: Duration,
    },
    /// A person must approve the call first.
    RequireApproval {
        /// The key of the matched rule, if any.
        rule: Option<RuleKey>,
    },
}

impl Answer {
    /// Whether the call may go ahead.
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    ///
    /// let engine = Engine::new(r#"{"version": "1", "default": "deny"}"#.parse::<Policy>()?);
    /// assert!(!engine.check(&ToolCall::new("whmcs_close_client")).is_allowed());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn is_allowed(&self) -> bool {
        matches!(self, Answer::Allow { .. })
    }

    /// The kind of answer: `"allow"`, `"deny"`, `"limit"` or `"require_approval"`.
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    ///
    /// let engine = Engine::new(r#"{"version": "1", "default": "deny"}"#.parse::<Policy>()?);
    /// assert_eq!(engine.check(&ToolCall::new("t")).kind(), "deny");
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Answer::Allow { .. } => "allow",
            Answer::Deny { .. } => "deny",
            Answer::Limit { .. } => "limit",
            Answer::RequireApproval { .. } => "require_approval",
        }
    }

    /// A stable machine-readable code: `"allowed"`, `"rate_limited"`,
    /// `"approval_required"`, or the [`DenyCode`] of a denial.
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    ///
    /// let engine = Engine::new(r#"{"version": "1", "default": "deny"}"#.parse::<Policy>()?);
    /// assert_eq!(engine.check(&ToolCall::new("t")).code(), "default_denied");
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Answer::Allow { .. } => "allowed",
            Answer::Deny { code, .. } => code.as_str(),
            Answer::Limit { .. } => "rate_limited",
            Answer::RequireApproval { .. } => "approval_required",
        }
    }

    /// How long to wait before retrying, for [`Answer::Limit`].
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    ///
    /// let engine = Engine::new(r#"{"version": "1"}"#.parse::<Policy>()?);
    /// assert_eq!(engine.check(&ToolCall::new("t")).retry_after(), None);
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Answer::Limit { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The key of the matched rule; `None` when no rule matched (the default decided, or
    /// the tool is hidden).
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "tools": {"whmcs_get_*": {}}}"#.parse()?;
    /// let engine = Engine::new(policy);
    /// assert_eq!(engine.check(&ToolCall::new("whmcs_get_ticket")).rule(), Some("whmcs_get_*"));
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn rule(&self) -> Option<&'static str> {
        match *self {
            Answer::Allow { rule }
            | Answer::Deny { rule, .. }
            | Answer::Limit { rule, .. }
            | Answer::RequireApproval { rule } => rule.map(|key| key.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_small_and_needs_no_drop() {
        assert!(std::mem::size_of::<Answer>() <= 32);
        assert!(!std::mem::needs_drop::<Answer>());
    }
}
