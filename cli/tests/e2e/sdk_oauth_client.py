"""The SDK's Streamable HTTP client with its OAuth support, through `mcp-policy gateway
--listen --oauth-issuer`, against a real authorization server (oidc-provider). The client
gets the gateway's 401, discovers the protected resource metadata and the authorization
server, obtains a token with the client-credentials grant, and is stepped up by a 403 for
a tool whose rule needs a scope its first token lacks.

Usage: sdk_oauth_client.py URL ISSUER LOG. Prints one line per check; exits non-zero on
the first that fails."""
import json
import sys
from pathlib import Path

import anyio
import httpx2
from mcp.client import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client

URL, ISSUER, LOG = sys.argv[1], sys.argv[2], sys.argv[3]


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


class Memory:
    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


async def agent(name):
    storage = Memory()
    auth = ClientCredentialsOAuthProvider(
        server_url=URL, storage=storage, client_id=f"agent-{name}",
        client_secret=f"secret-{name}", issuer=ISSUER)
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
        transport = streamable_http_client(URL, http_client=http)
        async with Client(transport) as client:
            listed = await client.list_tools()
            names = sorted(t.name for t in listed.tools)
            check(names == ["whmcs_get_ticket", "whmcs_update_ticket"],
                  f"{name}: logged in and listed {names}")
            check(storage.tokens is not None and storage.tokens.scope == "tickets:read",
                  f"{name}: first token has the advertised scope ({storage.tokens.scope})")
            got = await client.call_tool("whmcs_get_ticket", {"ticket_id": 3})
            check(not got.is_error and got.content[0].text == "ticket 3: open",
                  f"{name}: allowed call ran")
            before = ran("whmcs_update_ticket")
            updated = await client.call_tool("whmcs_update_ticket", {"ticket_id": 1, "status": "Open"})
            check(not updated.is_error and ran("whmcs_update_ticket") == before + 1,
                  f"{name}: stepped up to tickets:write and the call ran once")
            check("tickets:write" in storage.tokens.scope.split(),
                  f"{name}: the new token carries tickets:write ({storage.tokens.scope})")
            limited = await client.call_tool("whmcs_update_ticket", {"ticket_id": 1, "status": "Open"})
            check(limited.is_error and limited.structured_content["code"] == "rate_limited"
                  and ran("whmcs_update_ticket") == before + 1,
                  f"{name}: limited per its own sub")


async def main():
    await agent("a")
    await agent("b")


anyio.run(main)
