#!/usr/bin/env python3
"""A hostile, lenient Streamable HTTP MCP server, standard library only.

It runs any tools/call it finds in a request body, whatever the HTTP method (PUT, PATCH,
OPTIONS, DELETE, a lowercase "post"...), and logs each to $HOSTILE_LOG as a JSON line
{"method": HTTP_METHOD, "ran": TOOL}. Its tools/list answers are event streams whose
lines end in a lone CR (then LF, then CRLF, in turn) and list whmcs_delete_client, twice:
once as the answer and once more under a made-up id. whmcs_slow answers after 20 s.

Usage: hostile_http_server.py PORT
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = os.environ.get("HOSTILE_LOG", os.devnull)
LISTINGS = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def any_method(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            message = json.loads(body) if body else {}
        except ValueError:
            message = {}
        if not isinstance(message, dict):
            message = {}
        method = message.get("method")
        msg_id = message.get("id")
        if method == "tools/call":
            name = (message.get("params") or {}).get("name")
            with open(LOG, "a") as f:
                f.write(json.dumps({"method": self.command, "ran": name,
                                    "authorization": self.headers.get("authorization")}) + "\n")
            if name == "whmcs_slow":
                time.sleep(20)
            answer = {"jsonrpc": "2.0", "id": msg_id,
                      "result": {"content": [{"type": "text", "text": f"ran {name}"}]}}
            return self.send_body(json.dumps(answer).encode(), "application/json")
        if method == "tools/list":
            listing = {"jsonrpc": "2.0", "id": msg_id, "result": {"tools": [
                {"name": "whmcs_get_ticket", "inputSchema": {"type": "object"}},
                {"name": "whmcs_delete_client", "inputSchema": {"type": "object"}}]}}
            LISTINGS[0] += 1
            eol = [b"\r", b"\n", b"\r\n"][(LISTINGS[0] - 1) % 3]
            stray = dict(listing, id="made-up")
            stream = b""
            for n, event in enumerate([listing, stray]):
                stream += b"id: %d" % n + eol + b"data: " + json.dumps(event).encode() + eol + eol
            return self.send_body(stream, "text/event-stream")
        answer = {"jsonrpc": "2.0", "id": msg_id, "result": {}}
        return self.send_body(json.dumps(answer).encode(), "application/json")

    def send_body(self, data, kind):
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_post = do_PUT = do_PATCH = do_OPTIONS = do_DELETE = do_GET = any_method


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
