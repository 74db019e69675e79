//! Metrics of decisions (feature `metrics`); nothing at all without the feature.

use crate::decision::Answer;

/// Counts a decision in `mcp_policy_decisions_total{decision, code, rule}`. The rule label
/// takes the policy's rule keys only, so its values are bounded by the policy; they are
/// the policy's own `'static` texts, so labelling copies nothing.
#[cfg(feature = "metrics")]
pub(crate) fn decided(answer: &Answer) {
    metrics::counter!(
        "mcp_policy_decisions_total",
        "decision" => answer.kind(),
        "code" => answer.code(),
        "rule" => answer.rule().unwrap_or(""),
    )
    .increment(1);
}

/// Without the `metrics` feature: nothing, inlined away.
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn decided(_: &Answer) {}
