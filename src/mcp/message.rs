//! Reading one JSON-RPC message from bytes, refusing every ambiguity a server could read
//! differently.

use super::{INVALID_REQUEST, PARSE_ERROR};
use crate::json::{parse_with, Keys};
use serde_json::error::Category;
use serde_json::Value;

/// The default limit on one message: 4 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 4 << 20;

/// Why bytes are not one usable JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The message is longer than the limit.
    #[error("the message is {size} bytes or more; the limit is {limit} bytes")]
    TooLarge {
        /// Bytes seen (at least this many).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not UTF-8.
    #[error("the message is not UTF-8: {0}")]
    NotUtf8(String),
    /// The text is not one JSON value.
    #[error("the message is not JSON: {0}")]
    NotJson(String),
    /// An object has a duplicate key, or two keys equal when case is ignored.
    #[error("{0}")]
    AmbiguousKeys(String),
}

impl MessageError {
    /// The JSON-RPC error code to answer with: `-32700` (parse error) for bytes that are
    /// not UTF-8 JSON, `-32600` (invalid request) otherwise.
    pub fn code(&self) -> i64 {
        match self {
            MessageError::NotUtf8(_) | MessageError::NotJson(_) => PARSE_ERROR,
            MessageError::TooLarge { .. } | MessageError::AmbiguousKeys(_) => INVALID_REQUEST,
        }
    }
}

/// Parses one message of at most `limit` bytes. Refuses bytes that are not UTF-8, text
/// that is not exactly one JSON value, and any object anywhere in it with a duplicate key
/// or two keys that are equal when case is ignored (`"name"` and `"NAME"`; Go's
/// `encoding/json` reads those as one field, the last one winning), so that what a
/// gateway evaluates is what every server reads.
///
/// ```
/// use mcp_policy::mcp::{parse_message, MessageError};
///
/// let ok = parse_message(br#"{"jsonrpc": "2.0", "id": 1, "method": "ping"}"#, 1024)?;
/// assert_eq!(ok["method"], "ping");
/// let sneaky = br#"{"params": {"name": "whmcs_get_ticket", "NAME": "whmcs_close_client"}}"#;
/// assert!(matches!(parse_message(sneaky, 1024), Err(MessageError::AmbiguousKeys(_))));
/// assert_eq!(parse_message(b"\xff", 1024).unwrap_err().code(), -32700);
/// # Ok::<(), MessageError>(())
/// ```
///
/// # Errors
/// A [`MessageError`] saying what is wrong, with line and column for JSON errors.
pub fn parse_message(bytes: &[u8], limit: usize) -> Result<Value, MessageError> {
    if bytes.len() > limit {
        return Err(MessageError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    // Checked first so that the error says "not UTF-8" rather than a JSON position.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(MessageError::NotUtf8(format!(
            "invalid byte at offset {}",
            e.valid_up_to()
        )));
    }
    parse_with(bytes, Keys::IgnoreCase).map_err(|e| match e.classify() {
        Category::Data => MessageError::AmbiguousKeys(e.to_string()),
        Category::Io | Category::Syntax | Category::Eof => MessageError::NotJson(e.to_string()),
    })
}
