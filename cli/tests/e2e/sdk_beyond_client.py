"""The official MCP Python SDK (2.x) as the client of the stdio gateway in front of
sdk_beyond_server.py, on 2026-07-28 and on the 2025 handshake: resources, prompts, and the
server's sampling and elicitation requests, each decided by the policy. The server's log
is the evidence of what reached it.

Usage: sdk_beyond_client.py POLICY SERVER_LOG GATEWAY-COMMAND... (the stdio gateway), or
sdk_beyond_client.py - SERVER_LOG http://GATEWAY/mcp TOKEN (the HTTP gateway, already
running in front of sdk_beyond_server.py). Prints one line per check; exits non-zero on
the first that fails."""
import json
import os
import sys
from pathlib import Path

import anyio
import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CreateMessageResult, ElicitResult, TextContent

HERE = Path(__file__).resolve().parent
POLICY, LOG, GATEWAY = sys.argv[1], sys.argv[2], sys.argv[3:]
SAMPLED = []


def check(ok, what):
    if not ok:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def logged(**match):
    try:
        lines = Path(LOG).read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if all(json.loads(line).get(k) == v for k, v in match.items()))


async def sample(context, params):
    SAMPLED.append(params.include_context)
    return CreateMessageResult(role="assistant", content=TextContent(type="text", text="Thanks!"),
                               model="test-model")


async def confirm(context, params):
    return ElicitResult(action="accept", content={"ok": True})


async def refused(coroutine):
    try:
        result = await coroutine
    except Exception as e:  # the gateway's JSON-RPC error
        return str(e) or repr(e)
    return None if not getattr(result, "is_error", False) else str(result)


async def session(mode):
    if GATEWAY[0].startswith("http"):
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {GATEWAY[1]}"}, timeout=30)
        transport = streamable_http_client(GATEWAY[0], http_client=http)
    else:
        http = None
        transport = StdioServerParameters(
            command=GATEWAY[0],
            args=[*GATEWAY[1:], "--policy", POLICY, "--grant", "g1", "--",
                  sys.executable, str(HERE / "sdk_beyond_server.py")],
            env={**os.environ, "SDK_SERVER_LOG": LOG})
    try:
        await checks(transport, mode)
    finally:
        if http is not None:
            await http.aclose()


async def checks(transport, mode):
    async with Client(transport, mode=mode, sampling_callback=sample, elicitation_callback=confirm) as client:
        listed = await client.list_resources()
        uris = [str(r.uri) for r in listed.resources]
        check("whmcs://desk/admin/users" not in uris, f"{mode}: resources/list filtered {uris}")
        templates = await client.list_resource_templates()
        check([t.uri_template for t in templates.resource_templates] == ["whmcs://desk/tickets/{ticket_id}"],
              f"{mode}: templates listed")
        got = await client.read_resource("whmcs://desk/tickets/7")
        check(got.contents[0].text == "ticket 7" and logged(read="whmcs://desk/tickets/7") >= 1,
              f"{mode}: allowed resource read reached the server")
        before = logged(read="whmcs://desk/admin/users")
        why = await refused(client.read_resource("whmcs://desk/admin/users"))
        check(why is not None and logged(read="whmcs://desk/admin/users") == before,
              f"{mode}: denied resource never reached the server ({why})")
        why = await refused(client.read_resource("WHMCS://Desk/tickets/../admin/users"))
        check(why is not None and logged(read="whmcs://desk/admin/users") == before,
              f"{mode}: a re-spelled denied resource never reached the server")
        await client.read_resource("whmcs://desk/tickets/8")
        reads = logged(read="whmcs://desk/tickets/9")
        why = await refused(client.read_resource("whmcs://desk/tickets/9"))
        check(why is not None and "rate" in why and logged(read="whmcs://desk/tickets/9") == reads,
              f"{mode}: resource reads limited per grant")
        prompts = await client.list_prompts()
        names = [p.name for p in prompts.prompts]
        check(names == ["summarize_ticket"], f"{mode}: prompts/list filtered {names}")
        got = await client.get_prompt("summarize_ticket", {"scope": "open"})
        check(logged(prompt="summarize_ticket", scope="open") >= 1, f"{mode}: allowed prompt reached the server")
        before = logged(prompt="export_everything")
        why = await refused(client.get_prompt("export_everything", {}))
        check(why is not None and logged(prompt="export_everything") == before,
              f"{mode}: denied prompt never reached the server")
        drafted = await client.call_tool("whmcs_draft_reply", {"include_context": "none"})
        check(not drafted.is_error and SAMPLED == ["none"], f"{mode}: allowed sampling round-tripped")
        why = await refused(client.call_tool("whmcs_draft_reply", {"include_context": "allServers"}))
        check(why is not None and SAMPLED == ["none"],
              f"{mode}: sampling with allServers refused without the client seeing it")
        why = await refused(client.call_tool("whmcs_draft_reply", {"include_context": "none"}))
        check(why is not None and SAMPLED == ["none"], f"{mode}: sampling limited per session")
        confirmed = await client.call_tool("whmcs_confirm", {})
        check(not confirmed.is_error and confirmed.content[0].text == "confirmed: accept",
              f"{mode}: allowed elicitation round-tripped")
        SAMPLED.clear()


async def main():
    for mode in os.environ.get("SDK_MODES", "auto,legacy").split(","):
        await session(mode)


anyio.run(main)
