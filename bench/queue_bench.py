"""
The operator queue at a support team's scale (run by hand):

    python bench/queue_bench.py [--items 100000] [--clients 2000] [--operators 3]

Starts the real daemon on a store already holding --items open items, then
measures: restore time and RSS; operator sign-in (connect to greeting) and
list/page/search times; enqueue acknowledgement p50/p99 while --clients new
clients each send a message and --operators operators read the events; the
echo latency a bystander on another route sees, alone (the baseline, same
run), during that load and while one client floods the operator route; RSS
at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

from wsdaemon.strategies.operator.store import _SCHEMA  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill(path: Path, count: int) -> None:
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA)
    rows = [(f"item{n:07d}", "/support", f"client-{n % 5000}",
             f"question number {n}: " + "lorem ipsum " * 10, 1000.0 + n, "queued")
            for n in range(count)]
    db.executemany("INSERT INTO items (item_id, route, client_id, text, created_at, state) "
                   "VALUES (?,?,?,?,?,?)", rows)
    db.executemany("INSERT INTO messages (client_id, route, item_id, direction, sender, body, "
                   "at) VALUES (?, ?, ?, 'in', 'client', ?, ?)",
                   [(c, r, i, t, at) for i, r, c, t, at, _ in rows])
    db.commit()
    db.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


_BYSTANDER = r"""
import asyncio, json, sys, time, websockets
async def main(url):
    samples, stop = [], asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)  # the parent closes stdin: done
    async with websockets.connect(url) as ws:
        while not stop.is_set():
            started = time.perf_counter()
            await ws.send("ping")
            await ws.recv()
            samples.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.005)
    print(json.dumps(samples))
asyncio.run(main(sys.argv[1]))
"""


async def measured(url: str, work: Any, seconds: float | None = None) -> dict[str, float]:
    """
    Echo round trips of a bystander on another route, from a process of its
    own (so that the load generator's own work does not count), while
    C{work} runs (or for C{seconds}).
    """
    bystander = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BYSTANDER, url, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    await asyncio.sleep(0.5)  # connected
    if work is None:
        await asyncio.sleep(seconds or 3)
    else:
        await work
    assert bystander.stdin is not None
    bystander.stdin.close()
    out, _ = await bystander.communicate()
    samples = json.loads(out)
    return {"p50_ms": pct(samples, 0.5), "p99_ms": pct(samples, 0.99), "n": len(samples)}


async def operator_reader(base: str, stop: asyncio.Event, counts: list[int]) -> None:
    async with websockets.connect(f"{base}/operator?token={TOKEN}", max_size=None) as ws:
        while not stop.is_set():
            try:
                await asyncio.wait_for(ws.recv(), 0.2)
                counts[0] += 1
            except TimeoutError:
                pass


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"items": args.items, "clients": args.clients,
                               "operators": args.operators}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        fill(directory / "queue.sqlite3", args.items)
        port = free_port()
        config = directory / "bench.ini"
        config.write_text(f"""
[wsdaemon]
listen = tcp:{port}:interface=127.0.0.1
max_connections_total = 20000

[protocol]
auto_ping_interval = 0
max_connections = 20000

[operator]
model = queue
tokens = bench:{TOKEN}
store = queue.sqlite3
fallback_after = 0
fallback_when_offline = no
max_open_total = {args.items + args.clients + 10000}
max_open_per_route = {args.items + args.clients + 10000}

[route:/support]
strategy = operator
# The flood below measures the queue's caps, not the message rate limit.
max_message_rate = 0

[route:/echo]
strategy = echo
""")
        log = open(directory / "daemon.log", "wb")  # noqa: SIM115
        started = time.perf_counter()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "twisted", "wsdaemon", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, cwd=directory,
            env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'src'}"})
        try:
            while b"ready" not in (directory / "daemon.log").read_bytes():
                if daemon.poll() is not None:
                    raise SystemExit((directory / "daemon.log").read_text())
                await asyncio.sleep(0.05)
            results["restore_s"] = time.perf_counter() - started
            results["rss_after_restore_mib"] = rss_mib(daemon.pid)
            base = f"ws://127.0.0.1:{port}"

            signin = []
            timings: dict[str, list[float]] = {}
            for _ in range(5):
                t0 = time.perf_counter()
                async with websockets.connect(f"{base}/operator?token={TOKEN}",
                                              max_size=None) as ws:
                    hello = json.loads(await ws.recv())
                    signin.append((time.perf_counter() - t0) * 1000)
                    assert hello["total"] == args.items, hello["total"]
                    if not hello["items"]:
                        continue
                    for name, request in (
                            ("page_100_ms", {"after": hello["items"][-1]["order"]}),
                            ("page_1000_ms", {"after": args.items // 2, "limit": 1000}),
                            ("client_filter_ms", {"client": "client-4242"}),
                            ("search_no_match_ms", {"search": "kangaroo"})):
                        t1 = time.perf_counter()
                        await ws.send(json.dumps({"type": "list", "id": 1, **request}))
                        answer = json.loads(await ws.recv())
                        assert answer["type"] == "ok", answer
                        timings.setdefault(name, []).append((time.perf_counter() - t1) * 1000)
            results["signin_ms"] = {"median": statistics.median(signin), "max": max(signin)}
            results["list"] = {k: statistics.median(v) for k, v in timings.items()}

            results["bystander_alone"] = await measured(f"{base}/echo", None, 3)

            stop = asyncio.Event()
            counts = [0]
            readers = [asyncio.create_task(operator_reader(base, stop, counts))
                       for _ in range(args.operators)]
            await asyncio.sleep(0.5)
            acks: list[float] = []
            limit = asyncio.Semaphore(200)

            async def one_client(n: int) -> None:
                async with limit, websockets.connect(f"{base}/support") as ws:
                    t0 = time.perf_counter()
                    await ws.send(f"new question {n}")
                    await ws.recv()
                    acks.append((time.perf_counter() - t0) * 1000)

            async def load() -> None:
                await asyncio.gather(*(one_client(n) for n in range(args.clients)))

            t0 = time.perf_counter()
            results["bystander_during_enqueue"] = await measured(f"{base}/echo", load())
            results["enqueue"] = {"clients_per_s": args.clients / (time.perf_counter() - t0),
                                  "ack_p50_ms": pct(acks, 0.5), "ack_p99_ms": pct(acks, 0.99)}
            stop.set()
            await asyncio.gather(*readers)
            results["operator_events_read"] = counts[0]

            async def flood() -> None:
                async with websockets.connect(f"{base}/support") as ws:
                    end = time.perf_counter() + 3
                    sent = 0
                    while time.perf_counter() < end:
                        await ws.send("spam " * 20)
                        await ws.recv()
                        sent += 1
                    results["flood_messages"] = sent

            results["bystander_during_flood"] = await measured(f"{base}/echo", flood())
            results["rss_end_mib"] = rss_mib(daemon.pid)
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            log.close()
    return results


def report(r: dict[str, Any]) -> None:
    print(f"operator queue with {r['items']:,} open items, {r['clients']:,} new clients, "
          f"{r['operators']} operators reading")
    print(f"  restore {r['restore_s']:.1f} s, RSS {r['rss_after_restore_mib']:.0f} MiB "
          f"-> {r['rss_end_mib']:.0f} MiB at the end")
    print(f"  operator sign-in (connect -> greeting): median {r['signin_ms']['median']:.0f} ms, "
          f"max {r['signin_ms']['max']:.0f} ms")
    if r["list"]:
        print("  list (ms): " + ", ".join(f"{k.removesuffix('_ms')} {v:.1f}"
                                          for k, v in r["list"].items()))
    e = r["enqueue"]
    print(f"  enqueue: {e['clients_per_s']:.0f} new clients/s (connect, send, ack), ack p50 "
          f"{e['ack_p50_ms']:.1f} ms, p99 {e['ack_p99_ms']:.1f} ms; operators read "
          f"{r['operator_events_read']:,} events")
    for key in ("bystander_alone", "bystander_during_enqueue", "bystander_during_flood"):
        b = r[key]
        print(f"  {key.replace('_', ' ')}: echo p50 {b['p50_ms']:.2f} ms, p99 {b['p99_ms']:.2f} "
              f"ms ({b['n']} round trips)")
    print(f"  the flooding client got {r['flood_messages']:,} answers in 3 s (refused past "
          "its cap of open items)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--operators", type=int, default=3)
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    baseline = asyncio.run(main(argparse.Namespace(**{**vars(arguments), "items": 0})))
    outcome = asyncio.run(main(arguments))
    report(baseline)
    report(outcome)
    print(f"ratios, {arguments.items:,} open items vs an empty queue (same run): ack p50 "
          f"{outcome['enqueue']['ack_p50_ms'] / baseline['enqueue']['ack_p50_ms']:.2f}x, p99 "
          f"{outcome['enqueue']['ack_p99_ms'] / baseline['enqueue']['ack_p99_ms']:.2f}x; "
          f"bystander p99 during enqueue "
          f"{outcome['bystander_during_enqueue']['p99_ms'] / baseline['bystander_during_enqueue']['p99_ms']:.2f}x")
    if arguments.json:
        arguments.json.write_text(json.dumps({"baseline": baseline, "loaded": outcome},
                                             indent=2))
