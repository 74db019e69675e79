//! Metrics of decisions (feature `metrics`); nothing at all without the feature.

use crate::decision::Decision;

/// Counts a decision in `mcp_policy_decisions_total{decision, code, rule}`. The rule label
/// takes the policy's rule keys only, so its values are bounded by the policy.
#[cfg(feature = "metrics")]
pub(crate) fn decided(decision: &Decision) {
    metrics::counter!(
        "mcp_policy_decisions_total",
        "decision" => decision.kind(),
        "code" => decision.code(),
        "rule" => decision.rule_key().map_or("", |k| k.as_str()).to_owned(),
    )
    .increment(1);
}

/// Without the `metrics` feature: nothing, inlined away.
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn decided(_: &Decision) {}
