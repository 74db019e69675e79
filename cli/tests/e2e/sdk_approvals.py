"""The official MCP Python SDK (2.x) as client of `mcp-policy gateway`, with an elicitation
callback standing in for a person, on 2026-07-28 (InputRequiredResult and retry) and on
the 2025 handshake (elicitation/create from the gateway). The upstream is sdk_server.py,
which logs every call it runs to SDK_SERVER_LOG.

Usage: sdk_approvals.py POLICY SERVER_LOG GATEWAY-COMMAND... Prints one line per check
and exits non-zero on the first that fails."""
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
    print(f"ok: {what}")


def emails_run():
    try:
        lines = Path(SERVER_LOG).read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if json.loads(line)["tool"] == "whmcs_send_email")


def person(answer):
    """An elicitation callback that answers every approval request with `answer`."""
    seen = []

    async def callback(context, params):
        seen.append(params.message)
        return ElicitResult(**answer)

    return callback, seen


async def session(mode, answer):
    callback, seen = person(answer) if answer is not None else (None, [])
    params = StdioServerParameters(
        command=GATEWAY[0],
        args=[*GATEWAY[1:], "--policy", POLICY, "--grant", "g1", "--",
              sys.executable, str(HERE / "sdk_server.py")],
        env={"SDK_SERVER_LOG": SERVER_LOG, "PATH": "/usr/bin:/bin"},
    )
    async with Client(params, mode=mode, elicitation_callback=callback) as client:
        yield_results = []
        for template in ("welcome", "reminder", "final"):
            before = emails_run()
            result = await client.call_tool("whmcs_send_email", {"client_id": 7, "template": template})
            yield_results.append((result, emails_run() - before))
        return yield_results, seen


async def main():
    for mode in ("auto", "legacy"):
        results, seen = await session(mode, {"action": "accept", "content": {"approve": True}})
        (first, ran1), (second, ran2), (third, ran3) = results
        check(not first.is_error and ran1 == 1, f"{mode}: approved call ran exactly once ({first.content[0].text})")
        check(seen and "whmcs_send_email" in seen[0] and "emails are reviewed" in seen[0]
              and '"template": "welcome"' in seen[0], f"{mode}: the person saw tool, reason and arguments")
        check(not second.is_error and ran2 == 1, f"{mode}: a second approval ran once")
        check(third.is_error and third.structured_content["code"] == "rate_limited" and ran3 == 0,
              f"{mode}: limits still apply to approved calls")
        for name, answer in (("decline", {"action": "decline"}), ("cancel", {"action": "cancel"}),
                             ("approve false", {"action": "accept", "content": {"approve": False}})):
            results, _ = await session(mode, answer)
            result, ran = results[0]
            check(result.is_error and result.structured_content["code"] == "approval_declined" and ran == 0,
                  f"{mode}: {name} never reaches the server")
        results, _ = await session(mode, None)
        result, ran = results[0]
        check(result.is_error and result.structured_content["code"] == "approval_required" and ran == 0
              and "cannot show approval requests" in result.content[0].text,
              f"{mode}: a client without elicitation gets approval_required")


anyio.run(main)
