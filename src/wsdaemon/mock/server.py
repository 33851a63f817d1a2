"""
The mock server behind the C{wsmock} fixture and the C{wsdaemon-mock}
command: one real wsdaemon process on free loopback ports, C{/mock}
(scripted, its rules set through the admin API) and C{/echo}, served both
as C{ws://} and as C{wss://} (with a throwaway CA, L{wsdaemon.mock.ca}),
with its admin API on a port of its own and a fresh key.

No pytest here: a test suite in any language can run it (L{command}).
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from wsdaemon.mock.ca import TestAuthority, make_authority

__all__ = ["SILENT", "START_ATTEMPTS", "TIMEOUT", "MockServer"]

#: prctl's option: the signal a process gets when its parent ends.
_PR_SET_PDEATHSIG = 1

#: Rules that answer nothing (a rules file must have a rule).
SILENT = "[[rule]]\nbinary = true\n"
#: How long waits and the daemon's start may take, in seconds.
TIMEOUT = 10.0
#: Starts on fresh ports when another process took one first.
START_ATTEMPTS = 3


def _terminate_with_parent() -> None:
    """
    In the child, before it runs the daemon: ask Linux for SIGTERM when the
    parent's thread ends (C{PR_SET_PDEATHSIG}); elsewhere, nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _escape(path: Path) -> str:
    """
    A path as an endpoint string's value (colons and backslashes escaped).
    """
    return str(path).replace("\\", "\\\\").replace(":", "\\:")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class MockServer:
    """
    One wsdaemon process: C{/mock} (scripted, rules set per test) and
    C{/echo}, on a C{ws://} port and a C{wss://} one, with the admin API on
    a port of its own.

    Its ports are found free, then bound by the daemon: another process may
    take one in between. The daemon is only talked to once its own log says
    it listens on each (another server answering there, even C{/healthz}
    "ready", is never asked anything, nor given the key); one that could
    not bind is started again on other ports (L{START_ATTEMPTS} in all).

    @param now: when the throwaway CA's certificates start (None: no TLS
        listener, no CA).
    @param tied: on Linux, the daemon is sent SIGTERM when the thread that
        started it ends, however it ends (even killed): for a process whose
        main thread lives as long as the mock should (C{wsdaemon-mock}).
    """

    def __init__(self, directory: Path, now: datetime | None = None,
                 tied: bool = False) -> None:
        self.directory = directory
        self._tied = tied
        self.key = secrets.token_hex(16)
        self.authority: TestAuthority | None = (
            None if now is None else make_authority(directory, now))
        self.tls_port: int | None = None
        self.log_path = directory / "wsdaemon.log"
        (directory / "mock.toml").write_text(SILENT, encoding="utf-8")
        for attempt in range(1, START_ATTEMPTS + 1):
            self._start()
            if self._wait_listening():
                return
            self._log.close()
            if attempt == START_ATTEMPTS:
                raise RuntimeError(f"wsdaemon found its ports taken by other processes "
                                   f"{START_ATTEMPTS} times in a row; the last time:\n"
                                   f"{self.log()}")

    def _start(self) -> None:
        self.port = _free_port()
        self.admin_port = _free_port()
        listen = f"tcp:{self.port}:interface=127.0.0.1"
        if self.authority is not None:
            self.tls_port = _free_port()
            listen += (f"\n    ssl:{self.tls_port}:interface=127.0.0.1"
                       f":privateKey={_escape(self.authority.key_path)}"
                       f":certKey={_escape(self.authority.cert_path)}")
        config = self.directory / "wsdaemon.ini"
        config.write_text(textwrap.dedent("""\
            [wsdaemon]
            listen = {listen}
            demo_page = no

            [protocol]
            identity = claimed
            allowed_origins = *
            max_message_rate = 0
            max_message_size = 16MiB
            max_frame_size = 16MiB
            auto_ping_interval = 0
            journal_entries = 100000
            journal_max_bytes = 64MiB

            [admin]
            listen = tcp:{admin_port}:interface=127.0.0.1
            api_keys = pytest:{key}
            max_body = 16MiB

            [route:/mock]
            strategy = scripted
            rules = mock.toml

            [route:/echo]
            strategy = echo
            """).format(listen=listen, admin_port=self.admin_port, key=self.key),
            encoding="utf-8")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "twisted", "--log-format=text", "wsdaemon",
             "--config", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self.directory,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            preexec_fn=_terminate_with_parent if self._tied else None)

    def _wait_listening(self) -> bool:
        """
        Wait until the daemon's own log says it listens on each of its ports
        and is ready.

        @return: True then; False if it exited because a port was taken.
        @raise RuntimeError: if it exited otherwise, or took too long.
        """
        signs = [f"] listening on tcp:{self.port}:", f"] admin API listening on "
                 f"tcp:{self.admin_port}:", "] ready\n"]
        if self.tls_port is not None:
            signs.append(f"] listening on ssl:{self.tls_port}:")
        deadline = time.monotonic() + TIMEOUT * 3
        while time.monotonic() < deadline:
            exited = self.process.poll() is not None
            log = self.log()
            if all(sign in log for sign in signs):
                return True
            if exited:
                if "Address already in use" in log:
                    return False
                raise RuntimeError(f"wsdaemon exited with {self.process.returncode}:\n{log}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"wsdaemon was not ready within {TIMEOUT * 3:g} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        """
        One admin API call.

        @raise AssertionError: for an error answer, with the daemon's reason.
        """
        data = raw if raw is not None else (
            None if body is None else json.dumps(body).encode("utf-8"))
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_port}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {self.key}"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as e:
            try:
                why = json.loads(e.read()).get("error", "")
            except ValueError:
                why = ""
            raise AssertionError(f"wsdaemon refused {method} {path}: {e.code} {why}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
