"""
Starting the real daemon (`twistd -n wsdaemon`) as a subprocess for tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def copy_shipped_etc(destination: Path) -> Path:
    """
    Copy etc/ to C{destination}, moving the admin listener to a free port.

    @return: the copied wsdaemon.ini.
    """
    shutil.copytree(REPO / "etc", destination)
    config = destination / "wsdaemon.ini"
    text = config.read_text()
    shipped = "listen = tcp:8081:interface=127.0.0.1"
    assert shipped in text
    config.write_text(text.replace(shipped, f"listen = tcp:{free_port()}:interface=127.0.0.1"))
    return config


def twistd_command(*args: str, runner: str = "twistd") -> list[str]:
    """The command line of the installed twistd (or twist) for this Python."""
    exe = shutil.which(runner, path=str(Path(sys.executable).parent)) or shutil.which(runner)
    assert exe, f"{runner} not found next to {sys.executable} or on PATH"
    if runner == "twistd":
        return [exe, "-n", "--pidfile=", "wsdaemon", *args]
    return [exe, "wsdaemon", *args]


def run_cli(
    *args: str, runner: str = "twistd", cwd: Path | None = None,
    env: dict[str, str] | None = None, timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        twistd_command(*args, runner=runner), capture_output=True, text=True,
        timeout=timeout, cwd=cwd or REPO, env=env,
    )


class Daemon:
    """
    A running daemon on a free loopback port; C{log()} returns its output.
    """

    def __init__(self, config: Path, *, runner: str = "twistd", extra_args: Sequence[str] = (),
                 env: dict[str, str] | None = None, cwd: Path | None = None,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.port}"
        self._logfile = Path(tempfile.mkdtemp(prefix="wsdaemon-test-")) / "daemon.log"
        self._out = open(self._logfile, "wb")  # noqa: SIM115 - closed in stop()
        command = twistd_command(
            "--config", str(config), "--listen", f"tcp:{self.port}:interface=127.0.0.1",
            *extra_args, runner=runner,
        )
        full_env = dict(os.environ if env is None else env)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self.process = subprocess.Popen(
            command, stdout=self._out, stderr=subprocess.STDOUT, cwd=cwd or config.parent,
            env=full_env,
        )
        self._wait_listening()

    def _wait_listening(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            # Ours, not another test's daemon that took the port first (tests
            # running in parallel): ours says so, or exits on the bind error.
            if any(f"listening on tcp:{self.port}:" in line  # text, or twist's JSON:
                   or ('"listening on {endpoint}"' in line
                       and f'"endpoint": "tcp:{self.port}:' in line)
                   for line in self.log().splitlines()):
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"daemon did not listen within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self._logfile.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 5) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the daemon's log:\n{self.log()}")

    def kill(self) -> None:
        """Kill -9: no shutdown code runs."""
        self.process.kill()
        self.process.wait()
        self._out.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._out.closed:
            self._out.close()
        return self.process.returncode
