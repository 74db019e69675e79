//! Audit records: one JSON object per decision, and one per outcome of an allowed call,
//! for "who called what, what did we decide, and why".

use crate::call::ToolCall;
use crate::decision::Decision;
use crate::mcp::arguments_sha256;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::SystemTime;

/// The JSON Schema (2020-12) of an audit log line: a decision record or an outcome
/// record.
pub const AUDIT_RECORD_SCHEMA: &str = include_str!("../schemas/audit-record.schema.json");

/// One decision, with every field present (`null` when it does not apply).
///
/// ```
/// use mcp_policy::audit::AuditRecord;
/// use mcp_policy::{Engine, Policy, ToolCall};
/// use serde_json::json;
///
/// let engine = Engine::new(r#"{"version": "1", "tools": {"t": {}}}"#.parse::<Policy>()?);
/// let args = json!({"b": 1, "a": 2});
/// let call = ToolCall::new("t").grant("g1").arguments(&args);
/// let decision = engine.evaluate(&call);
/// let record = AuditRecord::new("r-1", &json!(7), &call, &decision);
/// let value = serde_json::to_value(&record)?;
/// assert_eq!(value["decision"], "allow");
/// assert_eq!(value["request_id"], 7);
/// assert_eq!(value["grant"], "g1");
/// assert_eq!(value["retry_after_ms"], serde_json::Value::Null);
/// assert_eq!(value["args_sha256"].as_str().map(str::len), Some(64));
/// assert!(value.get("args").is_none(), "arguments only when asked");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AuditRecord {
    /// Unique, minted by the gateway.
    pub id: String,
    /// When the decision was made: RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The client's JSON-RPC id, as sent (the server's, for a server request).
    pub request_id: Value,
    /// What was asked for: `tool`, `resource`, `prompt` or `server_request`.
    pub kind: &'static str,
    /// The tool called, the resource's URI, the prompt's name or the server request's
    /// method.
    pub tool: String,
    /// The grant id.
    pub grant: Option<String>,
    /// The agent id.
    pub agent: Option<String>,
    /// The session id.
    pub session: Option<String>,
    /// `allow`, `deny`, `limit` or `require_approval`.
    pub decision: &'static str,
    /// The stable code ([`Decision::code`]).
    pub code: &'static str,
    /// The matched rule's key.
    pub rule: Option<String>,
    /// Why, for refusals.
    pub reason: Option<String>,
    /// The limit concerned: `counter`, `scope`, `scope_id`, `key`, `max`, `window_s`, and
    /// `cost` when known.
    pub limit: Option<Value>,
    /// How long to wait, for `limit`.
    pub retry_after_ms: Option<u64>,
    /// The approval that approved the call.
    pub approval: Option<String>,
    /// The approval console approver who decided the call (approved it, or declined it);
    /// `None` unless one did.
    pub approver: Option<String>,
    /// Lowercase hex SHA-256 of the arguments in canonical form (RFC 8785 with numbers
    /// exact, [`canonical_json`](crate::mcp::canonical_json); `{}` when absent): ties
    /// the record to the call without keeping the arguments.
    pub args_sha256: String,
    /// Lowercase hex SHA-256 of the policy file's bytes.
    pub policy_sha256: Option<String>,
    /// The arguments, only when asked for ([`with_arguments`](Self::with_arguments)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// The candidate policy's decision, when it differs (shadow policies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Value>,
}

impl AuditRecord {
    /// The record of `decision` for `call`, made now.
    pub fn new(
        id: &str,
        request_id: &Value,
        call: &ToolCall<'_>,
        decision: &Decision,
    ) -> AuditRecord {
        AuditRecord::with_args_sha256(
            id,
            request_id,
            call,
            decision,
            arguments_sha256(call.args()),
        )
    }

    /// [`new`](Self::new), with the arguments' digest its caller computed already.
    pub(crate) fn with_args_sha256(
        id: &str,
        request_id: &Value,
        call: &ToolCall<'_>,
        decision: &Decision,
        args_sha256: String,
    ) -> AuditRecord {
        let approval = match decision {
            Decision::Allow { approval, .. } => approval.clone(),
            _ => None,
        };
        AuditRecord {
            id: id.to_owned(),
            time: rfc3339(SystemTime::now()),
            request_id: request_id.clone(),
            kind: call.kind().as_str(),
            tool: call.name().to_owned(),
            grant: call.grant_id().map(str::to_owned),
            agent: call.agent_id().map(str::to_owned),
            session: call.session_id().map(str::to_owned),
            decision: decision.kind(),
            code: decision.code(),
            rule: decision.rule().map(str::to_owned),
            reason: decision.why().map(String::from),
            limit: decision
                .limit()
                .and_then(|limit| serde_json::to_value(limit).ok()),
            retry_after_ms: decision.retry_after_ms(),
            approval,
            approver: None,
            args_sha256,
            policy_sha256: None,
            args: None,
            shadow: None,
        }
    }

    /// Names the approval console approver who decided the call.
    pub fn approver(mut self, name: impl Into<String>) -> AuditRecord {
        self.approver = Some(name.into());
        self
    }

    /// Names the policy file the decision was made under.
    pub fn policy_sha256(mut self, hex: impl Into<String>) -> AuditRecord {
        self.policy_sha256 = Some(hex.into());
        self
    }

    /// Notes the shadow policy's decision, which differs from the enforced one.
    pub fn shadow(mut self, shadow: &Decision) -> AuditRecord {
        self.shadow =
            Some(json!({"decision": shadow.kind(), "code": shadow.code(), "rule": shadow.rule()}));
        self
    }

    /// Keeps the arguments in the record, with the values at `redact` (argument paths
    /// such as `args.card.number`) replaced by `"[redacted]"`.
    ///
    /// ```
    /// use mcp_policy::audit::AuditRecord;
    /// use mcp_policy::{Engine, Policy, ToolCall};
    /// use serde_json::json;
    ///
    /// let engine = Engine::new(r#"{"version": "1", "default": "allow"}"#.parse::<Policy>()?);
    /// let args = json!({"card": {"number": "4111", "name": "A"}});
    /// let call = ToolCall::new("pay").arguments(&args);
    /// let record = AuditRecord::new("r", &json!(1), &call, &engine.evaluate(&call))
    ///     .with_arguments(&args, &["args.card.number"]);
    /// assert_eq!(record.args, Some(json!({"card": {"number": "[redacted]", "name": "A"}})));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_arguments(mut self, arguments: &Value, redact: &[&str]) -> AuditRecord {
        let mut kept = arguments.clone();
        for path in redact {
            let Some(rest) = path.strip_prefix("args.") else {
                continue;
            };
            let mut at = Some(&mut kept);
            let mut keys = rest.split('.').peekable();
            while let (Some(key), Some(value)) = (keys.next(), at.take()) {
                let slot = match value {
                    Value::Object(map) => map.get_mut(key),
                    Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
                    _ => None,
                };
                match (slot, keys.peek()) {
                    (Some(slot), None) => *slot = Value::from("[redacted]"),
                    (slot, Some(_)) => at = slot,
                    (None, None) => {}
                }
            }
        }
        self.args = Some(kept);
        self
    }
}

/// How an allowed call ended, after its decision's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OutcomeRecord {
    /// The `id` of the decision's record.
    pub decision_id: String,
    /// The client's JSON-RPC id, as sent.
    pub request_id: Value,
    /// When the outcome was known: RFC 3339, UTC.
    pub time: String,
    /// `ok`, `failed`, `not_run`, `unknown` or `input_required`.
    pub outcome: &'static str,
    /// Whether the call's units were given back.
    pub refunded: bool,
}

impl OutcomeRecord {
    /// The record of an allowed call's outcome, made now.
    pub fn new(
        decision_id: &str,
        request_id: &Value,
        outcome: crate::Outcome,
        refunded: bool,
    ) -> OutcomeRecord {
        OutcomeRecord {
            decision_id: decision_id.to_owned(),
            request_id: request_id.clone(),
            time: rfc3339(SystemTime::now()),
            outcome: outcome.as_str(),
            refunded,
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for `time`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let time = UNIX_EPOCH + Duration::from_millis(1_765_085_400_123);
/// assert_eq!(mcp_policy::audit::rfc3339(time), "2025-12-07T05:30:00.123Z");
/// ```
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Milliseconds since the Unix epoch of a time [`rfc3339`] wrote; `None` for other text.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 24 || b.get(23) != Some(&b'Z') {
        return None;
    }
    let num = |from: usize, to: usize| text.get(from..to)?.parse::<i64>().ok();
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, milli) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400 + hour * 3600 + minute * 60 + second) * 1000) + milli;
    u64::try_from(ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_are_rfc3339_and_read_back() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_691_547_123);
        assert_eq!(rfc3339(t), "2026-11-26T11:12:27.123Z");
        assert_eq!(
            parse_rfc3339("2026-11-26T11:12:27.123Z"),
            Some(1_795_691_547_123)
        );
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_rfc3339("2000-02-29T23:59:59.999Z")
                .map(|ms| rfc3339(UNIX_EPOCH + Duration::from_millis(ms))),
            Some("2000-02-29T23:59:59.999Z".into())
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
