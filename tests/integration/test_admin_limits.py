"""
The admin listener bounded: a deadline for whole requests, a cap on open
connections, and only the Host names it serves (no DNS rebinding); strict
numbers and rules nested too deeply refused with 400; pushes held to the
receiving route's message limit; an Idempotency-Key cache that keeps no
bodies.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.admin_client import Admin, admin_config
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


LIMITED = """
    [route:/small]
    strategy = echo
    max_message_size = 1KiB
    max_frame_size = 1KiB

    [route:/echo]
    strategy = echo

    [route:/bot]
    strategy = scripted
    rules = bot.toml
"""


@pytest.fixture
def limited(write_config: Callable[..., Path],
            start_daemon: Callable[..., Daemon]) -> tuple[Daemon, Admin]:
    """A daemon with a 1 KiB route, a 64 KiB route and a scripted route."""
    port = free_port()
    config = write_config(admin_config(port, KEY, LIMITED))
    (config.parent / "bot.toml").write_text('[[rule]]\ntext = "ping"\nreply = "pong"\n')
    return start_daemon(config), Admin(port, KEY)


@pytest.mark.parametrize("query", [
    "since=%C2%B2", "limit=%C2%B9", "since=%D9%A3", "limit=%EF%BC%91",
    pytest.param("since=" + "9" * 5000, id="since=5000-digits"),
    "limit=10001", "since=-1", "since=+1", "since=", "limit=1e3",
])
def test_journal_numbers_are_ascii_digits(limited: tuple[Daemon, Admin], query: str) -> None:
    """A journal query's since and limit are ASCII digits (at most 19, limit
    at most 10,000): a superscript (which str.isdigit() takes and int()
    refuses), another script's digits (which int() takes), a 5,000-digit
    number (past int()'s 4,300-digit limit) are a JSON 400 naming the
    parameter, never a 500."""
    daemon, admin = limited
    status, error = admin.error("GET", f"/journal?{query}")
    assert status == 400 and f'"{query.split("=")[0]}"' in error
    assert admin.call("GET", "/journal?since=0&limit=1")["count"] >= 0
    assert "Traceback" not in daemon.log()


def _deep(levels: int) -> bytes:
    return ('[[rule]]\ntext = "ping"\nreply = "pong"\njson = ' + "{a = " * levels + "1"
            + "}" * levels + "\n").encode()


@pytest.mark.parametrize("rules", [
    pytest.param(_deep(3000), id="inline-tables"),
    pytest.param(b'[[rule]]\ntext = "ping"\nreply = "pong"\nx = ' + b"[" * 3000 + b"]" * 3000,
                 id="arrays"),
    pytest.param(b'[[rule]]\nreply = "pong"\njson = { a' + b".b" * 5000 + b" = 1 }\n",
                 id="dotted-key"),
])
def test_deep_rules_are_a_400(limited: tuple[Daemon, Admin], rules: bytes) -> None:
    """PUT /routes/rules with rules nested thousands deep is one JSON 400
    naming the line ("rules:4: nested too deeply ..."); the route keeps its
    rules and the log has no traceback."""
    daemon, admin = limited
    status, error = admin.error("PUT", "/routes/rules?route=/bot", raw=rules)
    assert status == 400 and error.startswith("rules:") and "nested too deeply" in error
    with connect(f"{daemon.url}/bot?client_id=c") as bot:
        bot.send("ping")
        assert bot.recv(timeout=5) == "pong"
    assert "Traceback" not in daemon.log()


def test_a_push_honours_the_receiving_route_limit(limited: tuple[Daemon, Admin]) -> None:
    """50,000 bytes to a 1 KiB route (by route or by session) are refused with
    413 naming the limit, and not sent; to a client connected to both
    routes, only the 64 KiB one gets it and the other is counted as failed,
    stays open and still echoes. At the limit a push goes through; an admin
    send to one connection is held to it too."""
    daemon, admin = limited
    big = "x" * 50_000
    with connect(f"{daemon.url}/small?client_id=c1", max_size=None) as small, \
            connect(f"{daemon.url}/echo?client_id=c1", max_size=None) as echo:
        session = admin.call("GET", "/routes/connections?route=/small")["connections"][0][
            "session_id"]
        for target in ({"route": "/small"}, {"session": session}):
            status, error = admin.error("POST", "/push", {**target, "text": big})
            assert status == 413 and "50000 bytes" in error and "1024" in error, error
        status, error = admin.error("POST", "/connections/send", {"session": session,
                                                                   "text": big})
        assert status == 413 and "1024" in error, error
        answer = admin.call("POST", "/push", {"client": "c1", "text": big})
        assert (answer["delivered"], answer["failed"]) == (1, 1)
        assert echo.recv(timeout=5) == big
        answer = admin.call("POST", "/push", {"all": True, "base64": base64.b64encode(
            b"\x00" * 1024).decode()})
        assert (answer["delivered"], answer["failed"]) == (2, 0)
        assert small.recv(timeout=5) == b"\x00" * 1024  # nothing bigger came before it
        assert echo.recv(timeout=5) == b"\x00" * 1024
        small.send("still open")
        assert small.recv(timeout=5) == "still open"
    metrics = admin.call_text("GET", "/metrics")
    assert 'wsdaemon_push_calls_total{outcome="too_big",target="route"} 1.0' in metrics
    assert "Traceback" not in daemon.log()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_idempotency_keys_keep_no_bodies(limited: tuple[Daemon, Admin]) -> None:
    """150 one-MB pushes with distinct Idempotency-Keys leave the daemon's
    memory where it was (each body was kept: +150 MB); a retry still gets
    the first answer, another body under the same key 409."""
    daemon, admin = limited
    port = int(admin.base.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def push(key: str, text: str) -> tuple[int, dict[str, object]]:
        body = json.dumps({"client": "nobody", "text": text}).encode()
        connection.request("POST", "/push", body, {"Authorization": f"Bearer {KEY}",
                                                     "Idempotency-Key": key})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())

    big = "m" * 1_000_000
    for number in range(10):  # the allocator's own arenas, once
        push(f"warm-{number}", big)
    before = _rss(daemon.process.pid)
    for number in range(150):
        status, answer = push(f"order-{number}", big)
        assert status == 200 and answer["delivered"] == 0
    grown = _rss(daemon.process.pid) - before
    assert grown < 30 * 1024 * 1024, f"grew {grown / 1048576:.0f} MiB"
    status, again = push("order-3", big)
    assert status == 200 and again["replayed"] is True
    assert again["target"] == {"kind": "client", "value": "nobody"}
    assert push("order-3", big[:-1] + "n")[0] == 409
    connection.close()
