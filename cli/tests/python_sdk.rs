//! The official MCP Python SDK (`pip install mcp`, 2.x) as client of `mcp-policy
//! gateway`, in front of an SDK server, on MCP 2026-07-28 and on the 2025 handshake
//! (`tests/e2e/sdk_client.py` holds the checks).
//!
//! It needs a Python with the `mcp` package: `$MCP_PYTHON`, else `python3` if it can
//! import `mcp`. Without one the test says so and passes, except under CI (`CI` set),
//! where `.ci/run` installs the SDK and a missing one fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::gateway;

const POLICY: &str = r#"{"version":"1","default":"deny","hide":["whmcs_delete_*"],"tools":{
  "whmcs_get_ticket":{},
  "whmcs_update_ticket":{"rate_limit":"1/minute"},
  "whmcs_close_client":{"action":"deny","reason":"never automated"}}}"#;

#[test]
#[ignore = "needs the MCP Python SDK"]
fn the_python_sdk_client_works_through_the_gateway_on_every_revision() {
    let stdout = gateway::run_sdk_script("sdk_client.py", POLICY);
    assert!(
        stdout.contains("auto: ok (protocol 2026-07-28)"),
        "{stdout}"
    );
    assert!(stdout.contains("legacy: ok"), "{stdout}");
}
