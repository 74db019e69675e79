//! `mcp-policy gateway --listen` end to end: the official MCP Python SDK's Streamable HTTP
//! client through the real gateway process to the SDK's Streamable HTTP server
//! (`tests/e2e/sdk_server.py http`) (JSON and
//! event-stream responses; 2026-07-28 and the 2025 handshake), plus raw HTTP requests
//! the SDK never sends (unknown tokens, batches, id-less calls, contradicting headers),
//! and a bounded load test: 100 concurrent clients on loopback, limits exact.
//!
//! Needs a Python with the SDK (`$MCP_PYTHON`, else `python3`); without one the tests say
//! so and pass, except under CI, where `.ci/run` installs it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::{gateway, http_stack};

use http_stack::{free_port, sha256_hex, wait_for_port, Stack, TOKEN};

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
#[ignore = "needs the MCP Python SDK"]
fn the_python_sdk_works_through_the_http_gateway_on_json_and_event_streams() {
    let python = gateway::python_with_sdk();
    for mode in ["json", "sse"] {
        let stack = Stack::start(&python, mode);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/sdk_http_client.py");
        let output = Command::new(&python)
            .arg(script)
            .arg(&stack.url)
            .arg(TOKEN)
            .arg(stack.dir.join("server.log"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{mode}: {stdout}\n{stderr}");
        for check in [
            "auto: tools/list filtered",
            "auto: allowed call",
            "auto: denied call never ran",
            "auto: limited call",
            "auto: approved call ran once",
            "legacy: tools/list filtered",
            "legacy: allowed call",
            "legacy: denied call never ran",
            "legacy: limited call",
            "legacy: approved call ran once",
        ] {
            assert!(
                stdout.contains(&format!("ok: {check}")),
                "{mode}: {check}\n{stdout}"
            );
        }
        assert!(stdout.contains("auto: protocol 2026-07-28"), "{stdout}");
    }
}

#[test]
#[ignore = "needs the MCP Python SDK"]
fn unknown_tokens_batches_id_less_calls_and_contradicting_headers_never_reach_the_server() {
    let python = gateway::python_with_sdk();
    let stack = Stack::start(&python, "json");
    let bearer = format!("Bearer {TOKEN}");
    let auth = ("authorization", bearer.as_str());
    let call = |tool: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool,
            "arguments": {"client_id": 7},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
        .to_string()
    };
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
    ];
    // No token, and an unknown one: 401 with a Bearer challenge.
    for headers in [vec![], vec![("authorization", "Bearer nope")]] {
        let (status, head, _) = stack.post(&call("whmcs_close_client"), &headers);
        assert_eq!(status, 401);
        assert!(head.contains("www-authenticate: bearer"), "{head}");
    }
    // A session this gateway never saw created (another token's would be the same).
    let (status, _, _) = stack.post(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        &[auth, ("mcp-session-id", "made-up")],
    );
    assert_eq!(status, 404);
    // A header naming another tool than the body.
    let mut headers = modern.to_vec();
    headers.extend([auth, ("mcp-name", "whmcs_get_ticket")]);
    let (status, _, body) = stack.post(&call("whmcs_close_client"), &headers);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("-32020"), "{body}");
    // A batch, and a call without an id.
    let batch = format!("[{}]", call("whmcs_close_client"));
    assert_eq!(stack.post(&batch, &[auth]).0, 400);
    let id_less =
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"whmcs_close_client"}}"#;
    assert_eq!(stack.post(id_less, &[auth]).0, 400);
    assert_eq!(stack.tools_run("whmcs_close_client"), 0);
    // The same call with matching headers reaches the policy, which denies it.
    let mut headers = modern.to_vec();
    headers.extend([auth, ("mcp-name", "whmcs_close_client")]);
    let (status, _, body) = stack.post(&call("whmcs_close_client"), &headers);
    assert_eq!(status, 200);
    assert!(body.contains("rule_denied"), "{body}");
    assert_eq!(stack.tools_run("whmcs_close_client"), 0);
}

#[test]
#[ignore = "needs the MCP Python SDK"]
fn a_hundred_concurrent_clients_never_pass_a_limit() {
    let python = gateway::python_with_sdk();
    let stack = std::sync::Arc::new(Stack::start(&python, "json"));
    // 100 clients, 12 calls each, against a global limit of 1 000 an hour.
    let bearer = format!("Bearer {TOKEN}");
    let allowed: usize = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..100)
            .map(|c| {
                let stack = std::sync::Arc::clone(&stack);
                let bearer = bearer.clone();
                scope.spawn(move || {
                    (0..12)
                        .filter(|i| {
                            let body = json!({"jsonrpc": "2.0", "id": c * 100 + i,
                                "method": "tools/call",
                                "params": {"name": "whmcs_get_ticket", "arguments": {"ticket_id": i},
                                    "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                        "io.modelcontextprotocol/clientCapabilities": {},
                                        "io.modelcontextprotocol/clientInfo": {"name": "load", "version": "1"}}}});
                            let (status, _, text) = stack.post(
                                &body.to_string(),
                                &[
                                    ("authorization", bearer.as_str()),
                                    ("mcp-protocol-version", "2026-07-28"),
                                    ("mcp-method", "tools/call"),
                                    ("mcp-name", "whmcs_get_ticket"),
                                ],
                            );
                            assert_eq!(status, 200, "{text}");
                            let answer: Value = serde_json::from_str(&text).unwrap();
                            match answer["result"]["structuredContent"]["code"].as_str() {
                                Some(code) => {
                                    assert_eq!(code, "rate_limited", "{text}");
                                    false
                                }
                                None => true,
                            }
                        })
                        .count()
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).sum()
    });
    assert_eq!(allowed, 1000, "1 200 calls, limit 1 000");
    assert_eq!(stack.tools_run("whmcs_get_ticket"), 1000);
    // The audit log: a valid record per decision, an outcome per allowed call.
    let schema: Value = serde_json::from_str(mcp_policy::audit::AUDIT_RECORD_SCHEMA).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let log = std::fs::read_to_string(stack.dir.join("audit.jsonl")).unwrap();
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.iter().all(|r| validator.is_valid(r)));
    let decided = |code: &str| records.iter().filter(|r| r["code"] == code).count();
    assert_eq!((decided("allowed"), decided("rate_limited")), (1000, 200));
    let outcomes = records.iter().filter(|r| r["outcome"] == "ok").count();
    assert_eq!(outcomes, 1000);
    assert!(records
        .iter()
        .any(|r| r["grant"] == "g-http" && r["session"] == "g-http"));
}

#[test]
#[ignore = "needs the MCP Python SDK"]
fn tokens_are_reloaded_on_change_and_sigterm_stops_the_gateway_cleanly() {
    let python = gateway::python_with_sdk();
    let mut stack = Stack::start(&python, "json");
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let (status, _, _) = stack.post(list, &[("authorization", "Bearer new-token")]);
    assert_eq!(status, 401);
    std::thread::sleep(Duration::from_millis(20)); // a new modification time
    let tokens = json!({"tokens": [
        {"sha256": sha256_hex(TOKEN.as_bytes()), "grant": "g-http"},
        {"sha256": sha256_hex(b"new-token"), "grant": "g-new"}]});
    std::fs::write(stack.dir.join("tokens.json"), tokens.to_string()).unwrap();
    let deadline = Instant::now() + gateway::ANSWER_TIMEOUT;
    while stack.post(list, &[("authorization", "Bearer new-token")]).0 == 401 {
        assert!(
            Instant::now() < deadline,
            "the tokens file was not reloaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = stack.gateway.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + gateway::ANSWER_TIMEOUT;
    let status = loop {
        if let Some(status) = stack.gateway.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the gateway did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
#[ignore = "needs the MCP Python SDK"]
fn decision_metrics_are_served_for_prometheus() {
    let python = gateway::python_with_sdk();
    let port = free_port();
    let stack = Stack::start_with(
        &python,
        "json",
        &["--metrics".into(), format!("127.0.0.1:{port}")],
    );
    let bearer = format!("Bearer {TOKEN}");
    for tool in ["whmcs_close_client", "whmcs_close_client", "whmcs_unknown"] {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}});
        assert_eq!(
            stack
                .post(&body.to_string(), &[("authorization", bearer.as_str())])
                .0,
            200
        );
    }
    wait_for_port(port);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut scraped = String::new();
    stream.read_to_string(&mut scraped).unwrap();
    let line = |labels: &str| {
        scraped
            .lines()
            .find(|l| {
                l.starts_with("mcp_policy_decisions_total{")
                    && labels.split(',').all(|p| l.contains(p))
            })
            .map(str::to_owned)
    };
    let denied = line(r#"decision="deny",code="rule_denied",rule="whmcs_close_client""#)
        .unwrap_or_else(|| panic!("{scraped}"));
    assert!(denied.ends_with(" 2"), "{denied}");
    let default = line(r#"code="default_denied",rule="""#).unwrap_or_else(|| panic!("{scraped}"));
    assert!(default.ends_with(" 1"), "{default}");
}
