"""
A real redis-server for tests: on a free loopback port, in its own
directory, with the append-only file on (fsync always), as the README tells
users to run it; it can be stopped and started again on the same data.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.daemon import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_available() -> bool:
    return Path(REDIS_SERVER).exists()


class RedisServer:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self, *extra: str, wait: bool = True) -> None:
        """
        @param extra: more redis-server options (C{"--key-load-delay", "50"}).
        @param wait: wait until it answers PING (else only until it accepts
            connections: it may still be loading its data).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no", "--logfile", str(self.directory / "redis.log"),
             *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = self.command("PING")
            if answer == "+PONG" or (not wait and answer is not None):
                return
            time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def pause(self, seconds: float) -> None:
        """Stall every client for C{seconds} (CLIENT PAUSE), as a slow fork or script does."""
        assert self.command("CLIENT", "PAUSE", str(int(seconds * 1000))) == "+OK"

    def wait_answering(self, timeout: float) -> float:
        """
        @return: the monotonic time at which Redis answered PING again.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.command("PING") == "+PONG":
                return time.monotonic()
            time.sleep(0.02)
        raise AssertionError(f"redis-server did not answer PING within {timeout} s")

    def kill(self) -> None:
        """kill -9: no shutdown code runs (what was fsynced is all there is)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def command(self, *args: str) -> str | None:
        """
        One command with a tiny RESP writer (the first line of the answer),
        independent of the client the daemon uses.
        """
        request = f"*{len(args)}\r\n" + "".join(
            f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(request.encode())
                return s.recv(65536).decode(errors="replace").split("\r\n")[0]
        except OSError:
            return None

    def stop(self) -> None:
        """Stop as a service manager would (SIGTERM: Redis flushes the AOF)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()
