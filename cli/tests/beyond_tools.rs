//! Beyond tools, end to end: the official MCP Python SDK as client and server through the
//! gateway, on 2026-07-28 and a 2025 revision. Resources, prompts, and the server's
//! sampling and elicitation requests are decided by the policy; the server's own log is
//! the evidence of what reached it (`tests/e2e/sdk_beyond_client.py` holds the checks).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::{gateway, http_stack};

use http_stack::{Stack, TOKEN};
use std::path::Path;
use std::process::Command;

const CHECKS: &[&str] = &[
    "resources/list filtered",
    "templates listed",
    "allowed resource read reached the server",
    "denied resource never reached the server",
    "a re-spelled denied resource never reached the server",
    "resource reads limited per grant",
    "prompts/list filtered",
    "allowed prompt reached the server",
    "denied prompt never reached the server",
    "allowed sampling round-tripped",
    "sampling with allServers refused without the client seeing it",
    "sampling limited per session",
    "allowed elicitation round-tripped",
];

const POLICY: &str = r#"{"version":"1","default":"deny",
  "tools":{"whmcs_draft_reply":{},"whmcs_confirm":{}},
  "resources":{"whmcs://desk/tickets/*":{"limits":[{"window":"minute","max":2,"scope":"grant"}]},
    "whmcs://desk/admin/*":{"action":"deny","reason":"the admin area is not for agents"}},
  "prompts":{"summarize_ticket":{}},
  "server_requests":{
    "sampling/createMessage":{
      "deny_if":[{"path":"params.includeContext","op":"eq","value":"allServers"}],
      "limits":[{"window":"minute","max":1,"scope":"session"}]},
    "elicitation/create":{}}}"#;

#[test]
#[ignore = "needs the MCP Python SDK"]
fn resources_prompts_and_server_requests_through_the_stdio_gateway() {
    let stdout = gateway::run_sdk_script("sdk_beyond_client.py", POLICY);
    for mode in ["auto", "legacy"] {
        for check in CHECKS {
            assert!(
                stdout.contains(&format!("ok: {mode}: {check}")),
                "{mode}: {check}\n{stdout}"
            );
        }
    }
}

#[test]
#[ignore = "needs the MCP Python SDK"]
fn resources_prompts_and_server_requests_through_the_http_gateway() {
    let python = gateway::python_with_sdk();
    // One gateway per revision: counts of one must not spill into the other's checks.
    for mode in ["auto", "legacy"] {
        let stack = Stack::start_custom(&python, "beyond", &[], POLICY);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/sdk_beyond_client.py");
        let output = Command::new(&python)
            .arg(script)
            .arg("-")
            .arg(stack.dir.join("server.log"))
            .arg(&stack.url)
            .arg(TOKEN)
            .env("SDK_MODES", mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{mode}: {stdout}\n{stderr}");
        for check in CHECKS {
            assert!(
                stdout.contains(&format!("ok: {mode}: {check}")),
                "{mode}: {check}\n{stdout}"
            );
        }
    }
}
