#!/usr/bin/env python3
"""
A bounded soak: for --minutes (default 5), clients connect and disconnect,
send messages to echo, the scripted bot (tickers included) and the operator
queue, operators come and go, and the daemon is reloaded every 20 s. Then
everything stops and the daemon must be back where it started: memory (RSS,
within --rss-slack-mib), file descriptors, pending timers; and every message
sent to the operator queue got exactly one reply or the fallback.

    python bench/soak.py --minutes 5

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


def write_config(directory: Path, port: int, admin: int) -> Path:
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
    path = directory / "soak.ini"
    path.write_text(textwrap.dedent(f"""
        [wsdaemon]
        listen = tcp:{port}:interface=127.0.0.1
        demo_page = no
        [admin]
        listen = tcp:{admin}:interface=127.0.0.1
        api_keys = soak:{KEY}
        [protocol]
        max_message_rate = 0
        [operator]
        tokens = soak:{TOKEN}
        store = {directory}/queue.sqlite3
        lease = 2
        fallback_after = 3
        fallback_message = {FALLBACK}
        fallback_when_offline = no
        keep_after_fallback = no
        [route:/echo]
        strategy = echo
        [route:/bot]
        strategy = scripted
        rules = bot.toml
        [route:/support]
        strategy = operator
        ack_message = queued
    """))
    return path


def snapshot(pid: int, admin: int) -> dict[str, int]:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
               .splitlines() if line.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=10) as r:
        health = json.loads(r.read())
    return {"rss_kib": rss, "fds": fds, "timers": health["pending_timers"],
            "connections": health["connections"]}


class Tally:
    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.answers: dict[str, int] = {}
        self.errors: list[str] = []


async def echo_client(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        async with connect(f"{url}/echo") as ws:
            for n in range(random.randint(1, 20)):
                await ws.send(f"m{n}")
                assert await ws.recv() == f"m{n}"


async def bot_client(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        async with connect(f"{url}/bot") as ws:
            await ws.recv()
            await ws.send(random.choice(["tick", "slow", "hello"]))
            await asyncio.sleep(random.uniform(0, 0.6))  # leave with timers running


async def support_client(url: str, deadline: float, name: str, tally: Tally) -> None:
    while time.monotonic() < deadline:
        async with connect(f"{url}/support?client_id={name}") as ws:
            await ws.send("question")
            tally.sent[name] = tally.sent.get(name, 0) + 1
            acked = False
            outcome = None
            try:
                while not (acked and outcome):
                    message = await asyncio.wait_for(ws.recv(), timeout=6)
                    if message == "queued":
                        acked = True
                    elif message in ("answer", FALLBACK):
                        tally.answers[name] = tally.answers.get(name, 0) + 1
                        outcome = message
                    else:
                        tally.errors.append(f"{name}: unexpected {message!r}")
            except TimeoutError:
                tally.errors.append(f"{name}: acked={acked}, no outcome within 6 s")


async def operator(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        async with connect(f"{url}/operator?token={TOKEN}") as ws:
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


async def reloader(process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() + 20 < deadline:
        await asyncio.sleep(20)
        process.send_signal(signal.SIGHUP)


async def soak(url: str, process: subprocess.Popen[bytes], seconds: float, tally: Tally) -> None:
    deadline = time.monotonic() + seconds
    tasks = [echo_client(url, deadline) for _ in range(8)]
    tasks += [bot_client(url, deadline) for _ in range(6)]
    tasks += [support_client(url, deadline, f"c{n}", tally) for n in range(10)]
    tasks += [operator(url, deadline) for _ in range(2)]
    tasks.append(reloader(process, deadline))
    await asyncio.gather(*tasks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--rss-slack-mib", type=float, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port, admin = free_port(), free_port()
        config = write_config(Path(tmp), port, admin)
        twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or "twistd"
        log = open(Path(tmp) / "daemon.log", "wb")  # noqa: SIM115
        process = subprocess.Popen([twistd, "-n", "--pidfile=", "wsdaemon", "--config",
                                    str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(100):
                try:
                    before = snapshot(process.pid, admin)
                    break
                except OSError:
                    time.sleep(0.2)
            else:
                raise SystemExit("daemon did not start")
            print(f"before: {before}", flush=True)
            tally = Tally()
            asyncio.run(soak(f"ws://127.0.0.1:{port}", process, args.minutes * 60, tally))
            time.sleep(6)  # fallbacks, leases, close handshakes settle
            after = snapshot(process.pid, admin)
            print(f"after:  {after}", flush=True)
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
        problems = list(tally.errors)
        for name, sent in tally.sent.items():
            if tally.answers.get(name, 0) != sent:
                problems.append(f"{name}: sent {sent}, got {tally.answers.get(name, 0)} replies")
        if after["fds"] > before["fds"]:
            problems.append(f"file descriptors {before['fds']} -> {after['fds']}")
        if after["timers"] > before["timers"]:
            problems.append(f"pending timers {before['timers']} -> {after['timers']}")
        if after["rss_kib"] - before["rss_kib"] > args.rss_slack_mib * 1024:
            problems.append(f"RSS {before['rss_kib']} -> {after['rss_kib']} KiB")
        if code != 0:
            problems.append(f"daemon exited with {code}")
        questions = sum(tally.sent.values())
        print(f"operator queue: {questions} messages, each answered once or given the fallback: "
              f"{'yes' if not any('replies' in p or 'reply' in p for p in problems) else 'NO'}")
        for problem in problems:
            print(f"PROBLEM: {problem}")
        print("soak: OK" if not problems else "soak: FAILED")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
