"""An MCP server built with the official Python SDK (2.x), which speaks 2026-07-28 and the
2025 revisions: the upstream of the SDK end-to-end test."""
from mcp.server.mcpserver import MCPServer

app = MCPServer("whmcs-sdk")


@app.tool()
def whmcs_get_ticket(ticket_id: int) -> str:
    """Read a ticket."""
    return f"ticket {ticket_id}: open"


@app.tool()
def whmcs_update_ticket(ticket_id: int, status: str) -> str:
    """Change a ticket's status."""
    return f"ticket {ticket_id}: {status}"


@app.tool()
def whmcs_close_client(client_id: int) -> str:
    """Close a client account."""
    return f"closed {client_id}"


@app.tool()
def whmcs_delete_client(client_id: int) -> str:
    """Delete a client."""
    return f"deleted {client_id}"


if __name__ == "__main__":
    app.run()
