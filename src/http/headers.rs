//! The MCP headers of a request, checked against its body: `Mcp-Method`, `Mcp-Name`
//! and `MCP-Protocol-Version`.

use crate::mcp;
use http::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};

// Names made once: a header looked up by a `&str` is parsed and lowercased on every call.
pub(crate) const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
pub(crate) const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
pub(crate) const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
pub(crate) const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
pub(crate) const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The JSON-RPC error code for a header that contradicts the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// Headers a request may carry once at most: a second one could be read by the upstream
/// in place of the one checked.
static SINGLE_HEADERS: [HeaderName; 3] = [MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION];

/// A JSON-RPC error (`id: null`) for a header given more than once; `None` when none is.
pub(crate) fn repeated_header(headers: &http::HeaderMap) -> Option<Value> {
    let name = SINGLE_HEADERS
        .iter()
        .find(|name| headers.get_all(*name).iter().nth(1).is_some())?;
    Some(
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": HEADER_MISMATCH,
        "message": format!("the {name} header is given more than once; send it once")}}),
    )
}

/// A JSON-RPC error for a header that contradicts the body, or a required header that is
/// missing (2026-07-28); `None` when the headers agree.
pub(crate) fn header_mismatch(headers: &http::HeaderMap, message: &Value) -> Option<Value> {
    let method = message.get("method")?.as_str()?;
    let name = crate::json::at(message, &["params", "name"]).and_then(Value::as_str);
    let header = |key: &HeaderName| headers.get(key).map(decode_header);
    let in_meta = crate::json::at(message, &["params", "_meta"])
        .and_then(|meta| meta.get(mcp::PROTOCOL_VERSION_META))
        .and_then(Value::as_str);
    let in_header = headers
        .get(MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok());
    let modern = [in_meta, in_header]
        .into_iter()
        .flatten()
        .filter_map(mcp::Revision::parse)
        .any(mcp::Revision::requires_result_type);
    let refuse = |why: String| {
        Some(
            json!({"jsonrpc": "2.0", "id": message.get("id").cloned().unwrap_or(Value::Null),
            "error": {"code": HEADER_MISMATCH, "message": why}}),
        )
    };
    if let (Some(meta), Some(header)) = (in_meta, in_header) {
        if meta != header {
            return refuse(format!(
                "the MCP-Protocol-Version header says {header:?}, the request's _meta {meta:?}"
            ));
        }
    }
    match header(&MCP_METHOD) {
        Some(Some(value)) if value != method => {
            return refuse(format!(
                "the Mcp-Method header says {value:?}, the body {method:?}"
            ))
        }
        Some(None) => return refuse("the Mcp-Method header is not readable".into()),
        None if modern => return refuse("a 2026-07-28 request needs an Mcp-Method header".into()),
        _ => {}
    }
    if method == "tools/call" {
        match (header(&MCP_NAME), name) {
            (Some(Some(value)), Some(name)) if value != name => {
                return refuse(format!(
                    "the Mcp-Name header says {value:?}, the body {name:?}"
                ))
            }
            (Some(None), _) => return refuse("the Mcp-Name header is not readable".into()),
            (None, _) if modern => {
                return refuse("a 2026-07-28 tools/call needs an Mcp-Name header".into())
            }
            _ => {}
        }
    }
    None
}

/// A header's text, decoding the `=?base64?…?=` form; `None` when unreadable.
fn decode_header(value: &HeaderValue) -> Option<String> {
    use base64::Engine as _;
    let text = value.to_str().ok()?;
    match text
        .strip_prefix("=?base64?")
        .and_then(|t| t.strip_suffix("?="))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(text.to_owned()),
    }
}
