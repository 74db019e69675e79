//! Decision events (feature `tracing`).

use crate::audit::AuditRecord;

/// An event for a decision (feature `tracing`): refusals at INFO, allows at DEBUG, with
/// the audit record's fields but never the arguments.
#[cfg(feature = "tracing")]
pub(super) fn trace_decision(record: &AuditRecord) {
    let limit = record.limit.as_ref().map(serde_json::Value::to_string);
    let shadow = record.shadow.as_ref().map(serde_json::Value::to_string);
    macro_rules! decided {
        ($level:expr) => {
            tracing::event!(
                $level,
                id = record.id.as_str(),
                request_id = %record.request_id,
                kind = record.kind,
                tool = record.tool.as_str(),
                grant = record.grant.as_deref(),
                agent = record.agent.as_deref(),
                session = record.session.as_deref(),
                decision = record.decision,
                code = record.code,
                rule = record.rule.as_deref(),
                reason = record.reason.as_deref(),
                limit = limit.as_deref(),
                retry_after_ms = record.retry_after_ms,
                approval = record.approval.as_deref(),
                args_sha256 = record.args_sha256.as_str(),
                policy_sha256 = record.policy_sha256.as_deref(),
                shadow = shadow.as_deref(),
                "decision"
            )
        };
    }
    if record.decision == "allow" {
        decided!(tracing::Level::DEBUG);
    } else {
        decided!(tracing::Level::INFO);
    }
}

/// Without the `tracing` feature: nothing.
#[cfg(not(feature = "tracing"))]
pub(super) fn trace_decision(_: &AuditRecord) {}

/// Whether a subscriber listens to decision events (and records are worth building).
#[cfg(feature = "tracing")]
pub(super) fn tracing_on() -> bool {
    tracing::enabled!(tracing::Level::INFO)
}

#[cfg(not(feature = "tracing"))]
pub(super) fn tracing_on() -> bool {
    false
}
