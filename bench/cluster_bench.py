"""
Conversations across daemons: two daemons on one Redis against one daemon
on SQLite, measured in the same run (interleaved rounds, medians).

Visitors (the seed's plain-text page) each send a question, wait for the
operator's answer, and ask again; one operator, on protocol 2, answers
every visitor message it is told of. With Redis, half the visitors are on
daemon A, half on daemon B, and the operator is on daemon B: half the
conversations cross daemons both ways (the message committed on A reaches
the operator through B's feed, the answer committed on B reaches the
visitor through A's). Reported: answers per second, and the p50/p99 of the
time from a question to its answer.

Run by hand (needs redis-server, and `pip install picows uvloop` for the
load generator):

    python bench/cluster_bench.py [--rounds 3] [--clients 40] [--per 25]

Redis runs with appendfsync always, as SQLite runs with synchronous=FULL:
both acknowledge a message only once it is on disk. (Until 2026-12-07 this
bench measured the operator queue, now retired; bench/RESULTS.md keeps its
figures.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

TOKEN = "bench-token-0123456789abcdef"

_LOAD = r"""
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
    def on_ws_connected(self, transport):
        self.transport = transport; self.rtts = []; self.sent_at = 0.0
    def send(self):
        self.sent_at = time.perf_counter()
        self.transport.send(WSMsgType.TEXT, b"a question")
    def on_ws_frame(self, transport, frame):
        if frame.msg_type != WSMsgType.TEXT: return
        if frame.get_payload_as_ascii_text() != "answer": return  # the notice, once
        self.rtts.append(time.perf_counter() - self.sent_at)
        if len(self.rtts) < per_client: self.send()
        else:
            finished.append(self)
            if len(finished) == clients_total: done.set_result(None)
async def main(client_bases, operator_base, token, clients, per):
    global per_client, finished, done, clients_total
    per_client, finished, clients_total = per, [], clients
    done = asyncio.get_running_loop().create_future()
    _, operator = await ws_connect(Operator, f"{operator_base}/operator?token={token}")
    await operator.ready
    bases = client_bases.split(",")
    pairs = [await ws_connect(Visitor, f"{bases[n % len(bases)]}/support")
             for n in range(clients)]
    started = time.perf_counter()
    for _, visitor in pairs: visitor.send()
    await asyncio.wait_for(done, 600)
    elapsed = time.perf_counter() - started
    rtts = sorted(a for _, v in pairs for a in v.rtts)
    q = lambda xs, p: xs[min(len(xs) - 1, int(len(xs) * p))] * 1000
    print(json.dumps({"answers_per_s": clients * per / elapsed,
                      "answer_p50_ms": q(rtts, 0.5), "answer_p99_ms": q(rtts, 0.99)}))
uvloop.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def config(directory: Path, name: str, broker: str) -> Path:
    path = directory / f"{name}.ini"
    path.write_text(textwrap.dedent(f"""\
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1
        demo_page = no
        max_connections_total = 0

        [protocol]
        auto_ping_interval = 0
        max_connections = 0
        max_message_rate = 0

        [operator]
        tokens = bench:{TOKEN}
        store = {directory}/{name}.sqlite3
        ack_message = Thanks!
        offline_message =
        fallback_after = 0

        [route:/support]
        strategy = operator
    """) + broker)
    return path


class Setup:
    def __init__(self, directory: Path) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.directory = directory
        try:
            self._start()
        except BaseException:
            self.stop()  # what did start (Redis, a daemon) does not outlive the run
            raise

    def _start(self) -> None:
        directory = self.directory
        redis_port = free_port()
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        self._spawn([redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--dir",
                     str(directory), "--appendonly", "yes", "--appendfsync", "always",
                     "--save", ""], redis_port, "redis-server")
        broker = (f"\n[broker]\nbackend = redis\nurl = redis://127.0.0.1:{redis_port}/0\n"
                  "prefix = bench:\n")
        self.sqlite = self._daemon(config(directory, "sqlite", ""), "sqlite")
        self.a = self._daemon(config(directory, "a", broker), "a")
        self.b = self._daemon(config(directory, "b", broker), "b")

    def _spawn(self, command: list[str], port: int, what: str) -> None:
        log = open(self.directory / f"{what}.log", "wb")  # noqa: SIM115 - lives with the run
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.processes.append(process)
        wait_port(port, process, what)

    def _daemon(self, path: Path, name: str) -> str:
        port = free_port()
        twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or "twistd"
        self._spawn([twistd, "-n", "--pidfile=", "wsdaemon", "--config", str(path),
                     "--listen", f"tcp:{port}:interface=127.0.0.1"], port, f"daemon-{name}")
        time.sleep(1.0)  # the conversations load (and, with Redis, connect)
        return f"ws://127.0.0.1:{port}"

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            process.wait(15)


def load(client_bases: str, operator_base: str, clients: int, per: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _LOAD, client_bases, operator_base, TOKEN,
                          str(clients), str(per)], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--per", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup = Setup(Path(tmp))
        runs: dict[str, list[dict[str, Any]]] = {"sqlite": [], "redis": []}
        try:
            for _ in range(args.rounds):
                runs["sqlite"].append(load(setup.sqlite, setup.sqlite, args.clients, args.per))
                runs["redis"].append(load(f"{setup.a},{setup.b}", setup.b, args.clients,
                                          args.per))
        finally:
            setup.stop()
    print(textwrap.dedent(f"""\
        conversations, {args.clients} visitors x {args.per} questions, one operator, median of
        {args.rounds} interleaved rounds"""))
    medians = {}
    for name, label in (("sqlite", "1 daemon, SQLite"), ("redis", "2 daemons, Redis")):
        m = {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
        medians[name] = m
        print(f"  {label:<18} {m['answers_per_s']:7.0f} answers/s   answer p50 "
              f"{m['answer_p50_ms']:6.1f} ms  p99 {m['answer_p99_ms']:6.1f} ms")
    ratio = medians["redis"]["answers_per_s"] / medians["sqlite"]["answers_per_s"]
    print(f"  ratio (Redis/SQLite answers per second): {ratio:.2f}x")
    print(json.dumps({"runs": runs}))


if __name__ == "__main__":
    main()
