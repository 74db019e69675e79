//! MCP (Model Context Protocol) helpers on `serde_json::Value`, so the engine fits any MCP
//! stack: read a `tools/call` request, answer a call the policy refused, filter a
//! `tools/list` result, tell protocol revisions apart, and [`Relay`]: the
//! transport-neutral core of a gateway that relays only what it evaluated.
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
//! let response = mcp::refusal(&request["id"], &decision, mcp::Revision::V2025_06_18)
//!     .expect("denied");
//! assert_eq!(response["result"]["isError"], true);
//! assert_eq!(response["result"]["structuredContent"]["code"], "rule_denied");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// JSON-RPC's "Invalid Request" error code.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC's "Invalid params" error code.
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC's "Parse error" code, for a line that is not JSON.
pub const PARSE_ERROR: i64 = -32700;

mod approval;
mod board;
mod call;
mod digest;
mod held;
mod ledger;
mod lines;
mod lists;
mod message;
mod relay;
mod response;
mod revision;
pub(crate) mod tools_list;

pub use approval::{
    approval_request, console_request, ApprovalAnswer, ApprovalBinding, ApprovalError, ApprovalKey,
    ApprovalKeyError, ClientElicitation, SealedApproval, APPROVAL_INPUT, STATE_PREFIX,
};
#[cfg(feature = "redis")]
pub use board::RedisBoard;
pub use board::{ApprovalBoard, BoardEntry, MemoryBoard, PendingApproval, Verdict, DECIDED_KEPT};
pub use call::{tool_call, McpError};
pub use digest::{arguments_sha256, canonical_json, canonical_sha256, tool_digest};
pub use ledger::ApprovalLedger;
pub use lines::{Line, LineReader};
pub use message::{parse_message, MessageError, DEFAULT_MAX_MESSAGE};
pub use relay::{Approvals, Output, Relay, RelayBuilder, GATEWAY_ERROR};
pub(crate) use response::refusal_with_note;
pub use response::{error_response, refusal, refusal_error};
pub use revision::{Revision, PROTOCOL_VERSION_META};
pub use tools_list::{filter_tools_list, ListingError};

/// An engine on a manual clock for `policy`, for the module's tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
fn test_engine(policy: &str) -> (crate::Engine, crate::ManualClock) {
    let clock = crate::ManualClock::new();
    let engine = crate::Engine::builder(policy.parse().unwrap())
        .clock(clock.clone())
        .build();
    (engine, clock)
}
