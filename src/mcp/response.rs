//! Answers a gateway writes itself: refusals of calls and JSON-RPC errors.

use super::Revision;
use crate::decision::{Decision, DenyCode};
use serde_json::{json, Value};

/// The JSON-RPC response a gateway sends back, without contacting the server, for a
/// decision that is not `Allow`; `None` for `Allow`.
///
/// It is an MCP tool result with `isError: true`, so the model reads it: its text says
/// what happened and what to do (wait N seconds, ask a person, do not retry), and
/// `structuredContent` holds the decision as data for programs (its `code` is stable:
/// `rate_limited`, `approval_required`, or a [`DenyCode`]). On MCP 2026-07-28 the result
/// also carries `"resultType": "complete"`, which that revision requires of every result.
pub fn refusal(id: &Value, decision: &Decision, revision: Revision) -> Option<Value> {
    refusal_with_note(id, decision, revision, None)
}

/// [`refusal`], its text followed by `note` (why a held call could not be put to a
/// person): the one place a refusal's text is written.
pub(crate) fn refusal_with_note(
    id: &Value,
    decision: &Decision,
    revision: Revision,
    note: Option<&str>,
) -> Option<Value> {
    let text = refusal_text(decision, note)?;
    let structured = serde_json::to_value(decision).unwrap_or(Value::Null);
    let mut result = json!({
        "content": [{"type": "text", "text": text}],
        "isError": true,
        "structuredContent": structured,
    });
    revision.complete_result(&mut result);
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// The refusal of a request whose result has no `isError` (`resources/read`,
/// `resources/subscribe`, `prompts/get`, and a server's request to the client): a
/// JSON-RPC error, code -32000 (an implementation-defined server error that MCP does not
/// reserve, as the gateway's own errors), with `data: {"code", "decision", "rule",
/// "reason", "retry_after_ms"?}`. `None` for an allowed decision.
///
/// ```
/// use mcp_policy::{mcp, Engine, Policy, ToolCall};
/// use serde_json::json;
///
/// let policy: Policy = r#"{"version": "1", "resources": {"file:///etc/*": {"action": "deny"}}}"#
///     .parse()?;
/// let decision = Engine::new(policy).evaluate(&ToolCall::resource("file:///etc/passwd"));
/// let error = mcp::refusal_error(&json!(4), &decision).unwrap();
/// assert_eq!(error["error"]["code"], -32000);
/// assert_eq!(error["error"]["data"]["code"], "rule_denied");
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
pub fn refusal_error(id: &Value, decision: &Decision) -> Option<Value> {
    let text = refusal_text(decision, None)?;
    let mut data = json!({"code": decision.code(), "decision": decision.kind(),
        "rule": decision.rule(), "reason": decision.why()});
    if let (Some(wait), Some(data)) = (decision.retry_after_ms(), data.as_object_mut()) {
        data.insert("retry_after_ms".into(), wait.into());
    }
    Some(json!({"jsonrpc": "2.0", "id": id,
        "error": {"code": crate::mcp::GATEWAY_ERROR, "message": text, "data": data}}))
}

/// What a refusal says to the agent, `note` after it: the one place it is written.
fn refusal_text(decision: &Decision, note: Option<&str>) -> Option<String> {
    let mut text = match decision {
        Decision::Allow { .. } => return None,
        Decision::Limit {
            tool,
            limit,
            retry_after,
            ..
        } => {
            let seconds = retry_after.as_nanos().div_ceil(1_000_000_000).max(1);
            format!(
                "rate limit: retry in {seconds} s. The policy's {limit}, and this call of \
                 {tool} would exceed it. Wait {seconds} s before calling {tool} again."
            )
        }
        Decision::RequireApproval { tool, reason, .. } => format!(
            "needs approval: {reason}. This call of {tool} was not run: a person must approve \
             it first. Tell the user what you want to do and why, and ask them to approve it."
        ),
        Decision::Deny {
            tool, reason, code, ..
        } => {
            let advice = match code {
                DenyCode::StoreFailed => "The gateway could not check its limits; try again later.",
                DenyCode::MissingIdentity => {
                    "The gateway is misconfigured: it sent no identity for a limit that needs one."
                }
                DenyCode::ApprovalPending => {
                    "Tell the user a person must approve it on the approval console, then \
                     retry this exact call once they have."
                }
                _ => "Do not retry this call unchanged.",
            };
            format!("denied: {reason}. This call of {tool} was not run. {advice}")
        }
    };
    if let Some(note) = note {
        text.push(' ');
        text.push_str(note);
    }
    Some(text)
}

/// A JSON-RPC error response: for a line that is not JSON (`id` null, [`PARSE_ERROR`](super::PARSE_ERROR)),
/// or a malformed request (`McpError::code`).
pub fn error_response(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::test_engine as engine;
    use crate::mcp::PARSE_ERROR;
    use crate::ToolCall;
    use std::time::Duration;

    #[test]
    fn allowed_calls_get_no_refusal() {
        let (engine, _) = engine(r#"{"version":"1","default":"allow"}"#);
        assert!(refusal(
            &json!(1),
            &engine.evaluate(&ToolCall::new("t")),
            Revision::V2025_06_18
        )
        .is_none());
    }

    #[test]
    fn a_rate_limited_call_says_how_long_to_wait() {
        let (engine, _) = engine(
            r#"{"version":"1","tools":{"t":{"limits":[{"counter":"c","window":"minute","max":1}]}}}"#,
        );
        let call = ToolCall::new("t").grant("g1");
        engine.evaluate(&call);
        let decision = engine.evaluate(&call);
        let wait = decision.retry_after().unwrap();
        let response = refusal(&json!("req-1"), &decision, Revision::V2025_06_18).unwrap();
        assert_eq!(response["id"], "req-1");
        assert_eq!(response["jsonrpc"], "2.0");
        let result = &response["result"];
        assert_eq!(result["isError"], true);
        let text = result["content"][0]["text"].as_str().unwrap();
        let seconds = wait.as_nanos().div_ceil(1_000_000_000);
        assert!(
            text.starts_with(&format!("rate limit: retry in {seconds} s.")),
            "{text}"
        );
        assert!(
            text.contains("counter \"c\" admits 1 per minute per grant \"g1\""),
            "{text}"
        );
        assert_eq!(result["structuredContent"]["code"], "rate_limited");
        assert_eq!(
            result["structuredContent"]["retry_after_ms"],
            u64::try_from(wait.as_millis()).unwrap()
        );
        assert!(wait <= Duration::from_secs(64));
    }

    #[test]
    fn approval_and_denial_say_what_to_do() {
        let (engine, _) = engine(
            r#"{"version":"1","tools":{
            "mail":{"action":"require_approval","reason":"emails are reviewed"},
            "close":{"action":"deny","reason":"never automated"}}}"#,
        );
        let approval = refusal(
            &json!(2),
            &engine.evaluate(&ToolCall::new("mail")),
            Revision::V2025_06_18,
        )
        .unwrap();
        let text = approval["result"]["content"][0]["text"].as_str().unwrap();
        assert!(
            text.starts_with("needs approval: emails are reviewed."),
            "{text}"
        );
        assert!(text.contains("a person must approve it first"));
        assert_eq!(
            approval["result"]["structuredContent"]["code"],
            "approval_required"
        );

        let denial = refusal(
            &json!(3),
            &engine.evaluate(&ToolCall::new("close")),
            Revision::V2025_06_18,
        )
        .unwrap();
        let text = denial["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("denied: never automated."), "{text}");
        assert_eq!(denial["result"]["structuredContent"]["code"], "rule_denied");
        assert_eq!(denial["result"]["structuredContent"]["rule"], "close");
    }

    #[test]
    fn error_responses_are_json_rpc() {
        assert_eq!(
            error_response(&Value::Null, PARSE_ERROR, "bad"),
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "bad"}})
        );
    }
}
