"""The SDK's Streamable HTTP client through `mcp-policy gateway --listen`, on 2026-07-28
and the 2025 handshake, with an elicitation callback standing in for a person.

Usage: sdk_http_client.py URL TOKEN LOG. Prints one line per check; exits non-zero on the
first that fails."""
import json
import sys
from pathlib import Path

import anyio
import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ElicitResult

URL, TOKEN, LOG = sys.argv[1], sys.argv[2], sys.argv[3]


def check(ok, what):
    if not ok:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def ran(tool):
    try:
        lines = Path(LOG).read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if json.loads(line).get("tool") == tool)


async def approve(context, params):
    return ElicitResult(action="accept", content={"approve": True})


async def session(mode):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(URL, http_client=http)
        async with Client(transport, mode=mode, elicitation_callback=approve) as client:
            listed = await client.list_tools()
            names = sorted(t.name for t in listed.tools)
            check(names == ["whmcs_get_ticket", "whmcs_send_email", "whmcs_update_ticket"],
                  f"{mode}: tools/list filtered {names}")
            ok = await client.call_tool("whmcs_get_ticket", {"ticket_id": 3})
            check(not ok.is_error and ok.content[0].text == "ticket 3: open", f"{mode}: allowed call")
            before = ran("whmcs_close_client")
            denied = await client.call_tool("whmcs_close_client", {"client_id": 7})
            check(denied.is_error and denied.structured_content["code"] == "rule_denied"
                  and ran("whmcs_close_client") == before, f"{mode}: denied call never ran")
            first = await client.call_tool("whmcs_update_ticket", {"ticket_id": 1, "status": "Open"})
            limited = await client.call_tool("whmcs_update_ticket", {"ticket_id": 1, "status": "Open"})
            check(not first.is_error and limited.structured_content["code"] == "rate_limited",
                  f"{mode}: limited call")
            before = ran("whmcs_send_email")
            sent = await client.call_tool("whmcs_send_email", {"client_id": 7, "template": "welcome"})
            check(not sent.is_error and ran("whmcs_send_email") == before + 1,
                  f"{mode}: approved call ran once ({sent.content[0].text})")
            print(f"{mode}: protocol {getattr(client.session, 'protocol_version', None)}")


async def main():
    await session("auto")
    await session("legacy")


anyio.run(main)
