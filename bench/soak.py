#!/usr/bin/env python3
"""
A bounded soak: for --minutes (default 5), clients connect and disconnect,
send messages to echo, the scripted bot (tickers included) and the operator
queue, operators come and go, and the daemon is reloaded every 20 s. Then
everything stops and the daemon must be back where it started: memory (RSS,
within --rss-slack-mib), file descriptors, pending timers; and every message
sent to the operator queue got exactly one reply or the fallback.

    python bench/soak.py --minutes 5
    python bench/soak.py --minutes 5 --redis

With --redis, two daemons share a redis-server (AOF on): clients and
operators land on either at random, and Redis is restarted once in the
middle (down for two seconds). A client told its message "could not be
queued" while Redis is away sends nothing more on that connection; one told
it "could not confirm" it sends it again (it is not queued twice); every
message that was acknowledged must still get exactly one reply or the
fallback.

Only loopback; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect

KEY = "soak-key-0123456789abcdef"
TOKEN = "soak-token-0123456789abcdef"
FALLBACK = "soak fallback"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NOT_QUEUED = "Sorry, your message could not be queued"
UNCONFIRMED = "Sorry, we could not confirm that your message was queued"
RECEIVED_BEFORE = "We had already received this message"


def write_config(directory: Path, port: int, admin: int, broker: str = "",
                 name: str = "soak") -> Path:
    (directory / "bot.toml").write_text(textwrap.dedent("""
        [[greeting]]
        text = "hi {session}"
        [[rule]]
        text = "tick"
        reply = "ticking"
        start_ticker = { name = "t", every = 0.2, text = "tick {tick}" }
        [[rule]]
        text = "slow"
        [[rule.send]]
        text = "later"
        delay = 0.5
        [default]
        reply = "{message}"
    """))
    path = directory / f"{name}.ini"
    path.write_text(textwrap.dedent(f"""
        [wsdaemon]
        listen = tcp:{port}:interface=127.0.0.1
        demo_page = no
        [admin]
        listen = tcp:{admin}:interface=127.0.0.1
        api_keys = soak:{KEY}
        [protocol]
        # These clients choose their ids (?client_id=).
        identity = claimed
        max_message_rate = 0
        [operator]
        model = queue
        tokens = soak:{TOKEN}
        store = {directory}/{name}.sqlite3
        lease = 2
        fallback_after = 3
        fallback_message = {FALLBACK}
        fallback_when_offline = no
        # Throughput, not the per-client cap: these clients pipeline.
        max_open_per_client = 0
        keep_after_fallback = no
        [route:/echo]
        strategy = echo
        [route:/bot]
        strategy = scripted
        rules = bot.toml
        [route:/support]
        strategy = operator
        ack_message = queued
    """) + broker)
    return path


def snapshot(pid: int, admin: int) -> dict[str, int]:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
               .splitlines() if line.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=10) as r:
        health = json.loads(r.read())
    return {"rss_kib": rss, "fds": fds, "timers": health["pending_timers"],
            "connections": health["connections"],
            "ready": int(health["ready"] and health["broker"]["up"])}


def settled(pid: int, admin: int) -> dict[str, int]:
    """
    The lowest of a few snapshots over a second: a Redis call in flight at
    the instant of one snapshot holds timers (its timeouts) that are not a
    leak.
    """
    samples = []
    for _ in range(5):
        samples.append(snapshot(pid, admin))
        time.sleep(0.2)
    return {key: min(sample[key] for sample in samples) for key in samples[0]}


class Tally:
    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.answers: dict[str, int] = {}
        self.errors: list[str] = []
        self.refused = 0


async def echo_client(urls: list[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        async with connect(f"{random.choice(urls)}/echo") as ws:
            for n in range(random.randint(1, 20)):
                await ws.send(f"m{n}")
                assert await ws.recv() == f"m{n}"


async def bot_client(urls: list[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        async with connect(f"{random.choice(urls)}/bot") as ws:
            await ws.recv()
            await ws.send(random.choice(["tick", "slow", "hello"]))
            await asyncio.sleep(random.uniform(0, 0.6))  # leave with timers running


async def support_client(urls: list[str], deadline: float, name: str, tally: Tally) -> None:
    asked = 0
    while time.monotonic() < deadline:
        async with connect(f"{random.choice(urls)}/support?client_id={name}") as ws:
            # Each question its own text: the same one again within two
            # minutes would be taken as a resend.
            asked += 1
            question = f"question {asked}"
            await ws.send(question)
            tally.sent[name] = tally.sent.get(name, 0) + 1
            acked = False
            outcome = None
            try:
                while not (acked and outcome):
                    message = await asyncio.wait_for(ws.recv(), timeout=6)
                    if message == "queued" or str(message).startswith(RECEIVED_BEFORE):
                        acked = True
                    elif str(message).startswith(UNCONFIRMED) and not acked:
                        await ws.send(question)  # maybe queued: not queued twice
                    elif str(message).startswith(NOT_QUEUED) and not acked:
                        # Not accepted (Redis away): nothing to expect.
                        tally.sent[name] -= 1
                        tally.refused += 1
                        break
                    elif message in ("answer", FALLBACK):
                        tally.answers[name] = tally.answers.get(name, 0) + 1
                        outcome = message
                    else:
                        tally.errors.append(f"{name}: unexpected {message!r}")
            except TimeoutError:
                tally.errors.append(f"{name}: acked={acked}, no outcome within 6 s "
                                    f"(asked at {time.strftime('%H:%M:%S')} - 6 s)")


async def operator(urls: list[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        async with connect(f"{random.choice(urls)}/operator?token={TOKEN}") as ws:
            stay = time.monotonic() + random.uniform(1, 5)
            while time.monotonic() < min(stay, deadline):
                try:
                    event = json.loads(await asyncio.wait_for(ws.recv(), timeout=0.5))
                except TimeoutError:
                    continue
                if event["type"] in ("item", "updated") and event["item"]["state"] == "queued":
                    if random.random() < 0.1:
                        continue  # let some wait for the fallback or another operator
                    await ws.send(json.dumps({"type": "reply", "item": event["item"]["item_id"],
                                              "text": "answer"}))
                elif event["type"] == "hello":
                    for item in event["items"]:
                        await ws.send(json.dumps({"type": "reply", "item": item["item_id"],
                                                  "text": "answer"}))


async def reloader(processes: list[subprocess.Popen[bytes]], deadline: float) -> None:
    while time.monotonic() + 20 < deadline:
        await asyncio.sleep(20)
        for process in processes:
            process.send_signal(signal.SIGHUP)


async def redis_restart(redis: Redis, seconds: float) -> None:
    await asyncio.sleep(seconds / 2)
    await asyncio.to_thread(redis.restart, 2.0)
    print("redis restarted", flush=True)


async def soak(urls: list[str], processes: list[subprocess.Popen[bytes]], seconds: float,
               tally: Tally, redis: Redis | None) -> None:
    deadline = time.monotonic() + seconds
    tasks = [echo_client(urls, deadline) for _ in range(8)]
    tasks += [bot_client(urls, deadline) for _ in range(6)]
    tasks += [support_client(urls, deadline, f"c{n}", tally) for n in range(10)]
    tasks += [operator(urls, deadline) for _ in range(2)]
    tasks.append(reloader(processes, deadline))
    if redis is not None:
        tasks.append(redis_restart(redis, seconds))
    await asyncio.gather(*tasks)


class Redis:
    """A redis-server with AOF on, in the soak's directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None

    def restart(self, down_for: float) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--rss-slack-mib", type=float, default=16)
    parser.add_argument("--redis", action="store_true",
                        help="two daemons on one redis-server, restarted once midway")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        redis = Redis(directory) if args.redis else None
        broker = ("" if redis is None else "\n[broker]\nbackend = redis\n"
                  f"url = redis://127.0.0.1:{redis.port}/0\nprefix = soak:\ntimeout = 1\n")
        daemons = []
        for name in (["a", "b"] if redis else ["soak"]):
            port, admin = free_port(), free_port()
            config = write_config(directory, port, admin, broker, name)
            twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or "twistd"
            log = open(directory / f"{name}.log", "wb")  # noqa: SIM115
            process = subprocess.Popen([twistd, "-n", "--pidfile=", "wsdaemon", "--config",
                                        str(config)], stdout=log, stderr=subprocess.STDOUT)
            daemons.append((name, port, admin, process))
        processes = [d[3] for d in daemons]
        befores: dict[str, dict[str, int]] = {}
        afters: dict[str, dict[str, int]] = {}
        codes: dict[str, int] = {}
        tally = Tally()
        try:
            for name, _, admin, process in daemons:
                for _ in range(100):
                    try:
                        time.sleep(0.2)
                        # Ready, and with Redis both connections up.
                        if snapshot(process.pid, admin)["ready"]:
                            time.sleep(0.5)
                            befores[name] = settled(process.pid, admin)
                            break
                    except OSError:
                        pass
                else:
                    raise SystemExit(f"daemon {name} did not start")
                print(f"before {name}: {befores[name]}", flush=True)
            asyncio.run(soak([f"ws://127.0.0.1:{d[1]}" for d in daemons], processes,
                             args.minutes * 60, tally, redis))
            time.sleep(6)  # fallbacks, leases, close handshakes settle
            for name, _, admin, process in daemons:
                afters[name] = settled(process.pid, admin)
                print(f"after {name}:  {afters[name]}", flush=True)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for name, _, _, process in daemons:
                codes[name] = process.wait(timeout=30)
            if redis is not None:
                redis.stop()
        problems = list(tally.errors)
        for name, sent in tally.sent.items():
            if tally.answers.get(name, 0) != sent:
                problems.append(f"{name}: sent {sent}, got {tally.answers.get(name, 0)} replies")
        for name, before in befores.items():
            after = afters.get(name, before)
            if after["fds"] > before["fds"]:
                problems.append(f"{name}: file descriptors {before['fds']} -> {after['fds']}")
            if after["timers"] > before["timers"]:
                problems.append(f"{name}: pending timers {before['timers']} -> "
                                f"{after['timers']}")
            if after["rss_kib"] - before["rss_kib"] > args.rss_slack_mib * 1024:
                problems.append(f"{name}: RSS {before['rss_kib']} -> {after['rss_kib']} KiB")
            if codes.get(name) != 0:
                problems.append(f"daemon {name} exited with {codes.get(name)}")
        questions = sum(tally.sent.values())
        print(f"operator queue: {questions} messages accepted, each answered once or given the "
              f"fallback: {'yes' if not any('repl' in p for p in problems) else 'NO'}"
              + (f"; {tally.refused} refused while Redis was away" if redis else ""))
        for problem in problems:
            print(f"PROBLEM: {problem}")
        if problems:
            kept = Path(tempfile.mkdtemp(prefix="wsdaemon-soak-"))
            for name, *_ in daemons:
                shutil.copy(directory / f"{name}.log", kept)
            print(f"daemon logs kept in {kept}")
        print("soak: OK" if not problems else "soak: FAILED")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
