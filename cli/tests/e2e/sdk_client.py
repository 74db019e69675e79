"""The official MCP Python SDK (2.x) as the client of the stdio gateway, in front of an
SDK server, on 2026-07-28 (the client's default, negotiated with server/discover) and on
the 2025 initialize handshake. Usage: sdk_client.py POLICY SERVER_LOG GATEWAY-COMMAND...
(SERVER_LOG is unused). Exits non-zero with a message on the first failed check."""
import sys
from pathlib import Path

import anyio
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

HERE = Path(__file__).resolve().parent


def check(ok, what):
    if not ok:
        raise SystemExit(f"FAILED: {what}")


async def session(gateway, policy, mode):
    params = StdioServerParameters(
        command=gateway[0],
        args=[*gateway[1:], "--policy", policy, "--grant", "g1", "--",
              sys.executable, str(HERE / "sdk_server.py")],
    )
    async with Client(params, mode=mode) as client:
        listed = await client.list_tools()
        names = sorted(t.name for t in listed.tools)
        check(names == ["whmcs_get_ticket", "whmcs_update_ticket"], f"{mode}: tools/list {names}")

        ok = await client.call_tool("whmcs_get_ticket", {"ticket_id": 3})
        check(not ok.is_error and ok.content[0].text == "ticket 3: open", f"{mode}: allowed call {ok}")

        denied = await client.call_tool("whmcs_close_client", {"client_id": 7})
        check(denied.is_error, f"{mode}: denied call {denied}")
        check(denied.structured_content["code"] == "rule_denied", f"{mode}: code {denied}")
        check("never automated" in denied.content[0].text, f"{mode}: text {denied}")

        hidden = await client.call_tool("whmcs_delete_client", {"client_id": 7})
        check(hidden.structured_content["code"] == "hidden", f"{mode}: hidden {hidden}")

        first = await client.call_tool("whmcs_update_ticket", {"ticket_id": 1, "status": "Open"})
        check(not first.is_error, f"{mode}: first update {first}")
        limited = await client.call_tool("whmcs_update_ticket", {"ticket_id": 1, "status": "Open"})
        check(limited.structured_content["code"] == "rate_limited", f"{mode}: limit {limited}")
        check(limited.structured_content["retry_after_ms"] > 0, f"{mode}: retry {limited}")
        version = getattr(client.session, "protocol_version", None)
        print(f"{mode}: ok (protocol {version})")


async def main():
    policy, gateway = sys.argv[1], sys.argv[3:]
    await session(gateway, policy, "auto")
    await session(gateway, policy, "legacy")


anyio.run(main)
