"""An MCP server built with the official Python SDK (2.x), which speaks 2026-07-28 and the
2025 revisions: the upstream of the SDK end-to-end tests. With SDK_SERVER_LOG=FILE it
appends every tool call it runs to FILE as a JSON line {"tool", "args"}.

Usage: sdk_server.py (stdio), or sdk_server.py http PORT json|sse (Streamable HTTP on
127.0.0.1:PORT, answering with JSON or event streams)."""
import json
import os
import sys

from mcp.server.mcpserver import MCPServer

app = MCPServer("whmcs-sdk")


def log(tool, **args):
    path = os.environ.get("SDK_SERVER_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"tool": tool, "args": args}) + "\n")


@app.tool()
def whmcs_get_ticket(ticket_id: int) -> str:
    """Read a ticket."""
    log("whmcs_get_ticket", ticket_id=ticket_id)
    return f"ticket {ticket_id}: open"


@app.tool()
def whmcs_update_ticket(ticket_id: int, status: str) -> str:
    """Change a ticket's status."""
    log("whmcs_update_ticket", ticket_id=ticket_id, status=status)
    return f"ticket {ticket_id}: {status}"


@app.tool()
def whmcs_send_email(client_id: int, template: str) -> str:
    """Email a client."""
    log("whmcs_send_email", client_id=client_id, template=template)
    return f"sent {template} to {client_id}"


@app.tool()
def whmcs_close_client(client_id: int) -> str:
    """Close a client account."""
    log("whmcs_close_client", client_id=client_id)
    return f"closed {client_id}"


@app.tool()
def whmcs_delete_client(client_id: int) -> str:
    """Delete a client."""
    log("whmcs_delete_client", client_id=client_id)
    return f"deleted {client_id}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        app.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]),
                json_response=(sys.argv[3] == "json"))
    else:
        app.run()
