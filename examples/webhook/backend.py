#!/usr/bin/env python3
# examples/webhook/backend.py: a strategy = webhook backend in the standard library
# and standardwebhooks (pip install standardwebhooks). Run: ./backend.py 8000 hook.secret
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

hooks = [Webhook(line.strip()) for line in open(sys.argv[2]) if line.startswith("whsec_")]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the daemon reuses its connections
    wbufsize = -1  # each answer written in one piece

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        try:  # any one secret of the file verifies (rotation)
            event = next(e for e in (self._verify(h, body) for h in hooks) if e is not None)
        except StopIteration:
            return self._answer(401, "text/plain", b"bad signature")
        if event["type"] != "message":
            return self._answer(204, "text/plain", b"")
        count = (event["state"] or {}).get("count", 0) + 1  # state: what we said last time
        answer = {"messages": [{"text": f"#{count}: {event['message']}"}],
                  "state": {"count": count}}
        self._answer(200, "application/json", json.dumps(answer).encode())

    def _verify(self, hook, body):
        try:
            return hook.verify(body, dict(self.headers))
        except Exception:
            return None

    def _answer(self, status, content_type, body):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
