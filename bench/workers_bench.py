#!/usr/bin/env python3
"""
Scaling with workers: echo throughput (64 connections x 64 B binary) and a
push API broadcast to 10,000 clients, for 1, 2, ... workers, in one run
(rounds rotate the worker counts). Servers and load generator are not
pinned: the workers need the cores. Run by hand; results go in
bench/RESULTS.md with the machine.

    python bench/workers_bench.py                 # 1 and 2 workers
    python bench/workers_bench.py --workers 1,2,4 --rounds 3 --clients 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import free_port, wait_port  # noqa: E402
from service_bench import _BROADCAST_CLIENTS, KEY, unlimited_config  # noqa: E402


def start(workers: int, directory: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    port, admin = free_port(), free_port()
    config = directory / f"workers-{workers}.ini"
    config.write_text(unlimited_config(
        f"tcp:{port}:interface=127.0.0.1:backlog=4096", admin, """
        [route:/echo]
        strategy = echo
    """, wsdaemon=f"workers = {workers}", protocol="max_message_size = 1MiB\n"
                                                 "max_frame_size = 1MiB"))
    twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or "twistd"
    log = open(directory / f"workers-{workers}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([twistd, "-n", "--pidfile=", "wsdaemon", "--config", str(config)],
                               stdout=log, stderr=subprocess.STDOUT,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wait_port(port, process)
    wait_port(admin, process)
    time.sleep(1.0 + 0.3 * workers)  # every worker listening
    return process, port, admin


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def echo(port: int, seconds: float) -> float:
    out = subprocess.run([sys.executable, str(HERE / "loadgen.py"), "echo",
                          f"ws://127.0.0.1:{port}/echo", "64", "64", "binary", str(seconds)],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["msgs_per_s"])


def broadcast(port: int, admin: int, clients: int) -> float:
    out = subprocess.run([sys.executable, "-c", _BROADCAST_CLIENTS,
                          f"ws://127.0.0.1:{port}/echo", f"http://127.0.0.1:{admin}",
                          str(clients), KEY], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["last_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=10000)
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable); "
          f"python {sys.version.split()[0]}", flush=True)
    echo_runs: dict[int, list[float]] = {n: [] for n in counts}
    push_runs: dict[int, list[float]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(args.rounds):
            order = counts[round_number % len(counts):] + counts[:round_number % len(counts)]
            for workers in order:
                process, port, admin = start(workers, Path(tmp))
                try:
                    echo_runs[workers].append(echo(port, args.seconds))
                    push_runs[workers].append(broadcast(port, admin, args.clients))
                finally:
                    stop(process)
    base_echo = statistics.median(echo_runs[counts[0]])
    base_push = statistics.median(push_runs[counts[0]])
    for workers in counts:
        rate = statistics.median(echo_runs[workers])
        last = statistics.median(push_runs[workers])
        print(f"workers {workers}: echo 64 conns x 64 B {rate:>8.0f} msg/s "
              f"({rate / base_echo:4.2f}x of {counts[0]}); broadcast to {args.clients} "
              f"clients: last has it after {last:>6.0f} ms ({last / base_push:4.2f}x) "
              f"[echo {', '.join(f'{v:.0f}' for v in echo_runs[workers])}; "
              f"push {', '.join(f'{v:.0f}' for v in push_runs[workers])}]", flush=True)


if __name__ == "__main__":
    main()
