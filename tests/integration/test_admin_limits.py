"""
The admin listener bounded: a deadline for whole requests, a cap on open
connections, and only the Host names it serves (no DNS rebinding).
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon import Daemon, free_port

pytestmark = pytest.mark.slow

KEY = "ops-key-0123456789abcdef"


@pytest.fixture
def admin(write_config: Callable[..., Path],
          start_daemon: Callable[..., Daemon]) -> tuple[Daemon, int]:
    port = free_port()
    daemon = start_daemon(write_config(f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1

        [admin]
        listen = tcp:{port}:interface=127.0.0.1
        api_keys = ops:{KEY}
        request_timeout = 1
        max_connections = 5
        allowed_hosts = wsdaemon.internal

        [route:/echo]
        strategy = echo
    """))
    return daemon, port


def get(port: int, host: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/healthz", headers={"Host": host})
    status = connection.getresponse().status
    connection.close()
    return status


def test_only_its_host_names_are_answered(admin: tuple[Daemon, int]) -> None:
    """Loopback names, the listen address and allowed_hosts are answered; any
    other Host (a rebinding attacker's domain) gets 421; a request without a
    Host (HTTP/1.0 health checks) is answered."""
    _, port = admin
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]", "wsdaemon.internal",
                 f"WSDAEMON.internal:{port}"):
        assert get(port, host) == 200, host
    for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.evil.com"):
        assert get(port, host) == 421, host
    # Without any Host (an HTTP/1.0 health check, never a browser): answered.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as check:
        check.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert check.recv(100).startswith(b"HTTP/1.0 200")


def test_a_request_must_arrive_whole_in_time(admin: tuple[Daemon, int]) -> None:
    """A POST whose body trickles in is cut off at request_timeout (1 s here),
    however steadily the bytes come."""
    _, port = admin
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(b"POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\n\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 5:
            try:
                slow.sendall(b"x")
                time.sleep(0.2)
            except OSError:
                closed = True
                break
        if not closed:
            slow.settimeout(1)
            closed = slow.recv(100) == b""
        assert closed and time.monotonic() - started < 4


def test_open_connections_are_capped(admin: tuple[Daemon, int]) -> None:
    """Past max_connections (5 here) a new connection is closed at once; the
    others are unaffected, and room frees when one closes."""
    daemon, port = admin
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            try:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                answer = extra.recv(100)
            except ConnectionResetError:
                answer = b""
            assert answer == b""
        daemon.wait_for_log("max_connections")
    finally:
        for connection in idle:
            connection.close()
    time.sleep(0.3)
    assert get(port, "localhost") == 200
