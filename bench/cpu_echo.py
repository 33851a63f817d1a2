"""
CPU time per echoed message, in memory: the route protocol fed whole masked
frames from a buffer and replying into an in-memory transport (no sockets,
no load generator), for this tree and, with --against REV, for the tree at
git revision REV, in alternating child processes.

It measures the frame path alone (parse, unmask, decode, dispatch, frame the
reply), in the process's own CPU time, so it stays comparable on a shared
machine where throughput benches swing. Lower is better.

    python bench/cpu_echo.py --against HEAD~5 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = r"""
import json, time
from dataclasses import replace
from tests import wsframes as ws
from tests.unit.test_protocol import SETTINGS, Client, ProgrammableStrategy, echo, make_factory
from wsdaemon.connections import accel
accel.install()
try:
    from wsdaemon.connections import frames
    frames.enable()
except (ImportError, AttributeError):
    pass
big = replace(SETTINGS, max_message_size=1 << 20, max_frame_size=1 << 20)
out = {}
for size, kind, name in ((64, ws.BINARY, "64 B binary"), (16384, ws.BINARY, "16 KiB binary"),
                         (16384, ws.TEXT, "16 KiB text")):
    client = Client(make_factory(ProgrammableStrategy(echo), big))
    batch = ws.client_frame(kind, b"a" * size) * 20
    n = 3000 if size > 1000 else 20000
    best = None
    for _ in range(5):
        start = time.process_time()
        for _ in range(n // 20):
            client.protocol.dataReceived(batch)
            client.transport.clear()
        per = (time.process_time() - start) / n * 1e6
        best = per if best is None else min(best, per)
    out[name] = best
print(json.dumps(out))
"""


def measure(tree: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(tree / "src")]))
    result = subprocess.run([sys.executable, "-c", _CHILD], cwd=tree, env=env,
                            capture_output=True, text=True, check=True)
    value: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", metavar="REV", help="also measure the tree at REV")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    trees = {"this tree": HERE.parent}
    if args.against:
        before = Path(tempfile.mkdtemp(prefix="wsdaemon-before-"))
        archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", args.against],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        trees[args.against] = before
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, tree in trees.items():
            samples[name].append(measure(tree))
    for case in samples["this tree"][0]:
        best = {name: min(run[case] for run in runs) for name, runs in samples.items()}
        line = "  ".join(f"{name} {value:6.2f} µs" for name, value in best.items())
        ratio = (f"  ratio {best['this tree'] / best[args.against]:.2f}x"
                 if args.against else "")
        print(f"CPU per echoed message, {case:<14} {line}{ratio}  (lower is better; "
              f"best of {args.runs} runs x 5)", flush=True)


if __name__ == "__main__":
    main()
