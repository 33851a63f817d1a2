"""
CPU time per WebSocket handshake and per close, in one process: the daemon
built from the shipped config (etc/ copied, as bench/storm.py runs it: the
identity cookie, the allowed origins, every connection logged to a file
through Twisted's text observer, as twistd writes it) and served real
sockets (loopback TCP, on the real epoll reactor, turned by hand), a storm
in batches of --in-flight handshakes, all held open, then all closed
(the least of --repeat such storms per run). No
load generator: the process's CPU time is the daemon's (and the client
ends' connect, send and recv calls, the same for every tree), so it stays
comparable on a shared machine. For this tree and, with --against REV, the
tree at git revision REV (or in a directory), in alternating child processes. Lower is better.

    python bench/cpu_handshake.py --against HEAD~3 --runs 3
    python bench/cpu_handshake.py --profile /tmp/hs.prof   # cProfile of one run, this tree
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = r"""
import base64, gc, json, os, socket, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, "bench")
from storm import shipped_config
from twisted.internet import epollreactor
epollreactor.install()
from twisted.internet import reactor, tcp
from twisted.internet.address import IPv4Address
from twisted.logger import globalLogBeginner, textFileLogObserver
from wsdaemon.tap import Options, makeService

clients, in_flight, repeat, profile = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                       sys.argv[4])
directory = Path(tempfile.mkdtemp(prefix="wsdaemon-cpu-hs-"))
config = shipped_config(directory, 1, 2, 1)
os.chdir(directory)
log = open(directory / "wsdaemon.log", "a")
globalLogBeginner.beginLoggingTo([textFileLogObserver(log)], redirectStandardIO=False)
options = Options()
options.parseOptions(["--config", str(config)])
service = makeService(options)
site = service.site


class Port:
    _realPortNumber = 8080


port = Port()
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(4096)
origin = "http://127.0.0.1:8080"


def request() -> bytes:
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    return ("GET /echo HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\n"
            "Sec-WebSocket-Version: 13\r\nOrigin: " + origin + "\r\n"
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0\r\n\r\n").encode()


def turn() -> None:
    reactor.runUntilCurrent()
    reactor.doIteration(0)


def storm(n: int) -> tuple[float, float, int]:
    held = []
    transports = []
    opened = 0
    requests = [request() for _ in range(n)]
    start = time.process_time()
    for first in range(0, n, in_flight):
        batch = []
        for i in range(first, min(n, first + in_flight)):
            theirs = socket.socket()
            theirs.setblocking(False)
            theirs.connect_ex(listener.getsockname())
            ours, _ = listener.accept()
            ours.setblocking(False)
            channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 10000 + i % 50000))
            transport = tcp.Server(ours, channel, ("127.0.0.1", 10000 + i), port, i, reactor)
            channel.makeConnection(transport)
            transports.append(transport)
            theirs.send(requests[i])
            batch.append(theirs)
        waiting = batch
        while waiting:
            turn()
            still = []
            for theirs in waiting:
                try:
                    answer = theirs.recv(4096)
                except BlockingIOError:
                    still.append(theirs)
                    continue
                opened += answer.startswith(b"HTTP/1.1 101")
                held.append(theirs)
            waiting = still
    opening = time.process_time() - start
    start = time.process_time()
    for theirs in held:
        theirs.close()
    for _ in range(1000):
        turn()
        if all(transport.disconnected for transport in transports):
            break
    closing = time.process_time() - start
    return opening, closing, opened


storm(200)  # warm up
gc.collect()
if profile:
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
    opening, closing, opened = storm(clients)
    profiler.disable()
    profiler.dump_stats(profile)
else:
    # The least of a few storms: other load on a shared machine only ever
    # adds to CPU time (cache and core contention).
    runs = [storm(clients) for _ in range(repeat)]
    opening = min(run[0] for run in runs)
    closing = min(run[1] for run in runs)
    opened = min(run[2] for run in runs)
lines = (directory / "wsdaemon.log").read_bytes().count(b"\n")
print(json.dumps({"open_us": opening / clients * 1e6, "close_us": closing / clients * 1e6,
                  "opened": opened, "log_lines": lines}))
"""


def measure(tree: Path, clients: int, in_flight: int, repeat: int = 1,
            profile: str = "") -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(tree / "src")]))
    result = subprocess.run([sys.executable, "-c", _CHILD, str(clients), str(in_flight),
                             str(repeat), profile],
                            cwd=tree, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{tree}: {result.stderr}")
    value: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    if value["opened"] != clients:
        raise SystemExit(f"{tree}: {value['opened']} of {clients} handshakes answered 101")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", metavar="REV",
                        help="also measure the tree at git revision REV (or in directory REV)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2000, help="per storm")
    parser.add_argument("--repeat", type=int, default=5,
                        help="storms per run (a run reports its least CPU per handshake)")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--profile", metavar="FILE", help="cProfile one run of this tree")
    args = parser.parse_args()
    if args.profile:
        print(measure(HERE.parent, args.clients, args.in_flight, 1, args.profile))
        return
    trees = {"this tree": HERE.parent}
    if args.against:
        before = Path(tempfile.mkdtemp(prefix="wsdaemon-before-"))
        if Path(args.against).is_dir():  # a tree already checked out
            shutil.copytree(args.against, before, dirs_exist_ok=True)
        else:
            archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", args.against],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        # The same bench (and storm.py's config) on both trees.
        for name in ("cpu_handshake.py", "storm.py"):
            (before / "bench" / name).write_bytes((HERE / name).read_bytes())
        trees[args.against] = before
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, tree in trees.items():
            samples[name].append(measure(tree, args.clients, args.in_flight, args.repeat))
    for key, what in (("open_us", "handshake"), ("close_us", "close")):
        best = {name: min(run[key] for run in runs) for name, runs in samples.items()}
        line = "  ".join(f"{name} {value:6.1f} µs" for name, value in best.items())
        ratio = (f"  ratio {best['this tree'] / best[args.against]:.2f}x"
                 if args.against else "")
        print(f"CPU per {what:<9} ({args.clients} x {args.in_flight} in flight) {line}{ratio}  "
              f"(lower is better; best of {args.runs} runs x {args.repeat} storms)", flush=True)


if __name__ == "__main__":
    main()
