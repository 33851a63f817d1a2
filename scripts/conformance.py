#!/usr/bin/env python3
"""
Run the Autobahn|Testsuite fuzzing client against a real wsdaemon.

    python scripts/conformance.py                 # cases 1-10 (about 30 s)
    python scripts/conformance.py --cases all     # 1-10, then 12-13 with compression (~11 min)
    python scripts/conformance.py --cases 12-13

Starts `twistd -n wsdaemon` with tests/conformance/wsdaemon.ini on a free
loopback port, runs `wstest -m fuzzingclient` (installed by
scripts/install-wstest.sh), writes the HTML report under --report, prints one
summary line per run and exits 0 if no case FAILED, 1 if any did, 2 if the
suite could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "tests" / "conformance" / "wsdaemon.ini"
WSTEST_HOME = Path(os.environ.get("WSTEST_HOME", "/opt/wsdaemon-wstest"))
WSTEST = WSTEST_HOME / "venv" / "bin" / "wstest"
WSTEST_LIBS = WSTEST_HOME / "python2.7" / "usr" / "lib" / "x86_64-linux-gnu"

#: --cases value -> [(route, case patterns)]
RUNS = {
    "1-10": [("/echo", [f"{n}.*" for n in range(1, 11)])],
    "12-13": [("/echo-deflate", ["12.*", "13.*"])],
}
RUNS["all"] = RUNS["1-10"] + RUNS["12-13"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_daemon(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or "twistd"
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the daemon
    process = subprocess.Popen(
        [twistd, "-n", "--pidfile=", "wsdaemon", "--config", str(CONFIG),
         "--listen", f"tcp:{port}:interface=127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"wsdaemon exited with {process.returncode}; see {log_path}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"wsdaemon did not listen within 20 s; see {log_path}")


def run_suite(url: str, cases: list[str], outdir: Path) -> dict[str, dict[str, str]]:
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "index.json").unlink(missing_ok=True)
    spec = {
        # Report a dropped connection as a failure, not as "closed".
        "options": {"failByDrop": False},
        "outdir": str(outdir),
        "servers": [{"agent": "wsdaemon", "url": url, "options": {"version": 18}}],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    spec_path = outdir / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    env = dict(os.environ, LD_LIBRARY_PATH=str(WSTEST_LIBS))
    with open(outdir / "wstest.log", "wb") as log:
        result = subprocess.run([str(WSTEST), "-m", "fuzzingclient", "-s", str(spec_path)],
                                cwd=outdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    index = outdir / "index.json"
    if result.returncode != 0 or not index.exists():
        raise SystemExit(f"wstest failed ({result.returncode}); see {outdir / 'wstest.log'}")
    results: dict[str, dict[str, str]] = json.loads(index.read_text()).get("wsdaemon", {})
    return results


def summarise(route: str, results: dict[str, dict[str, str]], seconds: float) -> list[str]:
    def count(value: str) -> int:
        return sum(1 for r in results.values() if r.get("behavior") == value)

    failed = sorted(
        (case for case, r in results.items()
         if r.get("behavior") == "FAILED" or r.get("behaviorClose") == "FAILED"),
        key=lambda case: [int(part) for part in case.split(".")],
    )
    print(f"{route}: cases={len(results)} ok={count('OK')} non_strict={count('NON-STRICT')} "
          f"informational={count('INFORMATIONAL')} unimplemented={count('UNIMPLEMENTED')} "
          f"failed={len(failed)} seconds={seconds:.0f}")
    if failed:
        print(f"{route}: FAILED cases: {' '.join(failed)}")
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", choices=sorted(RUNS), default="1-10")
    parser.add_argument("--report", type=Path, default=REPO / "reports" / "conformance")
    args = parser.parse_args()
    if not WSTEST.exists():
        print(f"wstest not found at {WSTEST}; run scripts/install-wstest.sh", file=sys.stderr)
        return 2
    args.report.mkdir(parents=True, exist_ok=True)
    port = free_port()
    daemon = start_daemon(port, args.report / "wsdaemon.log")
    failed: list[str] = []
    try:
        for route, cases in RUNS[args.cases]:
            started = time.monotonic()
            outdir = args.report / route.strip("/")
            results = run_suite(f"ws://127.0.0.1:{port}{route}", cases, outdir)
            if not results:
                print(f"{route}: no case ran; see {outdir / 'wstest.log'}", file=sys.stderr)
                return 2
            failed += summarise(route, results, time.monotonic() - started)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
    print(f"report: {args.report}/*/index.html")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
