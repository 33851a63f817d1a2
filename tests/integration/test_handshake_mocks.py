"""
Handshake-aware mocks on the real daemon, through the independent
`websockets` client: several paths on one route, path placeholders in
replies, header and subprotocol conditions, the journal's handshake
entries (find/count), and each handshake fault as a client sees it:
reset, never answered, answered late.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.sync.client import connect

from tests.admin_client import Admin, admin_config
from tests.daemon import Daemon, free_port

pytestmark = pytest.mark.slow

KEY = "handshake-mocks-key-0123456789"
RULES = """
[handshake]
paths = ["/", "/rooms/{room}", "/users/{user}/feed"]
subprotocols = ["chat.v2", "chat.v1"]

[[greeting]]
text = "welcome to room {path.room}"
when = { path = "/rooms/{room}" }

[[rule]]
text = "who"
when = { headers = { X-User = { regex = '^a' } }, subprotocol = "chat.v2" }
reply = "{headers.x-user} in {path.room} speaking v2, token {query.token}"

[[rule]]
text = "who"
reply = "someone on {path} ({subprotocol})"

[[rule]]
when.path = "/users/{user}/feed"
reply = "feed of {path.user}: {message}"
"""


@pytest.fixture
def mock(write_config: Callable[..., Path],
         start_daemon: Callable[..., Daemon]) -> tuple[Daemon, Admin]:
    port = free_port()
    path = write_config(admin_config(port, KEY, """
        [route:/mock]
        strategy = scripted
        rules = mock.toml
    """))
    (path.parent / "mock.toml").write_text(RULES)
    return start_daemon(path), Admin(port, KEY)


def test_several_paths_placeholders_headers_and_subprotocols(
        mock: tuple[Daemon, Admin]) -> None:
    """One route serves its own path and two patterns (another path: 404);
    the room's greeting and replies are filled from the path, a header and
    the query; the header rule needs chat.v2 offered; {subprotocol} is the
    one the connection was accepted with (empty for none)."""
    daemon, _ = mock
    with connect(f"{daemon.url}/mock/rooms/42?token=t-1",
                 additional_headers={"X-User": "ann"},
                 subprotocols=["chat.v2"]) as ann:  # type: ignore[list-item]
        assert ann.subprotocol == "chat.v2"
        assert ann.recv(timeout=5) == "welcome to room 42"
        ann.send("who")
        assert ann.recv(timeout=5) == "ann in 42 speaking v2, token t-1"
    with connect(f"{daemon.url}/mock/rooms/7", additional_headers={"X-User": "ann"},
                 subprotocols=["chat.v1"]) as v1:  # type: ignore[list-item]
        assert v1.recv(timeout=5) == "welcome to room 7"
        v1.send("who")
        assert v1.recv(timeout=5) == "someone on /mock/rooms/7 (chat.v1)"
    with connect(f"{daemon.url}/mock/users/bob/feed") as feed:
        feed.send("more")
        assert feed.recv(timeout=5) == "feed of bob: more"
    with connect(f"{daemon.url}/mock") as plain:
        plain.send("who")
        assert plain.recv(timeout=5) == "someone on /mock ()"
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{daemon.url}/mock/lobby")
    assert refused.value.response.status_code == 404


def test_the_journal_finds_and_counts_handshakes(mock: tuple[Daemon, Admin]) -> None:
    """Each handshake is journalled (path, query, headers; the token and
    Authorization masked); find and count match on path, query and header
    values with the json matcher."""
    daemon, admin = mock
    since = admin.call("GET", "/journal?limit=0")["last"]
    for room in ("1", "2", "2"):
        with connect(f"{daemon.url}/mock/rooms/{room}?token=s3cret&page=3",
                     additional_headers={"Authorization": "Bearer abc", "X-User": "ann"}) as c:
            c.recv(timeout=5)
    found = admin.call("POST", "/journal/find", {
        "since": since, "direction": "handshake",
        "match": {"json": {"path": "/mock/rooms/2", "query": {"page": "3"},
                           "headers": {"x-user": "ann"}}}})
    assert found["count"] == 2
    entry = found["entries"][0]
    assert entry["query"] == {"token": "***", "page": "3"}
    assert entry["headers"]["authorization"] == "Bearer ***"
    assert entry["method"] == "GET" and entry["fault"] is None
    opened = admin.call("POST", "/journal/find", {"since": since, "direction": "open",
                                                  "session": entry["session"]})
    assert opened["count"] == 1  # the handshake's session is its connection's
    counted = admin.call("POST", "/journal/count", {
        "since": since, "match": {"json": {"headers": {"x-user": "ann"}}}})
    assert counted["count"] == 3
    everything = admin.call("GET", f"/journal?since={since}")
    assert "s3cret" not in str(everything) and "Bearer abc" not in str(everything)


def raw_handshake(daemon: Daemon, path: str = "/mock") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    return sock


def test_reset_next_resets_the_connection(mock: tuple[Daemon, Admin]) -> None:
    """POST /routes/handshake reset_next: the client's socket is reset
    (ECONNRESET, no HTTP answer; websockets: no valid HTTP response); the
    next handshake is answered."""
    daemon, admin = mock
    admin.call("POST", "/routes/handshake?route=/mock", {"reset_next": 2})
    with raw_handshake(daemon) as sock, pytest.raises(ConnectionResetError):
        sock.recv(1024)
    with pytest.raises(InvalidMessage):
        connect(f"{daemon.url}/mock")
    with connect(f"{daemon.url}/mock") as client:
        client.send("who")
        assert client.recv(timeout=5) == "someone on /mock ()"
    faults = admin.call("POST", "/journal/find", {"direction": "handshake"})["entries"]
    assert [e["fault"] for e in faults][-3:] == ["reset", "reset", None]


def test_hang_next_is_never_answered(mock: tuple[Daemon, Admin]) -> None:
    """[handshake] hang_next at run time: the client's open times out (its
    own timeout, past the daemon's open_handshake_timeout of 5 s); the
    daemon shows it held until the client leaves."""
    daemon, admin = mock
    admin.call("POST", "/routes/handshake?route=/mock", {"hang_next": 1})
    with raw_handshake(daemon) as sock:
        sock.settimeout(6)
        with pytest.raises(TimeoutError):
            sock.recv(1024)  # not even the daemon's own handshake timeout answers
        plan = admin.call("GET", "/routes/handshake?route=/mock")["handshake"]
        assert plan["held"] == 1 and plan["hangs_left"] == 0
    deadline = time.monotonic() + 5
    while admin.call("GET", "/routes/handshake?route=/mock")["handshake"]["held"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(TimeoutError):  # websockets' view, when its timeout is short
        admin.call("POST", "/routes/handshake?route=/mock", {"hang_next": 1})
        connect(f"{daemon.url}/mock", open_timeout=0.5)


def test_delay_answers_late(mock: tuple[Daemon, Admin]) -> None:
    """delay = 1: handshakes, accepted or refused, are answered about a
    second late; 0 answers at once again; bad values are refused (400)."""
    daemon, admin = mock
    admin.call("POST", "/routes/handshake?route=/mock", {"delay": 1})
    started = time.monotonic()
    with connect(f"{daemon.url}/mock", open_timeout=5):
        assert time.monotonic() - started >= 0.9
    admin.call("POST", "/routes/handshake?route=/mock", {"refuse_next": 1})
    started = time.monotonic()
    with pytest.raises(InvalidStatus):
        connect(f"{daemon.url}/mock", open_timeout=5)
    assert time.monotonic() - started >= 0.9
    admin.call("POST", "/routes/handshake?route=/mock", {"delay": 0})
    started = time.monotonic()
    with connect(f"{daemon.url}/mock"):
        assert time.monotonic() - started < 0.9
    assert admin.error("POST", "/routes/handshake?route=/mock", {"delay": -1}) == (
        400, "delay must be from 0 to 3600 seconds, got -1.0")
    assert admin.error("POST", "/routes/handshake?route=/mock", {"hang_next": "2"}) == (
        400, '"hang_next" must be a whole number')
    assert admin.error("POST", "/routes/handshake?route=/mock", {"reset_next": -1}) == (
        400, "reset_next must be 0 or more")
