//! MCP (Model Context Protocol) helpers on `serde_json::Value`, so the engine fits any MCP
//! stack: read a `tools/call` request, answer a call the policy refused, and filter a
//! `tools/list` result.
//!
//! ```
//! use mcp_policy::{mcp, Engine, Policy};
//! use serde_json::json;
//!
//! let policy: Policy = r#"{"version": "1", "tools": {
//!     "whmcs_close_client": {"action": "deny", "reason": "never automated"}
//! }}"#.parse()?;
//! let engine = Engine::new(policy);
//!
//! let request = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
//!     "params": {"name": "whmcs_close_client", "arguments": {"client_id": 77}}});
//! let call = mcp::tool_call(&request)?.grant("g1");
//! let decision = engine.evaluate(&call);
//! let response = mcp::refusal(&request["id"], &decision).expect("denied");
//! assert_eq!(response["result"]["isError"], true);
//! assert_eq!(response["result"]["structuredContent"]["code"], "rule_denied");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::call::ToolCall;
use crate::decision::{Decision, DenyCode};
use crate::engine::Engine;
use serde_json::{json, Value};

/// JSON-RPC's "Invalid Request" error code.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC's "Invalid params" error code.
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC's "Parse error" code, for a line that is not JSON.
pub const PARSE_ERROR: i64 = -32700;

/// Why a JSON-RPC message is not a usable `tools/call` request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// The message is not a JSON object with `"jsonrpc": "2.0"`.
    #[error("not a JSON-RPC 2.0 message: expected an object with \"jsonrpc\": \"2.0\"")]
    NotJsonRpc,
    /// The method is not `tools/call` (or is missing).
    #[error("expected method \"tools/call\", found {found}")]
    WrongMethod {
        /// The method found, JSON-encoded, or `no method`.
        found: String,
    },
    /// A `tools/call` without an `id` is a notification, which cannot be answered.
    #[error("a tools/call request needs an \"id\"; without one it is a notification and cannot be answered")]
    Notification,
    /// `params` is missing or not an object.
    #[error("\"params\" must be an object such as {{\"name\": \"tool\", \"arguments\": {{}}}}")]
    ParamsNotObject,
    /// `params.name` is missing, not a string, or empty.
    #[error("\"params.name\" must be the tool's name as a non-empty string")]
    MissingName,
    /// `params.arguments` is present but not an object.
    #[error("\"params.arguments\" must be an object when present")]
    ArgumentsNotObject,
}

impl McpError {
    /// The JSON-RPC error code for this error: `-32600` (invalid request) or `-32602`
    /// (invalid params).
    pub fn code(&self) -> i64 {
        match self {
            McpError::NotJsonRpc | McpError::WrongMethod { .. } | McpError::Notification => {
                INVALID_REQUEST
            }
            McpError::ParamsNotObject | McpError::MissingName | McpError::ArgumentsNotObject => {
                INVALID_PARAMS
            }
        }
    }
}

/// Reads a JSON-RPC 2.0 `tools/call` request into a [`ToolCall`] that borrows the tool's
/// name and arguments from `request`. Add the caller's identity (`.grant(..)`, …) before
/// evaluating it; MCP itself does not carry one.
///
/// # Errors
/// An [`McpError`] saying what is wrong: not JSON-RPC 2.0, another method, no `id`, or
/// malformed `params`.
pub fn tool_call(request: &Value) -> Result<ToolCall<'_>, McpError> {
    let Some(message) = request.as_object() else {
        return Err(McpError::NotJsonRpc);
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(McpError::NotJsonRpc);
    }
    match message.get("method") {
        Some(Value::String(method)) if method == "tools/call" => {}
        Some(other) => {
            return Err(McpError::WrongMethod {
                found: other.to_string(),
            })
        }
        None => {
            return Err(McpError::WrongMethod {
                found: "no method".into(),
            })
        }
    }
    if !message.contains_key("id") {
        return Err(McpError::Notification);
    }
    let Some(params) = message.get("params").and_then(Value::as_object) else {
        return Err(McpError::ParamsNotObject);
    };
    let name = match params.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name,
        _ => return Err(McpError::MissingName),
    };
    let call = ToolCall::new(name);
    match params.get("arguments") {
        None | Some(Value::Null) => Ok(call),
        Some(arguments @ Value::Object(_)) => Ok(call.arguments(arguments)),
        Some(_) => Err(McpError::ArgumentsNotObject),
    }
}

/// The JSON-RPC response a gateway sends back, without contacting the server, for a
/// decision that is not `Allow`; `None` for `Allow`.
///
/// It is an MCP tool result with `isError: true`, so the model reads it: its text says
/// what happened and what to do (wait N seconds, ask a person, do not retry), and
/// `structuredContent` holds the decision as data for programs (its `code` is stable:
/// `rate_limited`, `approval_required`, or a [`DenyCode`]).
pub fn refusal(id: &Value, decision: &Decision<'_>) -> Option<Value> {
    let text = match decision {
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
                _ => "Do not retry this call unchanged.",
            };
            format!("denied: {reason}. This call of {tool} was not run. {advice}")
        }
    };
    let structured = serde_json::to_value(decision).unwrap_or(Value::Null);
    Some(json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {
            "content": [{"type": "text", "text": text}],
            "isError": true,
            "structuredContent": structured,
        }
    }))
}

/// A JSON-RPC error response: for a line that is not JSON (`id` null, [`PARSE_ERROR`]),
/// or a malformed request (`McpError::code`).
pub fn error_response(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Removes from a `tools/list` result the tools the policy hides or denies outright (by a
/// `deny` rule, or by a `deny` default when no rule matches), so the agent is not offered
/// tools it cannot call. Accepts the `result` object or the whole JSON-RPC response;
/// returns how many tools were removed.
pub fn filter_tools_list(engine: &Engine, result: &mut Value) -> usize {
    let policy = engine.policy();
    let target = match result.get_mut("result") {
        Some(inner) => inner,
        None => result,
    };
    let Some(tools) = target.get_mut("tools").and_then(Value::as_array_mut) else {
        return 0;
    };
    let before = tools.len();
    tools.retain(|tool| match tool.get("name").and_then(Value::as_str) {
        Some(name) => !policy.denies_outright(name),
        // Not a tool description we can judge: leave the server's answer as it is.
        None => true,
    });
    before - tools.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use std::time::Duration;

    fn request(params: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
    }

    #[test]
    fn reads_name_and_arguments() {
        let req = request(json!({"name": "whmcs_get_ticket", "arguments": {"ticket_id": 7}}));
        let call = tool_call(&req).unwrap();
        assert_eq!(call.name(), "whmcs_get_ticket");
        assert_eq!(call.args(), Some(&json!({"ticket_id": 7})));
        let req = request(json!({"name": "t"}));
        assert_eq!(tool_call(&req).unwrap().args(), None);
        let req = request(json!({"name": "t", "arguments": null}));
        assert_eq!(tool_call(&req).unwrap().args(), None);
    }

    #[test]
    fn rejects_each_malformed_request() {
        let cases = [
            (json!([1]), McpError::NotJsonRpc),
            (
                json!({"id": 1, "method": "tools/call", "params": {"name": "t"}}),
                McpError::NotJsonRpc,
            ),
            (
                json!({"jsonrpc": "1.0", "id": 1, "method": "tools/call"}),
                McpError::NotJsonRpc,
            ),
            (
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
                McpError::WrongMethod {
                    found: "\"tools/list\"".into(),
                },
            ),
            (
                json!({"jsonrpc": "2.0", "id": 1}),
                McpError::WrongMethod {
                    found: "no method".into(),
                },
            ),
            (
                json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "t"}}),
                McpError::Notification,
            ),
            (
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}),
                McpError::ParamsNotObject,
            ),
            (
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": []}),
                McpError::ParamsNotObject,
            ),
            (request(json!({})), McpError::MissingName),
            (request(json!({"name": 5})), McpError::MissingName),
            (request(json!({"name": ""})), McpError::MissingName),
            (
                request(json!({"name": "t", "arguments": [1]})),
                McpError::ArgumentsNotObject,
            ),
            (
                request(json!({"name": "t", "arguments": "x"})),
                McpError::ArgumentsNotObject,
            ),
        ];
        for (req, expected) in cases {
            assert_eq!(tool_call(&req).unwrap_err(), expected, "{req}");
        }
        assert_eq!(McpError::Notification.code(), INVALID_REQUEST);
        assert_eq!(McpError::MissingName.code(), INVALID_PARAMS);
        assert!(McpError::Notification.to_string().contains("notification"));
    }

    fn engine(policy: &str) -> (Engine, ManualClock) {
        let clock = ManualClock::new();
        (
            Engine::builder(policy.parse().unwrap())
                .clock(clock.clone())
                .build(),
            clock,
        )
    }

    #[test]
    fn allowed_calls_get_no_refusal() {
        let (engine, _) = engine(r#"{"version":"1","default":"allow"}"#);
        assert!(refusal(&json!(1), &engine.evaluate(&ToolCall::new("t"))).is_none());
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
        let response = refusal(&json!("req-1"), &decision).unwrap();
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
        let approval = refusal(&json!(2), &engine.evaluate(&ToolCall::new("mail"))).unwrap();
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

        let denial = refusal(&json!(3), &engine.evaluate(&ToolCall::new("close"))).unwrap();
        let text = denial["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("denied: never automated."), "{text}");
        assert_eq!(denial["result"]["structuredContent"]["code"], "rule_denied");
        assert_eq!(denial["result"]["structuredContent"]["rule"], "close");
    }

    #[test]
    fn tools_list_loses_hidden_and_outright_denied_tools() {
        let (engine, _) = engine(
            r#"{"version":"1","default":"deny","hide":["whmcs_delete_*"],"tools":{
            "whmcs_get_*":{},"whmcs_close_client":{"action":"deny"},"whmcs_send_email":{"action":"require_approval"},
            "whmcs_add_credit":{"require":[{"path":"args.amount","op":"lte","value":100}]}}}"#,
        );
        let mut response = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
            {"name": "whmcs_get_ticket"}, {"name": "whmcs_delete_client"}, {"name": "whmcs_close_client"},
            {"name": "whmcs_send_email"}, {"name": "whmcs_add_credit"}, {"name": "unlisted"}, {"description": "no name"}
        ], "nextCursor": "c2"}});
        assert_eq!(filter_tools_list(&engine, &mut response), 3);
        let names: Vec<_> = response["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].clone())
            .collect();
        assert_eq!(
            names,
            [
                json!("whmcs_get_ticket"),
                json!("whmcs_send_email"),
                json!("whmcs_add_credit"),
                Value::Null
            ]
        );
        assert_eq!(response["result"]["nextCursor"], "c2");

        let mut bare = json!({"tools": [{"name": "whmcs_delete_x"}]});
        assert_eq!(filter_tools_list(&engine, &mut bare), 1);
        let mut not_a_list = json!({"result": {"content": []}});
        assert_eq!(filter_tools_list(&engine, &mut not_a_list), 0);
    }

    #[test]
    fn error_responses_are_json_rpc() {
        assert_eq!(
            error_response(&Value::Null, PARSE_ERROR, "bad"),
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "bad"}})
        );
    }
}
