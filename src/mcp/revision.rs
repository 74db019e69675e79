//! MCP protocol revisions, told apart per message.

use serde_json::Value;

/// The `_meta` key in which MCP 2026-07-28 requests name their revision.
pub const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";

/// An MCP protocol revision that changes what a gateway must write.
///
/// Revisions up to 2025-11-25 negotiate a version once, in `initialize`; 2026-07-28 is
/// stateless: every request names its revision in `params._meta` (see
/// [`PROTOCOL_VERSION_META`]), and every result carries a `resultType`.
///
/// ```
/// use mcp_policy::mcp::Revision;
/// use serde_json::json;
///
/// let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {
///     "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
/// assert_eq!(Revision::of_request(&request), Some(Revision::V2026_07_28));
/// assert_eq!(Revision::parse("2025-06-18"), Some(Revision::V2025_06_18));
/// assert_eq!(Revision::parse("2024-11-05"), Some(Revision::Older));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Revision {
    /// A revision before 2025-06-18 (2024-11-05, 2025-03-26): handled like 2025-06-18.
    Older,
    /// 2025-06-18.
    V2025_06_18,
    /// 2025-11-25.
    V2025_11_25,
    /// 2026-07-28: stateless, `resultType` on every result, `cacheScope` on lists.
    V2026_07_28,
}

impl Revision {
    /// The newest revision this crate knows.
    pub const LATEST: Revision = Revision::V2026_07_28;

    /// Reads a protocol version string. A well-formed date after 2026-07-28 counts as
    /// 2026-07-28, the newest revision known, whose rules it most likely keeps; one
    /// before 2025-06-18 is [`Revision::Older`]. `None` for anything that is not a
    /// `YYYY-MM-DD` date.
    pub fn parse(version: &str) -> Option<Revision> {
        let bytes = version.as_bytes();
        let shaped = bytes.len() == 10
            && bytes.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                _ => b.is_ascii_digit(),
            });
        if !shaped {
            return None;
        }
        // Dates of one shape compare in time order as strings.
        Some(match version {
            v if v >= "2026-07-28" => Revision::V2026_07_28,
            v if v >= "2025-11-25" => Revision::V2025_11_25,
            v if v >= "2025-06-18" => Revision::V2025_06_18,
            _ => Revision::Older,
        })
    }

    /// The revision a request names in `params._meta`, as 2026-07-28 requests do; `None`
    /// when it names none (older clients negotiated theirs in `initialize`).
    pub fn of_request(request: &Value) -> Option<Revision> {
        request
            .get("params")?
            .get("_meta")?
            .get(PROTOCOL_VERSION_META)?
            .as_str()
            .and_then(Revision::parse)
    }

    /// The version string of the revision (`"2025-06-18"` for [`Revision::Older`], the
    /// oldest revision this crate speaks).
    pub fn as_str(self) -> &'static str {
        match self {
            Revision::Older | Revision::V2025_06_18 => "2025-06-18",
            Revision::V2025_11_25 => "2025-11-25",
            Revision::V2026_07_28 => "2026-07-28",
        }
    }

    /// Whether results must carry `resultType` (2026-07-28 and later).
    pub fn requires_result_type(self) -> bool {
        self >= Revision::V2026_07_28
    }

    /// Makes `result` (a JSON-RPC `result` object) a complete result valid on this
    /// revision: adds `"resultType": "complete"` where the revision requires it.
    pub fn complete_result(self, result: &mut Value) {
        if let (true, Some(map)) = (self.requires_result_type(), result.as_object_mut()) {
            map.entry("resultType")
                .or_insert_with(|| Value::from("complete"));
        }
    }
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_map_to_revisions() {
        assert_eq!(Revision::parse("2026-07-28"), Some(Revision::V2026_07_28));
        assert_eq!(Revision::parse("2027-01-01"), Some(Revision::V2026_07_28));
        assert_eq!(Revision::parse("2025-11-25"), Some(Revision::V2025_11_25));
        assert_eq!(Revision::parse("2025-03-26"), Some(Revision::Older));
        for bad in ["", "2026-7-28", "latest", "2026-07-28x", "2026/07/28"] {
            assert_eq!(Revision::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Revision::of_request(&json!({"params": {"_meta": {PROTOCOL_VERSION_META: 5}}})),
            None
        );
        assert_eq!(Revision::of_request(&json!({"params": {}})), None);
    }

    #[test]
    fn only_2026_results_get_a_result_type() {
        let mut result = json!({"content": []});
        Revision::V2025_11_25.complete_result(&mut result);
        assert_eq!(result, json!({"content": []}));
        Revision::V2026_07_28.complete_result(&mut result);
        assert_eq!(result, json!({"content": [], "resultType": "complete"}));
        let mut asked = json!({"resultType": "input_required"});
        Revision::V2026_07_28.complete_result(&mut asked);
        assert_eq!(asked["resultType"], "input_required");
    }
}
