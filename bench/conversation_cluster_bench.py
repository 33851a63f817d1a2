"""
Conversations across daemons: two daemons on one Redis against one daemon
on SQLite, measured in the same run (interleaved rounds, medians), as
bench/cluster_bench.py measures the operator queue.

Visitors (the seed's plain-text page) each send a question, wait for the
operator's answer, and ask again; one operator, on protocol 2, answers
every visitor message it is told of. With Redis, half the visitors are on
daemon A, half on daemon B, and the operator is on daemon B: half the
conversations cross daemons both ways (the message committed on A reaches
the operator through B's feed, the answer committed on B reaches the
visitor through A's). Reported: answers per second, and the p50/p99 of the
time from a question to its answer.

Run by hand (needs redis-server, and `pip install picows uvloop`):

    python bench/conversation_cluster_bench.py [--rounds 3] [--clients 40] [--per 25]

Redis runs with appendfsync always, as SQLite runs with synchronous=FULL.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_bench import TOKEN, Setup  # noqa: E402

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


def conversations(config: Path) -> None:
    """The queue's bench config, turned to conversations (same store, same caps)."""
    text = config.read_text(encoding="utf-8").replace("model = queue\n", "")
    text = text.replace("[operator]\n", "[operator]\nmodel = conversations\n"
                        "ack_message = Thanks!\noffline_message =\n", 1)
    text = text.replace("ack_message = queued {position}\n", "")
    text = text.replace("# Throughput, not the per-client cap: these clients pipeline.\n"
                        "max_open_per_client = 0\n", "")
    config.write_text(text, encoding="utf-8")


class ConversationSetup(Setup):
    def __init__(self, directory: Path) -> None:
        try:
            super().__init__(directory)
        except BaseException:
            self.stop()  # what did start (Redis, a daemon) does not outlive the run
            raise

    def _daemon(self, path: Path, name: str) -> str:
        conversations(path)
        return super()._daemon(path, name)


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
        setup = ConversationSetup(Path(tmp))
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
