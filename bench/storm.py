#!/usr/bin/env python3
"""
Reconnect storm (#26): N clients connect at once, a bounded number of
handshakes in flight (as a browser fleet reconnecting after a deploy or a
failover would), each held open until all are connected, then all closed.
wsdaemon runs the shipped config's handshake checks (etc/ copied to a
temporary directory: anonymous identity with its signed cookie, the
allowed-origins list, logging of every connection to a file), and only its
listeners and connection caps changed (the shipped caps, 10,000 in all and
1,000 per route, would refuse the storm itself); with --workers, the
operator route goes too (workers cannot share its embedded conversation store). The baseline is websockets
17 on uvloop (bench/websockets_server.py). Both servers pinned to one core,
the picows load generator and a bystander echo client (64 B every 2 ms on a
connection opened before the storm, its round-trip p99 during the storm) to
the other. Every client sends an Origin the daemon accepts. Run by hand;
results go in bench/RESULTS.md with the machine.

    python bench/storm.py                                  # 10,000 clients; 16, 64, 256 in flight
    python bench/storm.py --clients 3000 --concurrency 32 --rounds 5
    python bench/storm.py --workers 2                      # wsdaemon with workers = 2, nothing pinned
"""

from __future__ import annotations

import argparse
import json
import os
import re
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

from run import CLIENT_CPU, SERVER_CPU, free_port, wait_port  # noqa: E402

NAMES = ("websockets", "wsdaemon")


def shipped_config(directory: Path, port: int, admin: int, workers: int) -> Path:
    """etc/ copied to C{directory}, wsdaemon.ini on free ports, caps lifted."""
    shutil.copytree(HERE.parent / "etc", directory, dirs_exist_ok=True)
    config = directory / "wsdaemon.ini"
    text = config.read_text()
    replacements = [
        (r"(?m)^listen = tcp:8080:interface=127\.0\.0\.1$",
         f"listen = tcp:{port}:interface=127.0.0.1:backlog=4096"
         + (f"\nworkers = {workers}" if workers > 1 else "")),
        (r"(?m)^listen = tcp:8081:interface=127\.0\.0\.1$",
         f"listen = tcp:{admin}:interface=127.0.0.1"),
        (r"(?m)^max_connections_total = 10000$", "max_connections_total = 0"),
        (r"(?m)^max_connections = 1000$", "max_connections = 0"),
    ]
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text)
        if count != 1:
            raise SystemExit(f"etc/wsdaemon.ini changed: {pattern!r} matched {count} times")
    if workers > 1:
        # Workers cannot share the embedded conversation store; the storm is on
        # /echo, so the operator route (the last section) goes.
        text, count = re.subn(r"(?s)\n\[route:/support\].*", "\n", text)
        if count != 1:
            raise SystemExit("etc/wsdaemon.ini changed: [route:/support] not found")
    config.write_text(text)
    return config


def pinned(cpu: str, command: list[str], pin: bool) -> list[str]:
    return (["taskset", "-c", cpu] if pin and shutil.which("taskset") else []) + command


class Servers:
    def __init__(self, directory: Path, workers: int, pin: bool) -> None:
        self.ports = {name: free_port() for name in NAMES}
        admin = free_port()
        config = shipped_config(directory, self.ports["wsdaemon"], admin, workers)
        # This tree's wsdaemon and plugin, whatever is installed.
        repo = HERE.parent
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
            filter(None, [str(repo), str(repo / "src"), os.environ.get("PYTHONPATH")])))
        twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or "twistd"
        self.log_path = directory / "wsdaemon.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.processes = {
            "websockets": subprocess.Popen(
                pinned(SERVER_CPU, [sys.executable, str(HERE / "websockets_server.py"),
                                    str(self.ports["websockets"])], pin),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env),
            "wsdaemon": subprocess.Popen(
                pinned(SERVER_CPU, [twistd, "-n", "--pidfile=", "wsdaemon", "--config",
                                    str(config)], pin),
                stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=directory),
        }
        try:
            for name in NAMES:
                wait_port(self.ports[name], self.processes[name])
            wait_port(admin, self.processes["wsdaemon"])
        except SystemExit:
            self.stop()  # the other server too: nothing left running
            raise
        if workers > 1:
            time.sleep(1.0 + 0.3 * workers)  # every worker listening

    def url(self, name: str) -> str:
        return f"ws://127.0.0.1:{self.ports[name]}" + ("/echo" if name == "wsdaemon" else "/")

    def origin(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


def cpu_seconds(pid: int) -> float:
    """
    CPU time (user and system) of process C{pid} and its children's threads
    now running (a supervisor's workers), from /proc.
    """
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending.extend(int(child) for child in children)
    return total


def run_delay_seconds(pid: int) -> float:
    """
    Time the threads of process C{pid} (and its children's) spent ready to
    run but waiting for a core (/proc/PID/task/TID/schedstat, second field):
    on a shared machine, what other load took from the server.
    """
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[1]) / 1e9
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending.extend(int(child) for child in children)
    return total


def one_storm(servers: Servers, name: str, clients: int, concurrency: int,
              pin: bool, profile: Path | None = None) -> dict[str, float]:
    url, origin = servers.url(name), servers.origin(name)
    loadgen = [sys.executable, str(HERE / "loadgen.py")]
    bystander = subprocess.Popen(pinned(CLIENT_CPU, [*loadgen, "bystander", url, origin], pin),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert bystander.stdin is not None and bystander.stdout is not None
    line = bystander.stdout.readline()
    if line.strip() != "ready":
        raise SystemExit(f"bystander on {name}: {line!r}")
    time.sleep(0.5)  # some quiet round trips to compare with
    server = servers.processes[name].pid
    spy = None
    if profile is not None and name == "wsdaemon":
        profile.mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(server), "--rate", "250", "--format", "raw",
             "--nonblocking", "-o", str(profile / f"storm-{concurrency}-{time.time():.0f}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attached
    before = cpu_seconds(server)
    waited_before = run_delay_seconds(server)
    began = time.monotonic()
    storm = subprocess.Popen(pinned(CLIENT_CPU, [*loadgen, "storm", url, str(clients),
                                                 str(concurrency), origin, "hold"], pin),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert storm.stdin is not None and storm.stdout is not None
    line = storm.stdout.readline()
    connected = cpu_seconds(server)
    wall = time.monotonic() - began
    waited = run_delay_seconds(server) - waited_before
    client_cpu = cpu_seconds(storm.pid)
    storm.stdin.write("\n")
    storm.stdin.flush()
    stdout, stderr = storm.communicate(timeout=600)
    if storm.returncode != 0 or line.strip() != "connected":
        bystander.kill()
        raise SystemExit(f"storm on {name} failed:\n{line}{stderr}")
    result: dict[str, float] = json.loads(stdout.strip().splitlines()[-1])
    time.sleep(1.0)  # the server finishes closing
    closed = cpu_seconds(server)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    # The server's CPU time per connection: load on the machine from others
    # stretches wall-clock figures, not this (the bystander's few echoes are
    # in it, on both servers alike).
    result["cpu_open_us"] = (connected - before) / clients * 1e6
    result["cpu_close_us"] = (closed - connected) / clients * 1e6
    # Until all were connected: how much of the time the server was running,
    # how much it was ready to but waited for its core (other load), and the
    # load generator's CPU per handshake (when it is near its wall time, the
    # client is the limit, not the server).
    result["server_busy_pct"] = (connected - before) / wall * 100
    result["server_waited_pct"] = waited / wall * 100
    result["client_cpu_us"] = client_cpu / clients * 1e6
    bystander.stdin.write(f"{result['t0']} {result['t1']}\n")
    bystander.stdin.flush()
    seen = json.loads(bystander.stdout.readline())
    bystander.wait(timeout=30)
    result["bystander_p99_us"] = seen["storm"]["p99_us"]
    result["bystander_max_us"] = seen["storm"]["max_us"]
    result["quiet_p99_us"] = seen["quiet"]["p99_us"]
    time.sleep(2)  # the servers finish closing before the next storm
    return result


def report(concurrency: int, clients: int, runs: dict[str, list[dict[str, float]]]) -> None:
    keys = (("connected_s", "all connected", "s", "{:7.2f}"),
            ("p50_ms", "handshake p50", "ms", "{:7.1f}"),
            ("p99_ms", "handshake p99", "ms", "{:7.1f}"),
            ("bystander_p99_us", "bystander p99", "µs", "{:7.0f}"),
            ("cpu_open_us", "server CPU per handshake", "µs", "{:7.0f}"),
            ("cpu_close_us", "server CPU per close", "µs", "{:7.0f}"),
            ("server_busy_pct", "server on its core", "%", "{:7.0f}"),
            ("server_waited_pct", "server waiting for its core", "%", "{:7.0f}"),
            ("client_cpu_us", "load generator CPU per handshake", "µs", "{:7.0f}"))
    for key, title, unit, form in keys:
        medians = {name: statistics.median(r[key] for r in runs[name]) for name in NAMES}
        ratio = medians["wsdaemon"] / medians["websockets"] if medians["websockets"] else 0
        spread = ", ".join(f"{name} " + "–".join(form.format(v).strip() for v in (
            min(r[key] for r in runs[name]), max(r[key] for r in runs[name])))
            for name in NAMES)
        figures = "  ".join(f"{name} {form.format(medians[name])}" for name in NAMES)
        print(f"{f'storm {clients} x {concurrency} in flight, {title}':<60} {figures} {unit:<3} "
              f"wsdaemon/websockets {ratio:5.2f}x  (lower is better; spread {spread})",
              flush=True)
    failures = {name: sum(int(r["failures"]) for r in runs[name]) for name in NAMES}
    errors: dict[str, dict[str, int]] = {name: {} for name in NAMES}
    for name in NAMES:
        for r in runs[name]:
            for kind, count in dict(r["errors"]).items():  # type: ignore[call-overload]
                errors[name][kind] = errors[name].get(kind, 0) + count
    quiet = {name: statistics.median(r["quiet_p99_us"] for r in runs[name]) for name in NAMES}
    print(f"{f'storm {clients} x {concurrency} in flight, failures':<60} "
          + "  ".join(f"{name} {failures[name]}" for name in NAMES)
          + f" of {clients} x {len(runs['wsdaemon'])} runs"
          + "".join(f"; {name}: {errors[name]}" for name in NAMES if errors[name])
          + "; bystander p99 before the storm: "
          + ", ".join(f"{name} {quiet[name]:.0f} µs" for name in NAMES), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--concurrency", default="16,64,256")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1,
                        help="wsdaemon's workers; over 1, nothing is pinned")
    parser.add_argument("--json", type=Path, default=Path("/tmp/wsdaemon-storm.json"))
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record each wsdaemon storm with py-spy (raw stacks) into DIR")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.clients + 200:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is too low for {args.clients} clients")
    pin = args.workers == 1
    print(f"machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable); "
          f"python {sys.version.split()[0]}; wsdaemon workers {args.workers}; "
          f"{'servers on core ' + SERVER_CPU + ', clients on core ' + CLIENT_CPU if pin else 'nothing pinned'}",
          flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="wsdaemon-storm-") as tmp:
        servers = Servers(Path(tmp), args.workers, pin)
        try:
            for concurrency in (int(n) for n in args.concurrency.split(",")):
                runs: dict[str, list[dict[str, float]]] = {name: [] for name in NAMES}
                for n in range(args.rounds):
                    for name in (NAMES if n % 2 == 0 else NAMES[::-1]):
                        runs[name].append(one_storm(servers, name, args.clients, concurrency,
                                                    pin, args.profile))
                report(concurrency, args.clients, runs)
                results.append({"concurrency": concurrency, "clients": args.clients,
                                "workers": args.workers, "runs": runs})
        finally:
            servers.stop()
            logged = servers.log_path.read_bytes().count(b"\n")
            print(f"wsdaemon log: {logged} lines", flush=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
