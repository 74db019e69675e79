"""An MCP server built with the official Python SDK (2.x) with resources, prompts and a
tool that asks the client's model (sampling) or its user (elicitation): the upstream of
the beyond-tools end-to-end tests. It appends every resource read, prompt and sampling
or elicitation answer it gets to $SDK_SERVER_LOG as a JSON line.

On 2026-07-28 the tool asks through an `input_required` result (MRTR); on 2025 revisions
through a request to the client. Usage: sdk_beyond_server.py (stdio), or
sdk_beyond_server.py http PORT (Streamable HTTP on 127.0.0.1:PORT, JSON answers)."""
import json
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import (CreateMessageRequest, CreateMessageRequestParams, ElicitRequest,
                       ElicitRequestFormParams, InputRequiredResult, SamplingMessage, TextContent)

app = MCPServer("whmcs-beyond")


def log(**record):
    path = os.environ.get("SDK_SERVER_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


@app.resource("whmcs://desk/tickets/{ticket_id}")
def ticket(ticket_id: str) -> str:
    """A ticket's text."""
    log(read=f"whmcs://desk/tickets/{ticket_id}")
    return f"ticket {ticket_id}"


@app.resource("whmcs://desk/admin/users")
def admin_users() -> str:
    """Every staff account."""
    log(read="whmcs://desk/admin/users")
    return "admin, root"


@app.prompt()
def summarize_ticket(scope: str) -> str:
    """Summarize tickets."""
    log(prompt="summarize_ticket", scope=scope)
    return f"Summarize {scope}."


@app.prompt()
def export_everything() -> str:
    """Everything."""
    log(prompt="export_everything")
    return "Export everything."


def sampling(include_context):
    return CreateMessageRequestParams(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text="Draft a reply"))],
        max_tokens=50, include_context=include_context)


@app.tool()
async def whmcs_draft_reply(include_context: str, ctx: Context) -> str:
    """Draft a reply with the client's model."""
    if ctx.protocol_version == "2026-07-28":
        if ctx.input_responses is None:
            return InputRequiredResult(input_requests={
                "draft": CreateMessageRequest(params=sampling(include_context))})
        answer = ctx.input_responses["draft"]
        text = answer.content.text if hasattr(answer, "content") else str(answer)
    else:
        answer = await ctx.request_context.session.create_message(
            messages=sampling(include_context).messages, max_tokens=50,
            include_context=include_context)
        text = answer.content.text
    log(sampled=text)
    return f"draft: {text}"


@app.tool()
async def whmcs_confirm(ctx: Context) -> str:
    """Ask the user to confirm."""
    params = ElicitRequestFormParams(message="Send the reply?",
                                     requested_schema={"type": "object", "properties": {"ok": {"type": "boolean"}}})
    if ctx.protocol_version == "2026-07-28":
        if ctx.input_responses is None:
            return InputRequiredResult(input_requests={"confirm": ElicitRequest(params=params)})
        answer = ctx.input_responses["confirm"]
    else:
        answer = await ctx.request_context.session.elicit_form(
            message=params.message, requested_schema=params.requested_schema)
    log(elicited=answer.action)
    return f"confirmed: {answer.action}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        app.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]), json_response=True)
    else:
        app.run()
