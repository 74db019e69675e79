//! [`Reply`]: how the engine's steps write their answer, so that one algorithm makes both
//! a full [`Decision`] and an [`Answer`] that copies nothing out of the call.

use super::*;
use crate::call::ToolCall;
use crate::policy::Rule;

/// Why a call is refused or held, as the steps have it: the policy's text still borrowed,
/// so that an [`Answer`], which carries no reason, costs no reference count.
pub(crate) enum Why<'p> {
    Fixed(&'static str),
    Policy(&'p Arc<str>),
    Composed(String),
}

impl Why<'_> {
    fn reason(self) -> Reason {
        match self {
            Why::Fixed(text) => Reason::fixed(text),
            Why::Policy(text) => Reason::shared(text),
            Why::Composed(text) => Reason::composed(text),
        }
    }
}

/// A form of the engine's answer. What only a full decision carries (the usage to
/// refund, the limit's details, the reason's text) comes as a closure or borrowed, taken
/// by [`Decision`] and never by [`Answer`].
pub(crate) trait Reply: Sized {
    fn allow(call: &ToolCall<'_>, rule: Option<&Rule>, usage: impl FnOnce() -> Usage) -> Self;

    fn deny(
        call: &ToolCall<'_>,
        rule: Option<&Rule>,
        code: DenyCode,
        reason: Why<'_>,
        limit: Option<LimitInfo>,
    ) -> Self;

    fn limit(
        call: &ToolCall<'_>,
        rule: Option<&Rule>,
        retry_after: Duration,
        limit: impl FnOnce() -> LimitInfo,
    ) -> Self;

    fn require_approval(call: &ToolCall<'_>, rule: Option<&Rule>, reason: Why<'_>) -> Self;
}

fn key(rule: Option<&Rule>) -> Option<RuleKey> {
    rule.map(|r| RuleKey::new(r.key))
}

impl Reply for Decision {
    #[inline]
    fn allow(call: &ToolCall<'_>, rule: Option<&Rule>, usage: impl FnOnce() -> Usage) -> Self {
        Decision::Allow {
            tool: ToolName::new(call.name()),
            rule: key(rule),
            usage: usage(),
            approval: call.approval_id().map(str::to_owned),
        }
    }

    #[inline]
    fn deny(
        call: &ToolCall<'_>,
        rule: Option<&Rule>,
        code: DenyCode,
        reason: Why<'_>,
        limit: Option<LimitInfo>,
    ) -> Self {
        Decision::Deny {
            tool: ToolName::new(call.name()),
            rule: key(rule),
            code,
            reason: reason.reason(),
            limit,
        }
    }

    #[inline]
    fn limit(
        call: &ToolCall<'_>,
        rule: Option<&Rule>,
        retry_after: Duration,
        limit: impl FnOnce() -> LimitInfo,
    ) -> Self {
        Decision::Limit {
            tool: ToolName::new(call.name()),
            rule: key(rule),
            limit: limit(),
            retry_after,
        }
    }

    #[inline]
    fn require_approval(call: &ToolCall<'_>, rule: Option<&Rule>, reason: Why<'_>) -> Self {
        Decision::RequireApproval {
            tool: ToolName::new(call.name()),
            rule: key(rule),
            reason: reason.reason(),
        }
    }
}

impl Reply for Answer {
    #[inline]
    fn allow(_: &ToolCall<'_>, rule: Option<&Rule>, _: impl FnOnce() -> Usage) -> Self {
        Answer::Allow { rule: key(rule) }
    }

    #[inline]
    fn deny(
        _: &ToolCall<'_>,
        rule: Option<&Rule>,
        code: DenyCode,
        _: Why<'_>,
        _: Option<LimitInfo>,
    ) -> Self {
        Answer::Deny {
            rule: key(rule),
            code,
        }
    }

    #[inline]
    fn limit(
        _: &ToolCall<'_>,
        rule: Option<&Rule>,
        retry_after: Duration,
        _: impl FnOnce() -> LimitInfo,
    ) -> Self {
        Answer::Limit {
            rule: key(rule),
            retry_after,
        }
    }

    #[inline]
    fn require_approval(_: &ToolCall<'_>, rule: Option<&Rule>, _: Why<'_>) -> Self {
        Answer::RequireApproval { rule: key(rule) }
    }
}
