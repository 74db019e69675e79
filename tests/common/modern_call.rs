//! A 2026-07-28 `tools/call` from a client that can elicit, for the approval tests of the
//! library and of the gateway.

use serde_json::{json, Value};

/// A 2026-07-28 `tools/call` of `tool` with `args`, from a client that declares
/// elicitation, with `extra` members (`requestState`, `inputResponses`) in its params.
pub fn modern_call(id: impl Into<Value>, tool: &str, args: &Value, extra: Value) -> String {
    let mut params = json!({"name": tool, "arguments": args, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}});
    if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
        params.extend(extra.clone());
    }
    json!({"jsonrpc": "2.0", "id": id.into(), "method": "tools/call", "params": params}).to_string()
}
