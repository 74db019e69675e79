//! Reading what a `mcp::Relay` wrote, for the relay tests: one message parsed, and the
//! two outcomes of a client's request (refused to the client, or forwarded to the server).

#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use mcp_policy::mcp::Output;
use serde_json::Value;

/// One message the relay wrote, parsed.
pub fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

/// The single answer to the client, parsed; the server must get nothing.
pub fn refused(out: &Output) -> Value {
    assert!(out.to_server.is_empty(), "{out:?}");
    assert_eq!(out.to_client.len(), 1, "{out:?}");
    parse(&out.to_client[0])
}

/// The single message to the server, parsed; the client must get nothing.
pub fn forwarded(out: &Output) -> Value {
    assert!(out.to_client.is_empty(), "{out:?}");
    assert_eq!(out.to_server.len(), 1, "{out:?}");
    parse(&out.to_server[0])
}
