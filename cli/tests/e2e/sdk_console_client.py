"""The official MCP Python SDK (2.x) as client of `mcp-policy gateway --console`, on the
2025-11-25 handshake: calls held for a console approver reach it as URL-mode
elicitations, which this client accepts (its user "opens the page"); the call then waits
until a person decides on the console, which the test drives in a browser. The upstream
is sdk_server.py, which logs every call it runs to SDK_SERVER_LOG.

Usage: sdk_console_client.py POLICY SERVER_LOG GATEWAY-COMMAND... Prints `url: URL` for
each approval page it is pointed at, `ok: ...` per check, and exits non-zero on the first
that fails."""
import json
import sys
from pathlib import Path

import anyio
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import ElicitResult

HERE = Path(__file__).resolve().parent
POLICY, SERVER_LOG, GATEWAY = sys.argv[1], sys.argv[2], sys.argv[3:]


def check(ok, what):
    if not ok:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)


def credits_run():
    try:
        lines = Path(SERVER_LOG).read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if json.loads(line)["tool"] == "whmcs_add_credit")


async def shown_the_page(context, params):
    check(params.mode == "url", "the gateway asked with a URL elicitation")
    print(f"url: {params.url}", flush=True)
    return ElicitResult(action="accept")


async def main():
    params = StdioServerParameters(
        command=GATEWAY[0],
        args=[*GATEWAY[1:], "--policy", POLICY, "--grant", "g1", "--",
              sys.executable, str(HERE / "sdk_server.py")],
        env={"SDK_SERVER_LOG": SERVER_LOG, "PATH": "/usr/bin:/bin"},
    )
    async with Client(params, mode="legacy", elicitation_callback=shown_the_page) as client:
        result = await client.call_tool(
            "whmcs_add_credit", {"client_id": 7, "amount": 25, "description": "<b>goodwill</b>"})
        check(not result.is_error and credits_run() == 1,
              f"approved on the console, the call ran exactly once ({result.content[0].text})")
        result = await client.call_tool("whmcs_add_credit", {"client_id": 8, "amount": 9000})
        check(result.is_error and result.structured_content["code"] == "approval_declined"
              and credits_run() == 1, "declined on the console, the call never reached the server")


anyio.run(main)
