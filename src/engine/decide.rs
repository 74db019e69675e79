//! The steps of evaluation, in order: hidden, pinned, matched rule, deny, approval, limits.

use super::*;
use crate::call::CallKind;
use crate::policy::MAX_NAME_BYTES;

impl Engine {
    /// Decides `call` under `policy`, recording its limits when `record`, as a full
    /// [`Decision`] or the [`Answer`] alone (`R`): one algorithm for both.
    pub(super) fn decide<'a, R: Reply>(
        &self,
        policy: &Policy,
        call: &ToolCall<'a>,
        record: bool,
    ) -> R {
        if call.kind() != CallKind::Tool {
            return self.decide_other(policy, call, record);
        }
        let deny = |rule, code, reason| R::deny(call, rule, code, reason, None);

        // 1. Hidden, 1b. pinned, 2. matched: one resolution, shared with every other
        // place that asks what the policy makes of a tool.
        let (rule, by, drift) = match resolve(policy, call.name(), Listed::Catalog(&self.tools)) {
            Resolution::Hidden(why) => return deny(None, DenyCode::Hidden, Why::Fixed(why)),
            Resolution::Governed { rule, by, drift } => (rule, by, drift),
        };
        let mut drifted = None;
        if let Some((why, on_drift)) = drift {
            match on_drift {
                OnDrift::Deny | OnDrift::Hide => {
                    // Named after the rule its key matched; annotations are the server's.
                    let keyed = rule.filter(|_| by != MatchedBy::Annotation);
                    return deny(keyed, DenyCode::PinDrift, Why::Composed(why));
                }
                OnDrift::RequireApproval => drifted = Some(why),
            }
        }
        self.decide_governed(policy, call, rule, &policy.all_tools, drifted, record)
    }

    /// A resource, prompt or server request: its section's rule (no `all_tools`, pins or
    /// annotations); a policy without the section allows it.
    #[cold]
    #[inline(never)]
    fn decide_other<'a, R: Reply>(&self, policy: &Policy, call: &ToolCall<'a>, record: bool) -> R {
        let Some(section) = policy.section(call.kind()) else {
            return R::allow(call, None, Usage::none);
        };
        let refuse = |code, why: String| R::deny(call, None, code, Why::Composed(why), None);
        if call.name().len() > MAX_NAME_BYTES {
            let code = match call.kind() {
                CallKind::Resource => DenyCode::InvalidUri,
                _ => DenyCode::Hidden,
            };
            return refuse(
                code,
                format!("names longer than {MAX_NAME_BYTES} bytes are refused"),
            );
        }
        let governed = match section.govern(call.kind(), call.name()) {
            Ok(governed) => governed,
            Err(why) => {
                return refuse(
                    DenyCode::InvalidUri,
                    format!("the resource URI cannot be read unambiguously: {why}"),
                )
            }
        };
        let extra = &policy.nothing_added;
        match &governed.uri {
            // A resource's conditions read its URI in the form the server resolves it to.
            Some(uri) => {
                let parts = uri.parts();
                let call = call.arguments(&parts);
                self.decide_governed(policy, &call, governed.rule, extra, None, record)
            }
            None => self.decide_governed(policy, call, governed.rule, extra, None, record),
        }
    }

    /// Steps 3 to 5 for a call `rule` governs (the default when `None`), with `extra`'s
    /// conditions, scopes and limits added (`all_tools` for tools).
    #[inline]
    fn decide_governed<'a, R: Reply>(
        &self,
        policy: &Policy,
        call: &ToolCall<'a>,
        rule: Option<&Rule>,
        extra: &Rule,
        drifted: Option<String>,
        record: bool,
    ) -> R {
        let deny = |rule, code, reason| R::deny(call, rule, code, reason, None);
        let action = rule.map_or(policy.default, |r| r.action);
        // 3. Deny.
        if action == Action::Deny {
            return match rule {
                Some(r) => deny(
                    rule,
                    DenyCode::RuleDenied,
                    rule_reason(r, "denied by the policy"),
                ),
                None => deny(
                    None,
                    DenyCode::DefaultDenied,
                    Why::Fixed(match call.kind() {
                        CallKind::Resource => {
                            "no rule allows this resource, and the policy denies by default"
                        }
                        CallKind::Prompt => {
                            "no rule allows this prompt, and the policy denies by default"
                        }
                        CallKind::ServerRequest => {
                            "no rule allows this request, and the policy denies by default"
                        }
                        _ => "no rule allows this tool, and the policy denies by default",
                    }),
                ),
            };
        }
        // 3b. Scopes: before arguments are looked at or anything is counted, so that a
        // caller without them learns what to ask its authorization server for.
        // Checked inline, looked into out of line: most rules name no scopes.
        let needs_scopes = rule.is_some_and(|r| !r.scopes.is_empty()) || !extra.scopes.is_empty();
        if needs_scopes {
            if let Some(why) = missing_scopes(rule, extra, call) {
                return deny(rule, DenyCode::InsufficientScope, Why::Composed(why));
            }
        }
        let args = call.args();
        let sections = || rule.into_iter().chain(std::iter::once(extra));
        let has_conditions = rule.is_some_and(Rule::has_conditions) || extra.has_conditions();
        for section in sections().filter(|_| has_conditions) {
            if let Some(c) = section.require.iter().find(|c| !c.holds(args)) {
                return deny(
                    rule,
                    DenyCode::RequirementFailed,
                    condition_reason(c, section),
                );
            }
            if let Some(c) = section.deny_if.iter().find(|c| c.holds(args)) {
                return deny(rule, DenyCode::DenyCondition, condition_reason(c, section));
            }
        }
        // 4. Approval.
        if !call.is_approved() {
            let reason = if let Some(why) = drifted {
                Some(Why::Composed(why))
            } else if action == Action::RequireApproval {
                Some(match rule {
                    Some(r) => rule_reason(
                        r,
                        match call.kind() {
                            CallKind::Tool => "this tool needs a person's approval",
                            _ => "this needs a person's approval",
                        },
                    ),
                    None => Why::Fixed(
                        "no rule matches this call, and the policy requires approval by default",
                    ),
                })
            } else if !has_conditions {
                None
            } else {
                sections().find_map(|section| {
                    section
                        .approve_if
                        .iter()
                        .find(|c| c.holds(args))
                        .map(|c| condition_reason(c, section))
                })
            };
            if let Some(reason) = reason {
                return R::require_approval(call, rule, reason);
            }
        }
        // 5. Limits.
        if rule.map_or(true, |r| !r.has_limits()) && !extra.has_limits() {
            return R::allow(call, rule, Usage::none);
        }
        let limits = rule
            .into_iter()
            .flat_map(Rule::all_limits)
            .chain(extra.all_limits());
        self.check_limits(limits, rule, call, record)
    }
}

/// The rule's own reason, else `fallback`.
pub(super) fn rule_reason<'p>(rule: &'p Rule, fallback: &'static str) -> Why<'p> {
    match &rule.reason {
        Some(reason) => Why::Policy(reason),
        None => Why::Fixed(fallback),
    }
}

/// The most specific reason for a condition: its own, its rule's, or a description.
pub(super) fn condition_reason<'p>(condition: &'p Condition, section: &'p Rule) -> Why<'p> {
    let text = condition
        .reason
        .as_ref()
        .or(section.reason.as_ref())
        .unwrap_or(&condition.fallback);
    Why::Policy(text)
}

/// The scopes `rule` and `all_tools` name, each once, in order.
pub(super) fn required_scopes<'r>(
    rule: Option<&'r Rule>,
    all_tools: &'r Rule,
) -> impl Iterator<Item = &'r str> {
    let named = rule
        .into_iter()
        .chain([all_tools])
        .flat_map(|r| r.scopes.iter());
    let mut seen: Vec<&str> = Vec::new();
    named.filter_map(move |scope| {
        let scope: &str = scope;
        (!seen.contains(&scope)).then(|| {
            seen.push(scope);
            scope
        })
    })
}

/// Why the call lacks scopes the rule or `all_tools` needs; `None` when it has them (or
/// none are needed). Allocates only to refuse.
#[cold]
fn missing_scopes(rule: Option<&Rule>, all_tools: &Rule, call: &ToolCall<'_>) -> Option<String> {
    let granted = call.granted_scopes();
    let has = |scope: &str| granted.is_some_and(|g| g.contains(scope));
    let needed: Vec<&str> = required_scopes(rule, all_tools).collect();
    let missing: Vec<&str> = needed.iter().copied().filter(|s| !has(s)).collect();
    if missing.is_empty() {
        return None;
    }
    Some(match granted {
        None => format!(
            "this tool needs the OAuth scope(s) {}, and the call carries no token's scopes",
            needed.join(" ")
        ),
        Some(_) => format!(
            "this tool needs the OAuth scope(s) {}; the caller's token lacks {}",
            needed.join(" "),
            missing.join(" ")
        ),
    })
}
