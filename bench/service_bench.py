"""
Benchmarks of what only wsdaemon does (no raw-Autobahn baseline exists):
broadcast through the push API to many clients, and conversations with
SQLite on (visitors asking, one operator answering). Called by bench/run.py
(--only broadcast,conversations).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KEY = "bench-key-0123456789abcdef"
TOKEN = "bench-token-0123456789abcdef"

_BROADCAST_CLIENTS = r"""
import asyncio, json, sys, time, resource, urllib.request, uvloop
from picows import ws_connect, WSListener, WSMsgType
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
class Client(WSListener):
    got = None
    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.TEXT and self.got is None:
            self.got = time.perf_counter(); counter[0] += 1
            if counter[0] == total: done.set_result(None)
async def main(url, admin, count):
    global done, counter, total
    done, counter, total = asyncio.get_running_loop().create_future(), [0], count
    sem = asyncio.Semaphore(200)
    async def one():
        async with sem:
            return (await ws_connect(Client, url))[1]
    clients = await asyncio.gather(*(one() for _ in range(count)))
    body = json.dumps({"route": "/echo", "text": "x" * 100}).encode()
    request = urllib.request.Request(admin + "/push", data=body,
        headers={"Authorization": "Bearer " + sys.argv[4]})
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    answer = await loop.run_in_executor(None, lambda: json.loads(urllib.request.urlopen(request).read()))
    await asyncio.wait_for(done, 60)
    last = max(c.got for c in clients) - started
    print(json.dumps({"delivered": answer["delivered"], "last_ms": last * 1000}))
uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""

_CONVERSATION_LOAD = r"""
import asyncio, json, sys, time, uvloop
from picows import ws_connect, WSListener, WSMsgType
class Operator(WSListener):
    def on_ws_connected(self, transport):
        self.ready = asyncio.get_running_loop().create_future(); self.n = 0
    def on_ws_frame(self, transport, frame):
        event = json.loads(frame.get_payload_as_bytes())
        kind = event.get("type")
        if kind == "hello":
            self.ready.set_result(None)
        elif kind in ("conversation", "message") and \
                (event.get("message") or {}).get("author") == "visitor":
            self.n += 1
            transport.send(WSMsgType.TEXT, json.dumps({
                "id": f"r{self.n}", "type": "reply",
                "conversation": event["conversation"]["id"], "text": "answer"}).encode())
class Visitor(WSListener):
    # The structured protocol (wsdaemon.chat.v1): each message is acknowledged
    # once stored, with its seq.
    def on_ws_connected(self, transport):
        self.transport = transport; self.acks = []; self.replies = 0; self.sent_at = 0.0
        self.welcomed = asyncio.get_running_loop().create_future()
        transport.send(WSMsgType.TEXT, b'{"type": "hello", "after": 0}')
    def send(self):
        self.sent_at = time.perf_counter()
        self.transport.send(WSMsgType.TEXT, json.dumps(
            {"type": "message", "id": f"m{self.replies}", "text": "a question"}).encode())
    def on_ws_frame(self, transport, frame):
        if frame.msg_type != WSMsgType.TEXT: return
        event = json.loads(frame.get_payload_as_bytes())
        kind = event.get("type")
        if kind == "welcome":
            self.welcomed.set_result(None)
        elif kind == "ack":
            self.acks.append(time.perf_counter() - self.sent_at)
        elif kind in ("refused", "error"):
            failed.append(event); done.done() or done.set_result(None)
        elif kind == "message" and event.get("author") == "operator":
            self.replies += 1
            if self.replies < per_client: self.send()
            else: finished.append(self); (len(finished) == clients_total) and done.set_result(None)
async def main(base, token, clients, per):
    global per_client, finished, done, clients_total, failed
    per_client, finished, clients_total, failed = per, [], clients, []
    done = asyncio.get_running_loop().create_future()
    _, operator = await ws_connect(Operator, f"{base}/operator?token={token}")
    await operator.ready
    pairs = [await ws_connect(Visitor, f"{base}/support",
                              extra_headers={"Sec-WebSocket-Protocol": "wsdaemon.chat.v1"})
             for n in range(clients)]
    for _, visitor in pairs: await visitor.welcomed
    started = time.perf_counter()
    for _, visitor in pairs: visitor.send()
    await asyncio.wait_for(done, 300)
    elapsed = time.perf_counter() - started
    if failed: raise SystemExit(f"refused: {failed[0]}")
    acks = sorted(a for _, v in pairs for a in v.acks)
    print(json.dumps({"answers_per_s": clients * per / elapsed,
                      "stored_p50_ms": acks[len(acks) // 2] * 1000,
                      "stored_p99_ms": acks[int(len(acks) * 0.99)] * 1000}))
uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


def unlimited_config(listen: str, admin_port: int, more: str = "",
                     wsdaemon: str = "", protocol: str = "") -> str:
    """
    A bench daemon's config: limits that would measure themselves lifted,
    the admin API on C{admin_port} (key L{KEY}), clients choosing their ids.

    @param more: further sections (routes, [operator]), INI text.
    @param wsdaemon: more lines for [wsdaemon]; @param protocol: for [protocol].
    """
    lines = [
        "[wsdaemon]", f"listen = {listen}", "demo_page = no", "max_connections_total = 0",
        *wsdaemon.splitlines(), "",
        "[admin]", f"listen = tcp:{admin_port}:interface=127.0.0.1", f"api_keys = bench:{KEY}", "",
        "[protocol]", "# These clients choose their ids (?client_id=).", "identity = claimed",
        "auto_ping_interval = 0", "max_connections = 0", "max_message_rate = 0",
        "allowed_origins = *", *protocol.splitlines(), "",
    ]
    return "\n".join(lines) + textwrap.dedent(more)


def _config(directory: Path, admin_port: int) -> Path:
    path = directory / "service-bench.ini"
    path.write_text(unlimited_config("tcp:0:interface=127.0.0.1", admin_port, f"""
        [operator]
        tokens = bench:{TOKEN}
        store = {directory}/conversations.sqlite3
        ack_message = Thanks!
        offline_message =
        fallback_after = 0

        [route:/echo]
        strategy = echo

        [route:/support]
        strategy = operator
    """))
    return path


def run_service_benches(wanted: set[str], visitors: int = 50,
                        per: int = 40) -> list[dict[str, Any]]:
    """
    The benches named in C{wanted} ("broadcast", "conversations"); the
    conversations' one with C{visitors} visitors asking C{per} questions each.
    """
    from run import CLIENT_CPU, Servers, free_port, pinned

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        admin_port = free_port()
        servers = Servers(config=_config(Path(tmp), admin_port), log_dir=Path(tmp))
        try:
            if "broadcast" in wanted:
                for count in (1000, 5000):
                    runs = []
                    for _ in range(3):
                        out = subprocess.run(pinned(CLIENT_CPU, [
                            sys.executable, "-c", _BROADCAST_CLIENTS,
                            servers.urls()["wsdaemon"], f"http://127.0.0.1:{admin_port}",
                            str(count), KEY]), capture_output=True, text=True, timeout=300)
                        if out.returncode != 0:
                            raise SystemExit(out.stderr)
                        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    last = statistics.median(r["last_ms"] for r in runs)
                    print(f"{'push API broadcast to ' + str(count) + ' clients':<44} last client "
                          f"has it after {last:.0f} ms (median of 3; delivered "
                          f"{runs[0]['delivered']})", flush=True)
                    results.append({"title": f"broadcast to {count}", "unit": "ms",
                                    "wsdaemon": last, "runs": runs})
            if "conversations" in wanted:
                base = servers.urls()["wsdaemon"].rsplit("/", 1)[0]
                out = subprocess.run(pinned(CLIENT_CPU, [
                    sys.executable, "-c", _CONVERSATION_LOAD, base, TOKEN, str(visitors),
                    str(per)]), capture_output=True, text=True, timeout=600)
                if out.returncode != 0:
                    raise SystemExit(out.stderr)
                answered = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{f'conversations (SQLite), {visitors} visitors x {per}':<44} "
                      f"{answered['answers_per_s']:.0f} answers/s visitor->store->operator->"
                      f"reply; stored p50 {answered['stored_p50_ms']:.1f} ms, "
                      f"p99 {answered['stored_p99_ms']:.1f} ms", flush=True)
                results.append({"title": "conversations", **answered})
        finally:
            servers.stop()
    return results


if __name__ == "__main__":
    os.chdir(HERE)
    run_service_benches({"broadcast", "conversations"})
