#!/usr/bin/env python3
"""
Benchmarks: wsdaemon against two baselines, a raw Autobahn-on-Twisted echo
server and a websockets (asyncio, on uvloop) echo server, all started here,
in the same run, driven by the same load generator (picows on uvloop, pinned
to the other core), in interleaved rounds. Prints medians and ratios
(wsdaemon / raw, wsdaemon / websockets). Run by hand; results go in
bench/RESULTS.md.

    python bench/run.py                     # everything, 5 rounds
    python bench/run.py --only echo --rounds 3 --seconds 5
    python bench/run.py --only echo --against HEAD~3   # and wsdaemon at HEAD~3, same run
    python bench/run.py --only latency,handshakes,idle,broadcast,conversations
    python bench/run.py --only journal      # the journal's cost (on vs off)

Needs: pip install picows uvloop (see bench/README in RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVER_CPU, CLIENT_CPU = "0", "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not listen")


def pinned(cpu: str, command: list[str]) -> list[str]:
    return (["taskset", "-c", cpu] if shutil.which("taskset") else []) + command


class Servers:
    """The baselines and wsdaemon, all running for the whole run."""

    #: Every server, in the order rounds start with.
    NAMES = ("raw", "websockets", "wsdaemon")

    def __init__(self, config: Path = HERE / "bench.ini", log_dir: Path = Path("/tmp"),
                 against: str | None = None) -> None:
        #: The servers of this run: the baselines, wsdaemon and, with
        #: C{against}, wsdaemon at another revision ("before").
        self.names: tuple[str, ...] = self.NAMES + (("before",) if against else ())
        self.ports = {name: free_port() for name in self.names}
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        for name, script in (("raw", "raw_autobahn_server.py"),
                             ("websockets", "websockets_server.py")):
            self.processes[name] = subprocess.Popen(
                pinned(SERVER_CPU, [sys.executable, str(HERE / script), str(self.ports[name])]),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or "twistd"
        self.daemon_log = open(log_dir / "wsdaemon-bench.log", "wb")  # noqa: SIM115
        self.processes["wsdaemon"] = subprocess.Popen(
            pinned(SERVER_CPU, [twistd, "-n", "--pidfile=", "wsdaemon", "--config", str(config),
                                "--listen", f"tcp:{self.ports['wsdaemon']}:interface=127.0.0.1:backlog=4096"]),
            stdout=self.daemon_log, stderr=subprocess.STDOUT, env=env)
        if against:
            # The same daemon at another revision, from a copy of its tree
            # put first on the path (its package and its twistd plugin).
            self.tree = Path(tempfile.mkdtemp(prefix="wsdaemon-before-"))
            archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", against],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(self.tree)], input=archive, check=True)
            before_env = dict(env, PYTHONPATH=os.pathsep.join(
                [str(self.tree / "src"), str(self.tree)]))
            self.before_log = open(log_dir / "wsdaemon-bench-before.log", "wb")  # noqa: SIM115
            self.processes["before"] = subprocess.Popen(
                pinned(SERVER_CPU, [twistd, "-n", "--pidfile=", "wsdaemon", "--config",
                                    str(config), "--listen",
                                    f"tcp:{self.ports['before']}:interface=127.0.0.1:backlog=4096"]),
                stdout=self.before_log, stderr=subprocess.STDOUT, env=before_env)
        for name in self.names:
            wait_port(self.ports[name], self.processes[name])

    def urls(self, path: str = "/echo") -> dict[str, str]:
        urls = {"raw": f"ws://127.0.0.1:{self.ports['raw']}/",
                "websockets": f"ws://127.0.0.1:{self.ports['websockets']}/",
                "wsdaemon": f"ws://127.0.0.1:{self.ports['wsdaemon']}{path}"}
        if "before" in self.ports:
            urls["before"] = f"ws://127.0.0.1:{self.ports['before']}{path}"
        return urls

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        if "before" in self.ports:
            shutil.rmtree(self.tree, ignore_errors=True)


def loadgen(*args: str, timeout: float = 300) -> dict[str, float]:
    result = subprocess.run(pinned(CLIENT_CPU, [sys.executable, str(HERE / "loadgen.py"),
                                                *args]),
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(f"loadgen {args} failed:\n{result.stderr}")
    value: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return value


def interleaved(rounds: int, measure: Callable[[str], float],
                names: tuple[str, ...] = Servers.NAMES) -> dict[str, list[float]]:
    """Rotate which server goes first, round after round."""
    samples: dict[str, list[float]] = {name: [] for name in names}
    for n in range(rounds):
        order = names[n % len(names):] + names[:n % len(names)]
        for name in order:
            samples[name].append(measure(name))
    return samples


def report(title: str, unit: str, samples: dict[str, list[float]],
           higher_is_better: bool = True) -> dict[str, Any]:
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ours = medians["wsdaemon"]
    ratios = {name: ours / value if value else float("nan")
              for name, value in medians.items() if name != "wsdaemon"}
    better = "higher is better" if higher_is_better else "lower is better"
    figures = "  ".join(f"{name} {value:>8.0f}" for name, value in medians.items())
    spread = ", ".join(f"{k} {min(v):.0f}–{max(v):.0f}" for k, v in samples.items())
    ratio_text = "  ".join(f"vs {name} {ratio:5.2f}x" for name, ratio in ratios.items())
    print(f"{title:<40} {figures} {unit:<6} {ratio_text}  ({better}; spread {spread})",
          flush=True)
    return {"title": title, "unit": unit, **medians, "ratios": ratios, "samples": samples}


def bench_echo(servers: Servers, rounds: int, seconds: float) -> list[dict[str, Any]]:
    results = []
    urls = servers.urls()
    for size, kind in ((64, "binary"), (16384, "binary"), (16384, "text")):
        def measure(name: str, size: int = size, kind: str = kind) -> float:
            return loadgen("echo", urls[name], "64", str(size), kind, str(seconds))["msgs_per_s"]

        samples = interleaved(rounds, measure, servers.names)
        results.append(report(f"echo 64 conns x {size} B {kind}", "msg/s", samples))
    return results


def bench_journal(servers: Servers, rounds: int, seconds: float) -> list[dict[str, Any]]:
    """
    The journal's cost: the same daemon's /echo (journal on, the default)
    against /echo-unjournaled (journal_entries = 0), interleaved.
    """
    urls = {"off": servers.urls("/echo-unjournaled")["wsdaemon"],
            "on": servers.urls("/echo")["wsdaemon"]}
    results = []
    for size, kind in ((64, "binary"), (16384, "text")):
        samples: dict[str, list[float]] = {"off": [], "on": []}
        for n in range(rounds):
            for name in (("off", "on") if n % 2 == 0 else ("on", "off")):
                samples[name].append(loadgen("echo", urls[name], "64", str(size), kind,
                                             str(seconds))["msgs_per_s"])
        off, on = statistics.median(samples["off"]), statistics.median(samples["on"])
        print(f"{f'journal cost, echo 64 conns x {size} B {kind}':<44} off {off:>10.0f} msg/s "
              f"on {on:>10.0f} msg/s  ratio {on / off:5.3f}x (higher is better; spread off "
              f"{min(samples['off']):.0f}–{max(samples['off']):.0f}, on "
              f"{min(samples['on']):.0f}–{max(samples['on']):.0f})", flush=True)
        results.append({"title": f"journal cost {size} B {kind}", "off": off, "on": on,
                        "ratio": on / off, "samples": samples})
    return results


def bench_latency(servers: Servers, rounds: int) -> list[dict[str, Any]]:
    urls = servers.urls()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers.names}

    def measure(name: str) -> float:
        result = loadgen("latency", urls[name], "64", "binary", "20000")
        runs[name].append(result)
        return result["p99_us"]

    samples = interleaved(rounds, measure, servers.names)
    p50 = {k: [r["p50_us"] for r in v] for k, v in runs.items()}
    report("single connection p50 latency", "µs", p50, higher_is_better=False)
    return [report("single connection p99 latency", "µs", samples, higher_is_better=False)]


def bench_handshakes(servers: Servers, rounds: int, seconds: float) -> list[dict[str, Any]]:
    urls = servers.urls()
    samples = interleaved(rounds, lambda name: loadgen(
        "handshakes", urls[name], str(seconds), "16")["handshakes_per_s"], servers.names)
    return [report("handshakes (16 concurrent)", "hs/s", samples)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench_idle(servers: Servers, count: int) -> list[dict[str, Any]]:
    """RSS added per idle connection (count connections held open, then closed)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count * 2 + 100)), hard))
    samples: dict[str, list[float]] = {}
    for name, url in servers.urls().items():
        pid = servers.pids()[name]
        before = rss_kib(pid)
        holder = subprocess.Popen(
            pinned(CLIENT_CPU, [sys.executable, "-c", _IDLE_HOLDER, url, str(count)]),
            stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line.strip() == "ready", line
        time.sleep(1)
        after = rss_kib(pid)
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=60)
        samples[name] = [(after - before) / count]
        time.sleep(2)
    per = ", ".join(f"{name} {values[0]:.1f} KiB" for name, values in samples.items())
    print(f"{'idle connections':<40} {count} each; RSS per connection: {per}", flush=True)
    return [{"title": f"{count} idle connections", "unit": "KiB/conn",
             **{name: values[0] for name, values in samples.items()}}]


_IDLE_HOLDER = r"""
import asyncio, sys, resource, uvloop
from picows import ws_connect, WSListener
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
async def main(url, count):
    sem = asyncio.Semaphore(200)
    async def one():
        async with sem:
            transport, _ = await ws_connect(WSListener, url)
            return transport
    transports = await asyncio.gather(*(one() for _ in range(count)))
    print("ready", flush=True)
    await asyncio.sleep(3600)
uvloop.run(main(sys.argv[1], int(sys.argv[2])))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only",
                        default="echo,journal,latency,handshakes,idle,broadcast,conversations")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--json", type=Path, default=Path("/tmp/wsdaemon-bench.json"))
    parser.add_argument("--against", metavar="REV",
                        help="also run wsdaemon at git revision REV ('before'), same rounds")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    servers = Servers(against=args.against)
    results: list[dict[str, Any]] = []
    try:
        if "echo" in wanted:
            results += bench_echo(servers, args.rounds, args.seconds)
        if "journal" in wanted:
            results += bench_journal(servers, args.rounds, args.seconds)
        if "latency" in wanted:
            results += bench_latency(servers, args.rounds)
        if "handshakes" in wanted:
            results += bench_handshakes(servers, args.rounds, args.seconds)
        if "idle" in wanted:
            results += bench_idle(servers, args.idle)
    finally:
        servers.stop()
    if "broadcast" in wanted or "conversations" in wanted:
        from service_bench import run_service_benches

        results += run_service_benches(wanted)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
