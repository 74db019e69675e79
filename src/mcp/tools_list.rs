//! Filtering `tools/list` results by the policy.

use super::Revision;
use crate::engine::Engine;
use serde_json::Value;

/// Records a `tools/list` result in the engine ([`Engine::observe_tools`]: annotations for
/// annotation rules, definitions for pins), then removes the tools the policy hides or
/// denies outright (a `deny` rule, annotation rule or default, or a pinned tool whose
/// listed definition differs from its pin under `on_drift` `deny` or `hide`), so the agent
/// is not offered tools it cannot call. Accepts the `result` object or the whole JSON-RPC
/// response; returns how many tools were removed.
///
/// On MCP 2026-07-28 the result is marked `"cacheScope": "private"`: what one caller may
/// see is not for shared caches.
pub fn filter_tools_list(engine: &Engine, result: &mut Value, revision: Revision) -> usize {
    let policy = engine.policy();
    let target = match result.get_mut("result") {
        Some(inner) => inner,
        None => result,
    };
    engine.observe_tools(target);
    if let (true, Some(map)) = (revision.requires_result_type(), target.as_object_mut()) {
        map.insert("cacheScope".into(), "private".into());
    }
    let Some(tools) = target.get_mut("tools").and_then(Value::as_array_mut) else {
        return 0;
    };
    let before = tools.len();
    // An entry without a name is not a tool description we can judge: it stays.
    tools.retain(|tool| !engine.refuses_listed(&policy, tool));
    before - tools.len()
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
            {"name": "whmcs_send_email"}, {"name": "whmcs_add_credit"}, {"name": "unlisted"}, {"description": "no name"}
        ], "nextCursor": "c2"}});
        assert_eq!(
            filter_tools_list(&engine, &mut response, Revision::V2025_06_18),
            3
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
                Value::Null
            ]
        );
        assert_eq!(response["result"]["nextCursor"], "c2");

        let mut bare = json!({"tools": [{"name": "whmcs_delete_x"}]});
        assert_eq!(
            filter_tools_list(&engine, &mut bare, Revision::V2025_06_18),
            1
        );
        let mut not_a_list = json!({"result": {"content": []}});
        assert_eq!(
            filter_tools_list(&engine, &mut not_a_list, Revision::V2025_06_18),
            0
        );
    }
}
