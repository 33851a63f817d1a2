"""
Faults on purpose, on the real daemon, as a client under test sees them:
rule actions (drop, fragments, pause_reading, stall_replies, ping), a rules
file's [handshake] (refusals with status and headers, subprotocols), and
the same through the admin API.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import tests.wsframes as ws
from tests.admin_client import Admin, admin_config
from tests.daemon import Daemon, free_port

pytestmark = pytest.mark.slow

KEY = "faults-key-0123456789abcdef"
RULES = """
[handshake]
subprotocols = ["chat.v2", "chat.v1"]

[[rule]]
text = "crash"
reply = "bye"
drop = true

[[rule]]
text = "split"
reply = "abcdefghijkl"
fragments = 3

[[rule]]
text = "slow down"
reply = "pausing"
pause_reading = 1

[[rule]]
text = "stall"
reply = "late"
stall_replies = 1

[[rule]]
text = "heartbeat"
reply = "pinging"
ping = { payload = "hb-1", timeout = 1 }

[default]
reply = "echo: {message}"
"""


@pytest.fixture
def faulty(write_config: Callable[..., Path],
           start_daemon: Callable[..., Daemon]) -> tuple[Daemon, Admin]:
    port = free_port()
    path = write_config(admin_config(port, KEY, """
        [route:/mock]
        strategy = scripted
        rules = mock.toml

        [route:/strict]
        strategy = scripted
        rules = strict.toml

        [route:/echo]
        strategy = echo
    """))
    (path.parent / "mock.toml").write_text(RULES)
    (path.parent / "strict.toml").write_text(
        '[handshake]\nsubprotocols = ["chat.v2"]\nrequire_subprotocol = true\n'
        'refuse_next = 2\nrefuse_status = 503\nrefuse_headers = { Retry-After = "1" }\n\n'
        '[default]\nreply = "ok"\n')
    return start_daemon(path), Admin(port, KEY)


class RawClient:
    """A client that reads frames as they come (or does not read at all)."""

    def __init__(self, daemon: Daemon, path: str, extra: str = "") -> None:
        self.sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        self.sock.sendall(ws.handshake_request(path, extra=extra))
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.sock.recv(4096)
        self.head, self.rest = ws.split_response(data)

    def send_text(self, text: str) -> None:
        self.sock.sendall(ws.client_frame(ws.TEXT, text.encode()))

    def frames(self, count: int, timeout: float = 5) -> list[ws.Frame]:
        self.sock.settimeout(timeout)
        data, found = self.rest, []
        while len(found) < count:
            frames, data = ws.split_frames(data)
            found += frames
            if len(found) >= count:
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        self.rest = b""
        return found

    def ended(self, timeout: float) -> bool:
        """Whether the server ends the TCP connection within timeout, ignoring frames."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return True


def test_drop_ends_the_connection_without_a_close_frame(faulty: tuple[Daemon, Admin]) -> None:
    """drop = true: the reply arrives, then the TCP connection ends with no
    close frame (the client's close code is 1006)."""
    daemon, _ = faulty
    with connect(f"{daemon.url}/mock") as client:
        client.send("crash")
        assert client.recv() == "bye"
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=5)
        assert closed.value.rcvd is None


def test_fragments_split_one_reply_into_frames(faulty: tuple[Daemon, Admin]) -> None:
    """fragments = 3: one text message as a text frame and two continuation
    frames, the last with FIN; a library client sees the whole message."""
    daemon, _ = faulty
    raw = RawClient(daemon, "/mock")
    raw.send_text("split")
    frames = raw.frames(3)
    assert [(f.opcode, f.fin) for f in frames] == [
        (ws.TEXT, False), (ws.CONTINUATION, False), (ws.CONTINUATION, True)]
    assert b"".join(f.payload for f in frames) == b"abcdefghijkl"
    with connect(f"{daemon.url}/mock") as client:
        client.send("split")
        assert client.recv() == "abcdefghijkl"


def test_pause_reading_and_stall_replies_delay_the_answers(
        faulty: tuple[Daemon, Admin]) -> None:
    """pause_reading = 1: the next message is read (and answered) only after
    a second; stall_replies = 1: the reply itself waits a second."""
    daemon, _ = faulty
    with connect(f"{daemon.url}/mock") as client:
        client.send("slow down")
        assert client.recv() == "pausing"
        started = time.monotonic()
        client.send("next")
        assert client.recv(timeout=5) == "echo: next"
        assert time.monotonic() - started >= 0.8
        started = time.monotonic()
        client.send("stall")
        assert client.recv(timeout=5) == "late"
        assert time.monotonic() - started >= 0.8


def test_ping_expects_a_pong(faulty: tuple[Daemon, Admin]) -> None:
    """ping: a client that answers keeps its connection (ping and pong are in
    the journal); one that never answers is dropped after the timeout."""
    daemon, admin = faulty
    mark = admin.call("GET", "/journal")["last"]
    with connect(f"{daemon.url}/mock") as client:
        client.send("heartbeat")
        assert client.recv() == "pinging"
        time.sleep(1.5)
        client.send("still there?")
        assert client.recv() == "echo: still there?"
    kinds = [e["direction"] for e in admin.call(
        "GET", f"/journal?route=/mock&since={mark}")["entries"]]
    assert "ping" in kinds and "pong" in kinds
    raw = RawClient(daemon, "/mock")
    raw.send_text("heartbeat")
    assert raw.ended(timeout=5)  # no pong from us: dropped after 1 s


def test_handshake_refusals_and_subprotocols(faulty: tuple[Daemon, Admin]) -> None:
    """[handshake]: the first two handshakes get 503 with Retry-After; then a
    client must offer chat.v2, else 400; the mock route picks the server's
    preferred one of those offered."""
    daemon, _ = faulty
    for _ in range(2):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{daemon.url}/strict", subprotocols=["chat.v2"])  # type: ignore[list-item]
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "1"
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{daemon.url}/strict", subprotocols=["chat.v9"])  # type: ignore[list-item]
    assert refused.value.response.status_code == 400
    with connect(f"{daemon.url}/strict", subprotocols=["chat.v2"]) as client:  # type: ignore[list-item]
        assert client.subprotocol == "chat.v2"
    with connect(f"{daemon.url}/mock", subprotocols=["chat.v1", "chat.v2"]) as client:  # type: ignore[list-item]
        assert client.subprotocol == "chat.v2"
    with connect(f"{daemon.url}/mock") as client:
        assert client.subprotocol is None


def test_faults_through_the_admin_api(faulty: tuple[Daemon, Admin]) -> None:
    """Any route: refuse the next handshake with 429 and a header, then
    accept; ping a connection (pong answered); hold its writes; send one
    message in four frames; pause its reading."""
    daemon, admin = faulty
    plan = admin.call("POST", "/routes/handshake?route=/echo",
                      {"refuse_next": 1, "refuse_status": 429,
                       "refuse_headers": {"Retry-After": "3"}})
    assert plan["handshake"]["refusals_left"] == 1
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{daemon.url}/echo")
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"] == "3"
    with connect(f"{daemon.url}/echo?client_id=p") as client:
        session = admin.call("GET", "/routes/connections?route=/echo")["connections"][0][
            "session_id"]
        answer = admin.call("POST", "/connections/ping", {"session": session, "timeout": 5})
        assert answer["pong"] is True and answer["seconds"] < 5
        admin.call("POST", "/connections/hold_writes", {"session": session, "seconds": 1})
        started = time.monotonic()
        client.send("held")
        assert client.recv(timeout=5) == "held"
        assert time.monotonic() - started >= 0.8
        admin.call("POST", "/connections/pause_reading", {"session": session, "seconds": 1})
        started = time.monotonic()
        client.send("paused")
        assert client.recv(timeout=5) == "paused"
        assert time.monotonic() - started >= 0.8
    raw = RawClient(daemon, "/echo?client_id=q")
    session = [c["session_id"] for c in admin.call(
        "GET", "/routes/connections?route=/echo")["connections"] if c["client_id"] == "q"][0]
    admin.call("POST", "/connections/send", {"session": session, "text": "12345678",
                                             "fragments": 4})
    frames = raw.frames(4)
    assert [f.opcode for f in frames] == [ws.TEXT] + [ws.CONTINUATION] * 3
    assert frames[-1].fin and b"".join(f.payload for f in frames) == b"12345678"
    answer = admin.call("POST", "/connections/ping", {"session": session, "timeout": 0.5})
    assert answer == {"session": session, "pong": False}
    assert raw.ended(timeout=5)
    with pytest.raises(urllib.error.HTTPError) as bad:
        admin.call("POST", "/routes/handshake?route=/echo", {"refuse_status": 200})
    assert bad.value.code == 400


@pytest.mark.parametrize("plan", [{"refuse_headers": {"X-Evil\n": "1"}},
                                  {"subprotocols": ["chat\n"]}],
                         ids=["refusal header name", "subprotocol"])
def test_a_name_with_a_trailing_newline_is_refused(faulty: tuple[Daemon, Admin],
                                                   plan: dict[str, object]) -> None:
    """A refusal header or subprotocol named with a trailing newline (which a
    `$` pattern let through, into the response's header block) is a 400
    naming it; the route's handshakes stay as they were."""
    daemon, admin = faulty
    status, error = admin.error("POST", "/routes/handshake?route=/echo",
                                {"refuse_next": 1, **plan})
    assert status == 400 and "is not an HTTP token" in error
    raw = RawClient(daemon, "/echo")
    assert raw.head.startswith(b"HTTP/1.1 101 ")
    assert b"X-Evil" not in raw.head and b"chat\n" not in raw.head
