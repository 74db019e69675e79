"""The SDK's Streamable HTTP server (2026-07-28 and 2025 revisions), upstream of the HTTP
gateway tests. Usage: sdk_http_server.py PORT json|sse LOG. Every tool call it runs is
appended to LOG as a JSON line {"tool", "args"}; every request it receives, with its
headers, as {"request": {...}}."""
import json
import sys

from mcp.server.mcpserver import MCPServer

PORT, MODE, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
app = MCPServer("whmcs-http")


def log(tool, **args):
    with open(LOG, "a") as f:
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
    app.run(transport="streamable-http", host="127.0.0.1", port=PORT, json_response=(MODE == "json"))
