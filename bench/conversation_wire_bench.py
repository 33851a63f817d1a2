"""
Conversations at a support team's scale, over the wire (run by hand):

    python bench/conversation_wire_bench.py [--conversations 100000] [--messages 10]
                                            [--visitors 2000] [--operators 3]

What bench/queue_bench.py asked of the retired queue, asked of
conversations: starts the real daemon on a SQLite store already holding
--conversations open conversations of --messages messages (filled as
bench/conversation_bench.py fills it), and against an empty store in the
same run (the baseline), measures: start time and RSS; an operator's
sign-in (connect to its protocol-2 hello) and the pages and search it asks
for; --visitors new plain visitors (200 connecting at a time), each sending
one message and waiting for its acknowledgement, while --operators
operators read every event; the echo latency a bystander on another route
sees alone, during those visitors and while one visitor floods the
conversations route; RSS at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
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
sys.path.insert(0, str(HERE))

from conversation_bench import fill  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
ACK = "Thanks!"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    own (the load generator's work does not count), while C{work} runs (or
    for C{seconds}).
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


async def answer_to(ws: Any, rid: str) -> dict[str, Any]:
    """The answer to the request C{rid} (events before it skipped)."""
    while True:
        message: dict[str, Any] = json.loads(await ws.recv())
        if message.get("id") == rid:
            return message


async def sign_in(base: str, conversations: int) -> tuple[list[float], dict[str, list[float]]]:
    """Five sign-ins (connect to hello), each asking for pages and a search."""
    signin: list[float] = []
    timings: dict[str, list[float]] = {}
    for _ in range(5):
        t0 = time.perf_counter()
        async with websockets.connect(f"{base}/operator?token={TOKEN}", max_size=None) as ws:
            hello = json.loads(await ws.recv())
            signin.append((time.perf_counter() - t0) * 1000)
            assert hello["type"] == "hello" and hello["total"] == conversations, hello["total"]
            requests: list[tuple[str, dict[str, Any]]] = [
                ("page_100_ms", {"type": "conversations", "view": "all", "limit": 100}),
                ("page_500_ms", {"type": "conversations", "view": "all", "limit": 500}),
                ("search_no_match_ms", {"type": "conversations", "view": "all",
                                        "search": "kangaroo"})]
            if hello.get("next") is not None:
                requests.append(("next_page_ms", {"type": "conversations", "view": "all",
                                                  "after": hello["next"], "limit": 100}))
            for n, (name, request) in enumerate(requests):
                t1 = time.perf_counter()
                await ws.send(json.dumps({"id": f"r{n}", **request}))
                answer = await answer_to(ws, f"r{n}")
                assert answer["type"] == "ok", answer
                timings.setdefault(name, []).append((time.perf_counter() - t1) * 1000)
    return signin, timings


def config_text(port: int, room: int) -> str:
    return f"""
[wsdaemon]
listen = tcp:{port}:interface=127.0.0.1
max_connections_total = 20000

[protocol]
auto_ping_interval = 0
max_connections = 20000
# The flood below measures the conversations' caps, not the message rate limit.
max_message_rate = 0

[operator]
tokens = bench:{TOKEN}
store = conversations.sqlite3
ack_message = {ACK}
offline_message =
fallback_after = 0
max_open_total = {room}
max_open_per_route = {room}

[route:/support]
strategy = operator

[route:/echo]
strategy = echo
"""


async def visitors_and_flood(base: str, args: argparse.Namespace,
                             results: dict[str, Any]) -> None:
    stop = asyncio.Event()
    counts = [0]
    readers = [asyncio.create_task(operator_reader(base, stop, counts))
               for _ in range(args.operators)]
    await asyncio.sleep(0.5)
    acks: list[float] = []
    limit = asyncio.Semaphore(200)

    async def one_visitor(n: int) -> None:
        async with limit, websockets.connect(f"{base}/support") as ws:
            t0 = time.perf_counter()
            await ws.send(f"new question {n}")
            assert await ws.recv() == ACK
            acks.append((time.perf_counter() - t0) * 1000)

    async def load() -> None:
        await asyncio.gather(*(one_visitor(n) for n in range(args.visitors)))

    t0 = time.perf_counter()
    results["bystander_during_visitors"] = await measured(f"{base}/echo", load())
    results["new_visitors"] = {"per_s": args.visitors / (time.perf_counter() - t0),
                           "ack_p50_ms": pct(acks, 0.5), "ack_p99_ms": pct(acks, 0.99)}
    stop.set()
    await asyncio.gather(*readers)
    results["operator_events_read"] = counts[0]

    async def flood() -> None:
        # Sent as fast as the connection takes them; what comes back is the
        # acknowledgement and, past max_unanswered, the refusals.
        async with websockets.connect(f"{base}/support") as ws:
            end = time.perf_counter() + 3
            sent = answered = 0

            async def read() -> None:
                nonlocal answered
                async for _ in ws:
                    answered += 1

            reader = asyncio.create_task(read())
            while time.perf_counter() < end:
                await ws.send("spam " * 20)
                sent += 1
                await asyncio.sleep(0)
            await asyncio.sleep(0.5)
            reader.cancel()
            results["flood"] = {"sent": sent, "answered": answered}

    results["bystander_during_flood"] = await measured(f"{base}/echo", flood())


async def run(args: argparse.Namespace, conversations: int) -> dict[str, Any]:
    results: dict[str, Any] = {"conversations": conversations, "visitors": args.visitors,
                               "operators": args.operators}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        fill(directory / "conversations.sqlite3", conversations, args.messages, time.time())
        port = free_port()
        config = directory / "bench.ini"
        config.write_text(config_text(port, conversations + args.visitors + 10000))
        log_path = directory / "daemon.log"
        log = open(log_path, "wb")  # noqa: SIM115 - lives with the daemon
        started = time.perf_counter()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "twisted", "wsdaemon", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, cwd=directory,
            env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'src'}"})
        try:
            while b"live conversations loaded" not in log_path.read_bytes() \
                    or b"ready" not in log_path.read_bytes():
                if daemon.poll() is not None:
                    raise SystemExit(log_path.read_text())
                await asyncio.sleep(0.05)
            results["start_s"] = time.perf_counter() - started
            results["rss_after_start_mib"] = rss_mib(daemon.pid)
            base = f"ws://127.0.0.1:{port}"
            signin, timings = await sign_in(base, conversations)
            results["signin_ms"] = {"median": statistics.median(signin), "max": max(signin)}
            results["requests"] = {k: statistics.median(v) for k, v in timings.items()}
            results["bystander_alone"] = await measured(f"{base}/echo", None, 3)
            await visitors_and_flood(base, args, results)
            results["rss_end_mib"] = rss_mib(daemon.pid)
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            log.close()
    return results


def report(r: dict[str, Any]) -> None:
    print(f"conversations: {r['conversations']:,} open, {r['visitors']:,} new visitors, "
          f"{r['operators']} operators reading")
    print(f"  start {r['start_s']:.1f} s, RSS {r['rss_after_start_mib']:.0f} MiB "
          f"-> {r['rss_end_mib']:.0f} MiB at the end")
    print(f"  operator sign-in (connect -> hello): median {r['signin_ms']['median']:.0f} ms, "
          f"max {r['signin_ms']['max']:.0f} ms")
    print("  requests (ms): " + ", ".join(f"{k.removesuffix('_ms')} {v:.1f}"
                                          for k, v in r["requests"].items()))
    v = r["new_visitors"]
    print(f"  new visitors: {v['per_s']:.0f}/s (connect, send, acknowledgement), ack p50 "
          f"{v['ack_p50_ms']:.1f} ms, p99 {v['ack_p99_ms']:.1f} ms; operators read "
          f"{r['operator_events_read']:,} events")
    for key in ("bystander_alone", "bystander_during_visitors", "bystander_during_flood"):
        b = r[key]
        print(f"  {key.replace('_', ' ')}: echo p50 {b['p50_ms']:.2f} ms, p99 {b['p99_ms']:.2f} "
              f"ms ({b['n']} round trips)")
    print(f"  the flooding visitor sent {r['flood']['sent']:,} messages in 3 s and was "
          f"answered {r['flood']['answered']:,} times (the acknowledgement, then refusals "
          "past max_unanswered)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--visitors", type=int, default=2000)
    parser.add_argument("--operators", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    baseline = asyncio.run(run(args, 0))
    loaded = asyncio.run(run(args, args.conversations))
    report(baseline)
    report(loaded)
    during = "bystander_during_visitors"
    new, old = loaded["new_visitors"], baseline["new_visitors"]
    print(f"ratios, {args.conversations:,} open vs none (same run): ack p50 "
          f"{new['ack_p50_ms'] / old['ack_p50_ms']:.2f}x, p99 "
          f"{new['ack_p99_ms'] / old['ack_p99_ms']:.2f}x; bystander p99 during the visitors "
          f"{loaded[during]['p99_ms'] / baseline[during]['p99_ms']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"baseline": baseline, "loaded": loaded}, indent=2))


if __name__ == "__main__":
    main()
