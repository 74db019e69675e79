//! Steps 1 to 2 of evaluation in one place: what a policy makes of a tool before it looks
//! at arguments — hidden? pinned, and does the listed definition match? which rule, and
//! why? Evaluation, `peek`, `explain`, `tools/list` filtering, approval bindings and
//! `mcp-policy check` all ask this one function.

use crate::catalog::Catalog;
use crate::policy::{Hints, OnDrift, Policy, Resolved, Rule, MAX_NAME_BYTES};
use arc_swap::ArcSwap;

/// What is known of a tool's listing.
#[derive(Clone, Copy)]
pub(crate) enum Listed<'l> {
    /// As the engine's catalog last recorded it; looked up only when the policy needs it
    /// (a pin, or annotation rules), so other calls hash nothing more.
    Catalog(&'l ArcSwap<Catalog>),
    /// This `tools/list` entry, with the digest of its definition.
    Entry { hints: Hints, digest: &'l str },
}

/// Why a rule governs a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchedBy {
    /// The rule's key is the tool's name.
    Exact,
    /// The matching glob with the most literal characters.
    Glob,
    /// No key matched; this annotation rule matched the listed annotations.
    Annotation,
    /// Nothing matched: the policy's default applies.
    Default,
}

/// What the policy makes of a tool.
pub(crate) enum Resolution<'p> {
    /// Hidden by `hide`, or a name longer than any tool's; why.
    Hidden(&'static str),
    /// Governed by `rule` (the default when `None`).
    Governed {
        rule: Option<&'p Rule>,
        by: MatchedBy,
        /// A pinned tool whose listed definition is not the pinned one: why, and what
        /// `on_drift` makes of it.
        drift: Option<(String, OnDrift)>,
    },
}

impl<'p> Resolution<'p> {
    /// The rule's key, `None` for hidden tools and the default.
    pub(crate) fn rule_key(&self) -> Option<&'p str> {
        match self {
            Resolution::Governed {
                rule: Some(rule), ..
            } => Some(rule.key),
            _ => None,
        }
    }

    /// Whether every call is refused before its arguments are looked at: hidden, a
    /// drifted pin under `on_drift` `deny` or `hide`, or a `deny` action.
    pub(crate) fn denies_outright(&self, policy: &Policy) -> bool {
        match self {
            Resolution::Hidden(_) => true,
            Resolution::Governed { rule, drift, .. } => {
                matches!(drift, Some((_, OnDrift::Deny | OnDrift::Hide)))
                    || rule.map_or(policy.default, |r| r.action) == crate::policy::Action::Deny
            }
        }
    }
}

/// Resolves `tool` under `policy`, given what is known of its listing. Inlined: it is on
/// every call's path, and most of it folds away when nothing is pinned.
#[inline]
pub(crate) fn resolve<'p>(policy: &'p Policy, tool: &str, listed: Listed<'_>) -> Resolution<'p> {
    // A name longer than any MCP tool name is refused before matching, which costs up to
    // the name's length per glob.
    if tool.len() > MAX_NAME_BYTES {
        return Resolution::Hidden(
            "tool names longer than 512 bytes are refused (MCP tool names are at most 128 \
             characters)",
        );
    }
    let Resolved::Rule(keyed) = policy.resolve(tool) else {
        return Resolution::Hidden("this tool is hidden by the policy");
    };
    let pin = policy.pins.get(tool).map(String::as_str);
    let needs_listing = pin.is_some() || (keyed.is_none() && !policy.annotations.is_empty());
    let (hints, drift) = match listed {
        _ if !needs_listing => (None, None),
        Listed::Entry { hints, digest } => (Some(hints), drift(policy, tool, pin, Some(digest))),
        Listed::Catalog(catalog) => {
            let catalog = catalog.load();
            let entry = catalog.get(tool);
            let digest = entry.map(|t| t.digest.as_str());
            (entry.map(|t| t.hints), drift(policy, tool, pin, digest))
        }
    };
    let (rule, by) = match keyed {
        Some(rule) if rule.glob => (Some(rule), MatchedBy::Glob),
        Some(rule) => (Some(rule), MatchedBy::Exact),
        None => match policy.annotation_rule(hints.as_ref()) {
            Some(rule) => (Some(rule), MatchedBy::Annotation),
            None => (None, MatchedBy::Default),
        },
    };
    Resolution::Governed { rule, by, drift }
}

/// Why a pinned tool's listed definition (`digest`, `None` if never listed) is not the
/// pinned one, with what `on_drift` makes of it; `None` when it is, or nothing is pinned.
fn drift(
    policy: &Policy,
    tool: &str,
    pin: Option<&str>,
    digest: Option<&str>,
) -> Option<(String, OnDrift)> {
    let pin = pin?;
    let why = match digest {
        Some(seen) if seen == pin => return None,
        Some(seen) => format!(
            "the definition of tool \"{tool}\" changed since it was pinned (listed {seen}, \
             pinned {pin})"
        ),
        None => format!(
            "tool \"{tool}\" is pinned but the server has not listed it, so its definition \
             cannot be checked"
        ),
    };
    Some((why, policy.on_drift))
}
