//! SHA-256 digests over RFC 8785 canonical JSON: of call arguments (approvals bind them)
//! and of tool definitions (pins).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The fields of a tool definition that a pin covers.
const PINNED_FIELDS: [&str; 5] = [
    "name",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// Lowercase hex SHA-256 of `value` in RFC 8785 canonical form: the same for any key
/// order and spacing.
///
/// ```
/// use mcp_policy::mcp::canonical_sha256;
/// use serde_json::json;
///
/// assert_eq!(
///     canonical_sha256(&json!({"b": 1, "a": [true, null]})),
///     canonical_sha256(&serde_json::from_str(r#"{ "a" : [true,null], "b" : 1.0 }"#).unwrap()),
/// );
/// ```
pub fn canonical_sha256(value: &Value) -> String {
    // Serializing a `Value` cannot fail: its numbers are finite and its keys strings.
    let canonical = serde_json_canonicalizer::to_vec(value).unwrap_or_default();
    hex(&Sha256::digest(&canonical))
}

/// The digest of a call's arguments, `{}` when it has none: what an approval binds.
pub fn arguments_sha256(arguments: Option<&Value>) -> String {
    match arguments {
        Some(args) => canonical_sha256(args),
        None => canonical_sha256(&Value::Object(Map::new())),
    }
}

/// `sha256:<64 hex>` of a `tools/list` entry, over its `name`, `description`,
/// `inputSchema`, `outputSchema` and `annotations` as given (a field sent as `null` stays
/// `null`, an absent one stays absent): what a policy's `pins` compare.
///
/// ```
/// use mcp_policy::mcp::tool_digest;
/// use serde_json::json;
///
/// let listed = json!({"name": "t", "description": "d", "title": "not pinned"});
/// let same = json!({"description": "d", "name": "t"});
/// assert_eq!(tool_digest(&listed), tool_digest(&same));
/// assert!(tool_digest(&listed).starts_with("sha256:"));
/// ```
pub fn tool_digest(tool: &Value) -> String {
    let kept: Map<String, Value> = PINNED_FIELDS
        .iter()
        .filter_map(|field| Some(((*field).to_owned(), tool.get(*field)?.clone())))
        .collect();
    format!("sha256:{}", canonical_sha256(&Value::Object(kept)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
