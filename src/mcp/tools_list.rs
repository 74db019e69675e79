//! Filtering `tools/list` results by the policy, after checking that the result says
//! one thing only.

use super::Revision;
use crate::catalog;
use crate::engine::{resolve, Engine, Listed};
use crate::json::fold_case;
use serde_json::{Map, Value};

/// The members of a `tools/list` result, and of one listed tool and its annotations, that
/// MCP defines. A member equal to one of them only when case is ignored (`Tools`, `Name`)
/// is read by a lenient client as that member, so a result that has one is refused.
const RESULT_MEMBERS: &[&str] = &["tools", "nextCursor", "_meta", "resultType", "cacheScope"];
const ENVELOPE_MEMBERS: &[&str] = &["jsonrpc", "id", "result", "error", "method"];
const TOOL_MEMBERS: &[&str] = &[
    "name",
    "title",
    "description",
    "icons",
    "inputSchema",
    "outputSchema",
    "annotations",
    "execution",
    "_meta",
];
const HINT_MEMBERS: &[&str] = &[
    "title",
    "readOnlyHint",
    "destructiveHint",
    "idempotentHint",
    "openWorldHint",
];

/// Why a `tools/list` result was not relayed: the gateway would have had to guess what
/// a client reads in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the MCP server's {method} result {problem}, so it was not relayed")]
pub struct ListingError {
    method: &'static str,
    problem: String,
}

impl ListingError {
    fn new(problem: impl Into<String>) -> ListingError {
        ListingError::of("tools/list", problem)
    }

    pub(crate) fn of(method: &'static str, problem: impl Into<String>) -> ListingError {
        ListingError {
            method,
            problem: problem.into(),
        }
    }

    /// What is wrong with the result, in words.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// The `tools/list` result in `value`: its `result` member when `value` is a whole
/// JSON-RPC response (it has `jsonrpc`), else `value` itself. Never a member nested
/// further, wherever a server puts one.
pub(crate) fn listing_result(value: &Value) -> Option<&Value> {
    match value.get("jsonrpc") {
        Some(_) => value.get("result"),
        None => Some(value),
    }
}

/// Records a `tools/list` result in the engine ([`Engine::observe_tools`]: annotations for
/// annotation rules, definitions for pins), then removes the tools the policy hides or
/// denies outright (a `deny` rule, annotation rule or default, or a pinned tool whose
/// listed definition differs from its pin under `on_drift` `deny` or `hide`), so the agent
/// is not offered tools it cannot call. Accepts the `result` object or the whole JSON-RPC
/// response (one with a `jsonrpc` member); only the result's own `tools` member is
/// listed and filtered. Returns how many tools were removed.
///
/// On MCP 2026-07-28 the result is marked `"cacheScope": "private"`: what one caller may
/// see is not for shared caches.
///
/// # Errors
/// A result a client could read otherwise than this function does is refused whole,
/// with nothing recorded: `tools` missing or not an array, an entry that is not an
/// object with a non-empty string `name`, `annotations` that are not an object, or a
/// member equal to one MCP defines only when case is ignored (`Tools`, `Name`,
/// `ReadOnlyHint`). A gateway answers the client with an error instead.
///
/// ```
/// use mcp_policy::mcp::{filter_tools_list, Revision};
/// use mcp_policy::{Engine, Policy};
/// use serde_json::json;
///
/// let policy: Policy = r#"{"version": "1", "default": "allow", "hide": ["whmcs_delete_*"]}"#.parse()?;
/// let engine = Engine::new(policy);
/// let mut result = json!({"tools": [{"name": "whmcs_delete_client"}, {"name": "whmcs_get_ticket"}]});
/// assert_eq!(filter_tools_list(&engine, &mut result, Revision::V2025_06_18), Ok(1));
///
/// let mut variant = json!({"Tools": [{"name": "whmcs_delete_client"}]});
/// assert!(filter_tools_list(&engine, &mut variant, Revision::V2025_06_18).is_err());
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
pub fn filter_tools_list(
    engine: &Engine,
    result: &mut Value,
    revision: Revision,
) -> Result<usize, ListingError> {
    let policy = engine.policy();
    let target = if result.get("jsonrpc").is_some() {
        result
            .get_mut("result")
            .ok_or_else(|| ListingError::new("has no \"result\""))?
    } else {
        result
    };
    check_listing(target)?;
    // Each entry is hinted and digested once: recorded for later calls, and judged here.
    let refused: Vec<bool> = {
        let tools = target
            .get("tools")
            .and_then(Value::as_array)
            .ok_or_else(|| ListingError::new("has no \"tools\" array"))?;
        let entries = catalog::entries(tools);
        engine.observe_entries(&entries);
        entries
            .iter()
            .map(|entry| match entry {
                Some((name, listed)) => {
                    let listed = Listed::Entry {
                        hints: listed.hints,
                        digest: &listed.digest,
                    };
                    resolve(&policy, name, listed).denies_outright(&policy)
                }
                // `check_listing` refused entries without a name.
                None => true,
            })
            .collect()
    };
    let Some(map) = target.as_object_mut() else {
        return Err(ListingError::new("is not an object"));
    };
    if revision.requires_result_type() {
        map.insert("cacheScope".into(), "private".into());
    }
    let Some(tools) = map.get_mut("tools").and_then(Value::as_array_mut) else {
        return Err(ListingError::new("has no \"tools\" array"));
    };
    Ok(remove_refused(tools, &refused))
}

/// Removes the entries `refused` marks (and any it does not cover); how many.
pub(crate) fn remove_refused(entries: &mut Vec<Value>, refused: &[bool]) -> usize {
    let before = entries.len();
    let mut index = 0;
    entries.retain(|_| {
        let keep = !refused.get(index).copied().unwrap_or(true);
        index += 1;
        keep
    });
    before - entries.len()
}

/// Checks that a `tools/list` result has one reading.
fn check_listing(result: &Value) -> Result<(), ListingError> {
    let map = result
        .as_object()
        .ok_or_else(|| ListingError::new("is not an object"))?;
    check_members(map, RESULT_MEMBERS, "")?;
    // A result that nests envelope members could be a listing inside a listing: which
    // one a client shows is a guess.
    if let Some(envelope) = ENVELOPE_MEMBERS.iter().find(|m| map.contains_key(**m)) {
        return Err(ListingError::new(format!(
            "has a member \"{envelope}\", which belongs to a JSON-RPC message, not a result"
        )));
    }
    let tools = map
        .get("tools")
        .ok_or_else(|| ListingError::new("has no \"tools\""))?
        .as_array()
        .ok_or_else(|| ListingError::new("has a \"tools\" that is not an array"))?;
    for (i, tool) in tools.iter().enumerate() {
        let entry = tool
            .as_object()
            .ok_or_else(|| ListingError::new(format!("has tools[{i}] that is not an object")))?;
        check_members(entry, TOOL_MEMBERS, &format!("tools[{i}]."))?;
        if !entry
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|name| !name.is_empty())
        {
            return Err(ListingError::new(format!(
                "has tools[{i}] without a non-empty string \"name\""
            )));
        }
        match entry.get("annotations") {
            None => {}
            Some(Value::Object(hints)) => {
                check_members(hints, HINT_MEMBERS, &format!("tools[{i}].annotations."))?;
            }
            Some(_) => {
                return Err(ListingError::new(format!(
                    "has tools[{i}].annotations that is not an object"
                )))
            }
        }
    }
    Ok(())
}

/// Refuses a member that equals one of `known` only when case is ignored.
pub(crate) fn check_members(
    map: &Map<String, Value>,
    known: &[&str],
    at: &str,
) -> Result<(), ListingError> {
    for key in map.keys() {
        let folded = fold_case(key);
        if let Some(exact) = known
            .iter()
            .find(|exact| **exact != key && fold_case(exact) == folded)
        {
            return Err(ListingError::new(format!(
                "has a member {at}{} where MCP defines {at}{exact}",
                Value::from(key.as_str())
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::test_engine as engine;
    use serde_json::json;

    #[test]
    fn tools_list_loses_hidden_and_outright_denied_tools() {
        let (engine, _) = engine(
            r#"{"version":"1","default":"deny","hide":["whmcs_delete_*"],"tools":{
            "whmcs_get_*":{},"whmcs_close_client":{"action":"deny"},"whmcs_send_email":{"action":"require_approval"},
            "whmcs_add_credit":{"require":[{"path":"args.amount","op":"lte","value":100}]}}}"#,
        );
        let mut response = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
            {"name": "whmcs_get_ticket"}, {"name": "whmcs_delete_client"}, {"name": "whmcs_close_client"},
            {"name": "whmcs_send_email"}, {"name": "whmcs_add_credit"}, {"name": "unlisted"}
        ], "nextCursor": "c2"}});
        assert_eq!(
            filter_tools_list(&engine, &mut response, Revision::V2025_06_18),
            Ok(3)
        );
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
            ]
        );
        assert_eq!(response["result"]["nextCursor"], "c2");

        let mut bare = json!({"tools": [{"name": "whmcs_delete_x"}]});
        assert_eq!(
            filter_tools_list(&engine, &mut bare, Revision::V2025_06_18),
            Ok(1)
        );
    }

    #[test]
    fn only_the_results_own_tools_are_listed_and_guesses_are_refused() {
        let (engine, _) = engine(r#"{"version":"1","default":"allow","hide":["whmcs_delete_*"]}"#);
        // Only the result's own tools: a whole response's result is its `result` member.
        let mut whole = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "whmcs_delete_client"}]}});
        assert_eq!(
            filter_tools_list(&engine, &mut whole, Revision::V2025_06_18),
            Ok(1)
        );
        for bad in [
            // A listing nested inside a listing: which one a client shows is a guess.
            json!({"tools": [{"name": "whmcs_delete_client"}],
                "result": {"tools": [{"name": "whmcs_get_ticket"}]}}),
            json!({"Tools": [{"name": "whmcs_delete_client"}]}),
            json!({"tools": [{"Name": "whmcs_delete_client"}]}),
            json!({"tools": [{"name": "whmcs_get_ticket", "NAME": "whmcs_delete_client"}]}),
            json!({"tools": [{"name": "t", "annotations": {"ReadOnlyHint": true}}]}),
            json!({"tools": [{"name": "t", "annotations": true}]}),
            json!({"tools": [{"description": "no name"}]}),
            json!({"tools": [{"name": ""}]}),
            json!({"tools": [7]}),
            json!({"tools": {"name": "t"}}),
            json!({"content": []}),
            json!({"jsonrpc": "2.0", "id": 1}),
        ] {
            let mut listing = bad.clone();
            assert!(
                filter_tools_list(&engine, &mut listing, Revision::V2025_06_18).is_err(),
                "{bad}"
            );
        }
    }
}
