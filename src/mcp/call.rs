//! Reading a `tools/call` request into a [`ToolCall`].

use super::{INVALID_PARAMS, INVALID_REQUEST};
use crate::call::ToolCall;
use serde_json::Value;

/// Why a JSON-RPC message is not a usable `tools/call` request. More reasons may be
/// added in a minor release; [`code`](McpError::code) covers them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
