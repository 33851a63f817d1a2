"""
C{wsdaemon-mock}: the C{wsmock} fixture's server for a test suite in any
language (JUnit, Jest, Go's testing, a shell script).

    wsdaemon-mock [--rules rules.toml] [--format json|env] [--no-tls]

It starts one wsdaemon on free loopback ports, sets the rules, and once
everything listens prints one JSON line (or C{--format env}: C{NAME=value}
lines a shell can source) with the mock's URLs, the admin API's URL and
its key (fresh for this run), and the throwaway CA's certificate for
C{wss://}. The test drives the mock through the admin API (rules, journal,
faults) and stops it with SIGTERM or SIGINT (Ctrl-C); the daemon, its
files and its CA go with it. Killed otherwise (SIGKILL, a crash), it takes
the daemon with it on Linux (its files stay in the temporary directory).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from wsdaemon.mock.server import MockServer

__all__ = ["announcement", "main"]


def announcement(server: MockServer) -> dict[str, str]:
    """
    @return: what a test needs to talk to the mock.
    """
    found = {
        "url": f"ws://127.0.0.1:{server.port}/mock",
        "echo_url": f"ws://127.0.0.1:{server.port}/echo",
        "admin_url": f"http://127.0.0.1:{server.admin_port}",
        "key": server.key,
    }
    if server.authority is not None:
        found.update(tls_url=f"wss://127.0.0.1:{server.tls_port}/mock",
                     tls_echo_url=f"wss://127.0.0.1:{server.tls_port}/echo",
                     ca=str(server.authority.ca_path))
    return found


def _format(found: dict[str, str], form: str) -> str:
    if form == "json":
        return json.dumps(found) + "\n"
    return "".join(f"WSMOCK_{name.upper()}={shlex.quote(value)}\n"
                   for name, value in found.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wsdaemon-mock",
        description="Run the WebSocket mock (one wsdaemon on free loopback ports) for a test "
                    "suite in any language: prints its URLs, admin API and key once it "
                    "listens, runs until SIGTERM or SIGINT.")
    parser.add_argument("--rules", type=Path, help="the /mock route's rules (TOML, the "
                        "scripted strategy's format; default: answer nothing)")
    parser.add_argument("--format", choices=("json", "env"), default="json",
                        help="one JSON line (default), or NAME=value lines for a shell")
    parser.add_argument("--no-tls", action="store_true",
                        help="no wss:// listener and no throwaway CA")
    args = parser.parse_args(argv)
    rules = None
    if args.rules is not None:
        try:
            rules = args.rules.read_bytes()
        except OSError as e:
            parser.error(f"--rules: {args.rules}: {e.strerror or e}")
    stopping: list[int] = []

    def stop(number: int, frame: FrameType | None) -> None:
        stopping.append(number)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    directory = Path(tempfile.mkdtemp(prefix="wsmock-"))
    try:
        server = MockServer(directory, None if args.no_tls else datetime.now(UTC), tied=True)
    except RuntimeError as e:
        shutil.rmtree(directory, ignore_errors=True)
        print(f"wsdaemon-mock: {e}", file=sys.stderr)
        return 1
    try:
        return _serve(server, rules, args, stopping)
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _serve(server: MockServer, rules: bytes | None, args: argparse.Namespace,
           stopping: list[int]) -> int:
    if rules is not None:
        try:
            server.call("PUT", "/routes/rules?route=/mock", raw=rules)
        except AssertionError as e:
            print(f"wsdaemon-mock: {args.rules}: {e}", file=sys.stderr)
            return 1
    sys.stdout.write(_format(announcement(server), args.format))
    sys.stdout.flush()
    while not stopping:
        if server.process.poll() is not None:
            print(f"wsdaemon-mock: wsdaemon exited with {server.process.returncode}:\n"
                  f"{server.log()}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    return 0
