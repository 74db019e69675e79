//! The audit log of a real `mcp-policy gateway` session: every line valid against the
//! shipped JSON Schema, with §-listed fields, outcome records after allowed calls, the
//! approval named; and `mcp-policy replay` of the log reproduces its decisions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::gateway;

use gateway::Session;
use serde_json::{json, Value};
use std::process::Command;

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{
  "whmcs_get_ticket":{},
  "whmcs_update_ticket":{"limits":[{"window":"minute","max":2}]},
  "whmcs_error":{"limits":[{"window":"minute","max":1}]},
  "whmcs_close_client":{"action":"deny","reason":"never automated"},
  "whmcs_send_email":{"action":"require_approval","reason":"emails are reviewed"}}}"#;

#[test]
fn a_gateway_session_writes_valid_records_that_replay_reproduces() {
    let dir = std::env::temp_dir().join(format!("mcp-policy-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.jsonl");
    let mut gw = Session::go_like(POLICY, &["--audit", audit.to_str().unwrap()]);
    gw.handshake();
    gw.call(1, "whmcs_get_ticket", json!({"ticket_id": 1}));
    gw.call(2, "whmcs_close_client", json!({"client_id": 7}));
    for id in 3..6 {
        gw.call(id, "whmcs_update_ticket", json!({"ticket_id": id}));
    }
    // The server fails the first with a JSON-RPC error: given back, so the second passes.
    assert_eq!(
        gw.call(6, "whmcs_error", json!({}))["error"]["code"],
        -32603
    );
    assert_eq!(
        gw.call(7, "whmcs_error", json!({}))["error"]["code"],
        -32603
    );
    // An approval on 2026-07-28.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    let asked = gw.request(
        8,
        "tools/call",
        json!({"name": "whmcs_send_email", "arguments": {"to": 7}, "_meta": meta}),
    );
    let state = asked["result"]["requestState"].as_str().unwrap().to_owned();
    let sent = gw.request(9, "tools/call", json!({"name": "whmcs_send_email", "arguments": {"to": 7}, "_meta": meta,
        "requestState": state, "inputResponses": {"approval": {"action": "accept", "content": {"approve": true}}}}));
    assert_eq!(sent["result"]["content"][0]["text"], "ran whmcs_send_email");
    let policy_path = gw.dir.join("policy.json");
    let policy_copy = dir.join("policy.json");
    std::fs::copy(&policy_path, &policy_copy).unwrap();
    gw.finish();

    let text = std::fs::read_to_string(&audit).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let schema: Value = serde_json::from_str(mcp_policy::audit::AUDIT_RECORD_SCHEMA).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    for record in &records {
        let errors: Vec<String> = validator
            .iter_errors(record)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{record}: {errors:?}");
    }
    let decisions: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("decision").is_some())
        .collect();
    let codes: Vec<&str> = decisions
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "allowed",
            "rule_denied",
            "allowed",
            "allowed",
            "rate_limited",
            "allowed",
            "allowed",
            "approval_required",
            "allowed"
        ]
    );
    assert_eq!(decisions[0]["request_id"], 1);
    assert_eq!(decisions[0]["grant"], "g1");
    assert_eq!(
        decisions[0]["args_sha256"],
        mcp_policy::mcp::arguments_sha256(Some(&json!({"ticket_id": 1})))
    );
    let policy_hash = {
        use sha2::Digest;
        let bytes = std::fs::read(&policy_copy).unwrap();
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert!(decisions
        .iter()
        .all(|d| d["policy_sha256"] == policy_hash.as_str()));
    assert_eq!(decisions[4]["limit"]["max"], 2);
    assert!(decisions[4]["retry_after_ms"].as_u64().unwrap() > 0);
    assert!(
        decisions[8]["approval"]
            .as_str()
            .is_some_and(|n| n.len() == 32),
        "{}",
        decisions[8]
    );
    let outcomes: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("outcome").is_some())
        .collect();
    assert_eq!(
        outcomes.len(),
        6,
        "one per allowed call that went to the server"
    );
    let first_error = decisions[5]["id"].as_str().unwrap();
    let refunded = outcomes
        .iter()
        .find(|o| o["decision_id"] == first_error)
        .unwrap();
    assert_eq!(
        (refunded["outcome"].as_str(), refunded["refunded"].as_bool()),
        (Some("not_run"), Some(true))
    );

    let replay = Command::new(gateway::binary())
        .args(["replay", "--policy"])
        .arg(&policy_copy)
        .arg(&audit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("9 of 9 logged decisions reproduced"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_shadow_policy_is_reported_where_it_differs_and_never_enforced() {
    let dir = std::env::temp_dir().join(format!("mcp-policy-shadow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.jsonl");
    let shadow = dir.join("shadow.json");
    // The candidate denies reads and would allow closing accounts.
    std::fs::write(
        &shadow,
        r#"{"version":"1","default":"deny","tools":{"whmcs_close_client":{},
            "whmcs_update_ticket":{"limits":[{"window":"minute","max":1}]}}}"#,
    )
    .unwrap();
    let mut gw = Session::go_like(
        POLICY,
        &[
            "--audit",
            audit.to_str().unwrap(),
            "--shadow",
            shadow.to_str().unwrap(),
        ],
    );
    gw.handshake();
    assert_eq!(
        gw.call(1, "whmcs_get_ticket", json!({}))["result"]["content"][0]["text"],
        "ran whmcs_get_ticket"
    );
    assert_eq!(
        gw.call(2, "whmcs_close_client", json!({}))["result"]["structuredContent"]["code"],
        "rule_denied"
    );
    // The shadow's own counter (1 a minute) limits the second update; the enforced (2) not.
    for id in 3..5 {
        assert_eq!(
            gw.call(id, "whmcs_update_ticket", json!({}))["result"]["isError"],
            false
        );
    }
    let ran: Vec<String> = gw.tools_run().into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        ran,
        [
            "whmcs_get_ticket",
            "whmcs_update_ticket",
            "whmcs_update_ticket"
        ]
    );
    gw.finish();
    let records: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r.get("decision").is_some())
        .collect();
    let shadows: Vec<Value> = records
        .iter()
        .map(|r| r.get("shadow").cloned().unwrap_or(Value::Null))
        .collect();
    assert_eq!(shadows[0]["code"], "default_denied");
    assert_eq!(shadows[1]["decision"], "allow");
    assert_eq!(shadows[2], Value::Null, "same decision: no shadow");
    assert_eq!(shadows[3]["code"], "rate_limited");
    let _ = std::fs::remove_dir_all(&dir);
}
