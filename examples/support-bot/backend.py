#!/usr/bin/env python3
# examples/support-bot/backend.py: a support route's bot (bot_url), standard library only.
# Run: ./backend.py 8001 bot.secret  (route: bot_url = http://127.0.0.1:8001/, bot_secret_file)
import base64
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

keys = [base64.b64decode(line.strip()[6:]) for line in open(sys.argv[2])
        if line.startswith("whsec_")]
HOURS = b"We are open 9:00-17:00, Monday to Friday."
REFUND = {"messages": [{"text": "A colleague will look at your refund."}], "handoff": "refund"}


def signed(headers, body):  # Standard Webhooks: any key of the file, at most 5 minutes old
    stamp = headers.get("webhook-timestamp", "0")
    text = f"{headers.get('webhook-id')}.{stamp}.".encode() + body
    mine = ["v1," + base64.b64encode(hmac.new(key, text, hashlib.sha256).digest()).decode()
            for key in keys]
    given = headers.get("webhook-signature", "").split()
    fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
    return fresh and any(hmac.compare_digest(s, m) for s in given for m in mine)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; HTTP/1.0 closes without "Connection: close"
    wbufsize = -1  # headers and body in one write: no Nagle wait on a kept-alive connection

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        if not signed(self.headers, body):
            return self.answer(401, "text/plain", b"bad signature")
        text = json.loads(body)["message"]["text"].lower()
        if "refund" in text:  # a person decides refunds: say so, then hand over
            return self.answer(200, "application/json", json.dumps(REFUND).encode())
        if "hours" in text or "open" in text:
            return self.answer(200, "text/plain; charset=utf-8", HOURS)
        self.answer(200, "text/plain", b"I know our opening hours. Say 'human' for a person.")

    def answer(self, status, content_type, body):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
