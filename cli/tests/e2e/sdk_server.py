"""An MCP server built with the official Python SDK (2.x), which speaks 2026-07-28 and the
2025 revisions: the upstream of the SDK end-to-end tests. With SDK_SERVER_LOG=FILE it
appends every tool call it runs to FILE as a JSON line {"tool", "args"}.

Usage: sdk_server.py (stdio), or sdk_server.py http PORT json|sse|resumable (Streamable
HTTP on 127.0.0.1:PORT, answering with JSON or event streams; resumable: event streams
whose events a client can replay with GET and Last-Event-ID, kept in memory)."""
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
def whmcs_add_credit(client_id: int, amount: int, description: str = "") -> str:
    """Add credit to a client."""
    log("whmcs_add_credit", client_id=client_id, amount=amount, description=description)
    return f"credited {amount} to client {client_id}"


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


class MemoryEventStore:
    """Every event of every stream, in order, so any can be replayed."""

    def __init__(self):
        self.events = []  # (event id, stream id, message or None)

    async def store_event(self, stream_id, message):
        event_id = str(len(self.events) + 1)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        from mcp.server.streamable_http import EventMessage
        found = [e for e in self.events if e[0] == last_event_id]
        if not found:
            return None
        stream_id = found[0][1]
        after = False
        for event_id, stream, message in self.events:
            if after and stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
            after = after or event_id == last_event_id
        return stream_id


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        mode = sys.argv[3]
        extra = {"event_store": MemoryEventStore()} if mode == "resumable" else {}
        app.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]),
                json_response=(mode == "json"), **extra)
    else:
        app.run()
