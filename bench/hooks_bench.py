#!/usr/bin/env python3
"""
The team's own code answering (issue 24, item 4), run by hand:

    python bench/hooks_bench.py [--rounds 3] [--seconds 4] [--clients 1000]

One daemon serves, side by side:

- /echo: the baseline (the echo strategy);
- /webhook: each message POSTed, signed, to a trivial local backend
  (bench/webhook_backend.py, asyncio on uvloop) that answers with the
  text, sent back to the client;
- /command: one `cat` per connection, each message a line on its stdin,
  each line of its stdout a message back.

Throughput: request/response on 64 connections (the picows load generator,
pinned to the other core; the daemon, the backend and the `cat`s share core
0), interleaved rounds; messages per second and the ratio to echo in the
same run. Then memory: --clients clients each send 100 messages of 1 KiB as
fast as they can to /webhook-slow, whose backend answers after 5 s; the
daemon's RSS before and at its peak, and the metrics (requests in flight,
latency histogram, errors by kind) from /metrics.

Prints the figures; bench/RESULTS.md keeps them.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import SERVER_CPU, free_port, interleaved, loadgen, pinned, rss_kib, wait_port  # noqa: E402

KEY = "bench-admin-key-0123456789"

FLOOD = textwrap.dedent("""
    import asyncio, sys
    import websockets

    async def one(url, count, payload):
        try:
            async with websockets.connect(url, max_queue=None) as ws:
                for _ in range(count):
                    await ws.send(payload)
                await asyncio.sleep(30)
        except Exception:
            pass

    async def main(url, clients, count):
        payload = "x" * 1024
        tasks = []
        for _ in range(clients):
            tasks.append(asyncio.create_task(one(url, count, payload)))
            await asyncio.sleep(0.001)
        print("connected", flush=True)
        await asyncio.gather(*tasks)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
""")


def config(directory: Path, fast: int, slow: int, admin: int) -> Path:
    (directory / "hook.secret").write_text(
        "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode() + "\n")
    path = directory / "wsdaemon.ini"
    path.write_text(textwrap.dedent(f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1
        max_connections_total = 0

        [protocol]
        identity = claimed
        max_connections = 0
        max_message_rate = 0
        journal_entries = 0

        [admin]
        listen = tcp:{admin}:interface=127.0.0.1
        api_keys = bench:{KEY}

        [route:/echo]
        strategy = echo

        [route:/webhook]
        strategy = webhook
        url = http://127.0.0.1:{fast}/events
        secret_file = hook.secret

        [route:/webhook-slow]
        strategy = webhook
        url = http://127.0.0.1:{slow}/events
        secret_file = hook.secret
        timeout = 30
        open_handshake_timeout = 30

        [route:/command]
        strategy = command
        command = cat
        max_processes = 1000
    """))
    return path


def metrics(admin: int) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{admin}/metrics",
                                     headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(answer.read().decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--clients", type=int, default=1000)
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="wsdaemon-hooks-"))
    fast, slow, admin, port = free_port(), free_port(), free_port(), free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    backends = [subprocess.Popen(pinned(SERVER_CPU, [sys.executable, str(HERE / "webhook_backend.py"),
                                                     str(p), *extra]), env=env)
                for p, extra in ((fast, ()), (slow, ("5",)))]
    twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or "twistd"
    log = open(directory / "daemon.log", "wb")  # noqa: SIM115
    daemon = subprocess.Popen(
        pinned(SERVER_CPU, [twistd, "-n", "--pidfile=", "wsdaemon", "--config",
                            str(config(directory, fast, slow, admin)), "--listen",
                            f"tcp:{port}:interface=127.0.0.1:backlog=4096"]),
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory)
    try:
        for p, process in ((fast, backends[0]), (slow, backends[1]), (port, daemon)):
            wait_port(p, process)
        url = f"ws://127.0.0.1:{port}"
        names = ("echo", "webhook", "command")
        print(f"hooks: 64 connections x 64 B text, request/response, {args.rounds} rounds of "
              f"{args.seconds:g} s (medians)", flush=True)
        samples = interleaved(args.rounds, lambda name: loadgen(
            "echo", f"{url}/{name}", "64", "64", "text", str(args.seconds))["msgs_per_s"],
            names)
        echo = statistics.median(samples["echo"])
        for name in names:
            value = statistics.median(samples[name])
            spread = f"{min(samples[name]):.0f}-{max(samples[name]):.0f}"
            print(f"  {name:<8} {value:>9.0f} msg/s  {value / echo:5.2f}x echo  "
                  f"(spread {spread})", flush=True)

        before = rss_kib(daemon.pid)
        flood = subprocess.Popen(
            [sys.executable, "-c", FLOOD, f"{url}/webhook-slow", str(args.clients), "100"],
            stdout=subprocess.PIPE, text=True, env=env)
        peak, stop = [before], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.append(rss_kib(daemon.pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        assert flood.stdout is not None
        flood.stdout.readline()  # connected
        time.sleep(12)
        during = metrics(admin)
        stop.set()
        sampler.join()
        flood.kill()
        flood.wait()
        print(f"memory: {args.clients} clients x 100 messages of 1 KiB at a backend answering "
              f"in 5 s: daemon RSS {before / 1024:.0f} MiB before, peak "
              f"{max(peak) / 1024:.0f} MiB (+{(max(peak) - before) / 1024:.0f} MiB, "
              f"{(max(peak) - before) / args.clients:.0f} KiB a client)", flush=True)
        for line in during.splitlines():
            if line.startswith(("wsdaemon_webhook_in_flight", "wsdaemon_webhook_errors",
                                "wsdaemon_webhook_latency_seconds_count",
                                "wsdaemon_webhook_latency_seconds_sum")):
                print(f"  {line}", flush=True)
    finally:
        for process in (daemon, *backends):
            process.terminate()
        for process in (daemon, *backends):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
