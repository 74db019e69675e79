//! SHA-256 digests over canonical JSON: of call arguments (approvals and audit records
//! bind them) and of tool definitions (pins).
//!
//! Canonical JSON is RFC 8785 (keys sorted by UTF-16 code units, no whitespace, its
//! string escapes) except for numbers: RFC 8785 writes every number through a double,
//! so `9007199254740992` and `9007199254740993` would share a digest and an approval for
//! one would run the call with the other. Here an integer is written exactly as parsed,
//! and any other number as the shortest decimal that reads back as the double the
//! gateway forwards, without an exponent, trailing zeros or a sign on zero (`1.0` is
//! `1`, `1e3` is `1000`, `-0` is `0`). Two values a server can tell apart never share a
//! digest.

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// The members of a `tools/list` entry a pin leaves out: `_meta` is the server's
/// out-of-band data and may change per listing.
const UNPINNED_FIELDS: [&str; 1] = ["_meta"];

/// Lowercase hex SHA-256 of `value` in canonical form: the same for any key order,
/// spacing or spelling of a number, different for any two different values.
///
/// ```
/// use mcp_policy::mcp::canonical_sha256;
/// use serde_json::json;
///
/// assert_eq!(
///     canonical_sha256(&json!({"b": 1, "a": [true, null]})),
///     canonical_sha256(&serde_json::from_str(r#"{ "a" : [true,null], "b" : 1.0 }"#).unwrap()),
/// );
/// // Integers are exact, never rounded through a double.
/// assert_ne!(
///     canonical_sha256(&json!(9007199254740992_u64)),
///     canonical_sha256(&json!(9007199254740993_u64)),
/// );
/// ```
pub fn canonical_sha256(value: &Value) -> String {
    let mut hasher = Sha256::new();
    write_canonical(value, &mut |bytes| hasher.update(bytes));
    hex::encode(hasher.finalize())
}

/// `value` in canonical form, as text.
///
/// ```
/// use mcp_policy::mcp::canonical_json;
/// use serde_json::json;
///
/// let value = json!({"b": [1.50, -0.0, 18446744073709551615_u64], "a": "\u{7}é"});
/// assert_eq!(canonical_json(&value), r#"{"a":"\u0007é","b":[1.5,0,18446744073709551615]}"#);
/// ```
pub fn canonical_json(value: &Value) -> String {
    let mut bytes = Vec::new();
    write_canonical(value, &mut |chunk| bytes.extend_from_slice(chunk));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn write_canonical(value: &Value, out: &mut dyn FnMut(&[u8])) {
    match value {
        Value::Null => out(b"null"),
        Value::Bool(true) => out(b"true"),
        Value::Bool(false) => out(b"false"),
        Value::Number(number) => write_number(number, out),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out(b",");
                }
                write_canonical(item, out);
            }
            out(b"]");
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out(b"{");
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out(b",");
                }
                write_string(key, out);
                out(b":");
                write_canonical(item, out);
            }
            out(b"}");
        }
    }
}

fn write_number(number: &Number, out: &mut dyn FnMut(&[u8])) {
    let text = if let Some(n) = number.as_i64() {
        n.to_string()
    } else if let Some(n) = number.as_u64() {
        n.to_string()
    } else {
        // Rust writes the shortest decimal that reads back as the same double, with no
        // exponent; a parsed JSON number is always finite.
        let n = number.as_f64().unwrap_or_default();
        if n == 0.0 {
            "0".to_owned()
        } else {
            n.to_string()
        }
    };
    out(text.as_bytes());
}

/// A JSON string as RFC 8785 (and ECMAScript) writes it.
fn write_string(text: &str, out: &mut dyn FnMut(&[u8])) {
    out(b"\"");
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out(text.as_bytes().get(start..i).unwrap_or_default());
        if escape.is_empty() {
            out(format!("\\u{byte:04x}").as_bytes());
        } else {
            out(escape);
        }
        start = i + 1;
    }
    out(text.as_bytes().get(start..).unwrap_or_default());
    out(b"\"");
}

/// The digest of a call's arguments, `{}` when it has none: what an approval binds.
pub fn arguments_sha256(arguments: Option<&Value>) -> String {
    match arguments {
        Some(args) => canonical_sha256(args),
        None => canonical_sha256(&Value::Object(Map::new())),
    }
}

/// `sha256:<64 hex>` of a `tools/list` entry: every member but `_meta` (`name`,
/// `title`, `description`, `icons`, `inputSchema`, `outputSchema`, `annotations`,
/// `execution`, and any a later revision adds), as given (a member sent as `null` stays
/// `null`, an absent one stays absent): what a policy's `pins` compare.
///
/// ```
/// use mcp_policy::mcp::tool_digest;
/// use serde_json::json;
///
/// let listed = json!({"name": "t", "description": "d", "_meta": {"seen": 1}});
/// let same = json!({"description": "d", "name": "t"});
/// assert_eq!(tool_digest(&listed), tool_digest(&same));
/// // A new title is a new definition.
/// assert_ne!(tool_digest(&listed), tool_digest(&json!({"name": "t", "description": "d", "title": "T"})));
/// assert!(tool_digest(&listed).starts_with("sha256:"));
/// ```
pub fn tool_digest(tool: &Value) -> String {
    let kept: Map<String, Value> = tool
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| !UNPINNED_FIELDS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    format!("sha256:{}", canonical_sha256(&Value::Object(kept)))
}
