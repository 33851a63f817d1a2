"""
The operator channel of conversations against big and hostile input, in
the real daemon: messages at the size bound, a store that cannot commit, replies a
visitor's route cannot take, revoked tokens, an operator that stops reading.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon
from tests.operator_client import next_of, operator_desk, request
from wsdaemon.support.visitor import MAX_TEXT_BYTES, TOO_LONG

pytestmark = pytest.mark.slow

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef00"
ACK = "Thanks, we will answer here."


def config_text(operator_extra: str = "", route_extra: str = "") -> str:
    operator_extra = operator_extra.replace("\n", "\n        ")
    route_extra = route_extra.replace("\n", "\n        ")
    return f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1

        [operator]
        tokens =
            alice:{ALICE}
            bob:{BOB}
        store = state/conversations.sqlite3
        ack_message = {ACK}
        fallback_after = 0
        offline_message =
        {operator_extra}

        [protocol]
        # These clients choose their ids (?client_id=).
        identity = claimed

        [route:/support]
        strategy = operator
        {route_extra}
    """


@pytest.fixture
def opened() -> Iterator[list[Any]]:
    connections: list[Any] = []
    yield connections
    for connection in connections:
        connection.close()


def client(daemon: Daemon, client_id: str, opened: list[Any]) -> ClientConnection:
    connection = connect(f"{daemon.url}/support?client_id={client_id}", max_size=None)
    opened.append(connection)
    return connection


def desk(daemon: Daemon, token: str, opened: list[Any]) -> ClientConnection:
    found = operator_desk(daemon, token)
    opened.append(found)
    return found


def listed(ws: ClientConnection) -> dict[str, dict[str, Any]]:
    """The operator's conversations by visitor."""
    answer = request(ws, {"type": "conversations", "view": "all"}, "list")
    assert answer["type"] == "ok", answer
    return {c["visitor"]: c for c in answer["conversations"]}


def test_messages_at_the_bound_and_control_characters(write_config: Callable[..., Path],
                                                      start_daemon: Callable[..., Daemon],
                                                      opened: list[Any]) -> None:
    """A visitor's message of MAX_TEXT_BYTES (32 KiB) and 11 KB of control
    characters are stored and reach the operator whole; a byte more is
    refused with a clear answer and the visitor stays connected; the
    operator's greeting stays small (previews)."""
    daemon = start_daemon(write_config(config_text()))
    big = "".join(chr(0x41 + n % 26) for n in range(MAX_TEXT_BYTES))
    controls = "\x01\x1b[2J" * 2750
    for visitor, text in (("big", big), ("ctl", controls)):
        connection = client(daemon, visitor, opened)
        connection.send(text)
        assert connection.recv(timeout=10) == ACK
    connection.send("é" * (MAX_TEXT_BYTES // 2) + "x")
    assert connection.recv(timeout=5) == TOO_LONG.format(limit=MAX_TEXT_BYTES)
    connection.send("still here")

    raw = connect(f"{daemon.url}/operator", max_size=None,
                  additional_headers={"Authorization": f"Bearer {ALICE}"})
    opened.append(raw)
    greeting = raw.recv(timeout=10)
    assert json.loads(greeting)["type"] == "hello" and len(greeting) < 16 * 1024
    alice = desk(daemon, ALICE, opened)
    conversations = listed(alice)
    for visitor, text in (("big", big), ("ctl", controls)):
        thread = request(alice, {"type": "open", "conversation": conversations[visitor]["id"]},
                         "open")
        shown = [e for e in thread["entries"] if e.get("author") == "visitor"]
        assert shown[0]["text"] == text and not shown[0]["truncated"]
    assert [e["text"] for e in shown[1:]] == ["still here"]


def test_failed_commit_leaves_the_conversation_unchanged(write_config: Callable[..., Path],
                                                         start_daemon: Callable[..., Daemon],
                                                         opened: list[Any]) -> None:
    """A reply whose commit fails (the database locked by another process for
    longer than the store waits) changes nothing and says so; a reply
    holding a lone surrogate is refused before anything is stored; the
    visitor gets exactly one reply, the one that was stored."""
    config = write_config(config_text())
    daemon = start_daemon(config)
    visitor = client(daemon, "c", opened)
    visitor.send("help")
    assert visitor.recv(timeout=5) == ACK
    alice = desk(daemon, ALICE, opened)
    key = listed(alice)["c"]["id"]

    alice.send('{"type": "reply", "conversation": "' + key + '", "text": "bad \\ud800 text", '
               '"id": "bad"}')
    refused = next_of(alice, "error", where=lambda e: e.get("id") == "bad")
    assert "surrogate" in refused["error"], refused

    locker = sqlite3.connect(config.parent / "state" / "conversations.sqlite3", timeout=0)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        alice.send(json.dumps({"type": "reply", "conversation": key, "text": "first try",
                               "id": "first"}))
        # The store waits for the lock up to its busy timeout (5 s).
        failed = next_of(alice, "error", timeout=15, where=lambda e: e.get("id") == "first")
    finally:
        locker.rollback()
        locker.close()
    assert "nothing changed" in failed["error"], failed
    thread = request(alice, {"type": "open", "conversation": key}, "open")
    assert [e["text"] for e in thread["entries"]] == ["help", ACK]

    answer = request(alice, {"type": "reply", "conversation": key, "text": "second try"},
                     "second")
    assert answer["type"] == "ok", answer
    assert visitor.recv(timeout=5) == "second try"
    with pytest.raises(TimeoutError):
        visitor.recv(timeout=0.5)


def test_a_reply_too_big_for_the_route_is_refused(write_config: Callable[..., Path],
                                                  start_daemon: Callable[..., Daemon],
                                                  opened: list[Any]) -> None:
    """A reply bigger than the visitor's route accepts (which a plain visitor
    could never be written) is refused at the operator, nothing stored; a
    short one after it reaches the visitor, and only it."""
    daemon = start_daemon(write_config(config_text(
        route_extra="max_message_size = 1KiB\nmax_frame_size = 1KiB")))
    visitor = client(daemon, "c", opened)
    visitor.send("help")
    assert visitor.recv(timeout=5) == ACK
    alice = desk(daemon, ALICE, opened)
    key = listed(alice)["c"]["id"]
    refused = request(alice, {"type": "reply", "conversation": key, "text": "x" * 2000}, "big")
    assert refused["type"] == "error", refused
    assert "2000 bytes" in refused["error"] and "at most 1024 bytes" in refused["error"]
    thread = request(alice, {"type": "open", "conversation": key}, "open")
    assert [e["text"] for e in thread["entries"]] == ["help", ACK]
    assert request(alice, {"type": "reply", "conversation": key, "text": "short"},
                   "short")["type"] == "ok"
    assert visitor.recv(timeout=5) == "short"
    with pytest.raises(TimeoutError):
        visitor.recv(timeout=0.5)


def test_reload_revokes_removed_tokens(write_config: Callable[..., Path],
                                       start_daemon: Callable[..., Daemon],
                                       opened: list[Any]) -> None:
    """A reload that removes an operator's token closes its open sessions at
    once with 4001; other operators carry on."""
    config = write_config(config_text())
    daemon = start_daemon(config)
    alice, bob = desk(daemon, ALICE, opened), desk(daemon, BOB, opened)
    config.write_text(config.read_text().replace(f"alice:{ALICE}\n", ""))
    daemon.process.send_signal(signal.SIGHUP)
    with pytest.raises(ConnectionClosed) as closed:
        next_of(alice, "never", timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    assert closed.value.rcvd.reason == "operator token revoked"
    assert request(bob, {"type": "conversations"})["type"] == "ok"
    daemon.wait_for_log("its token was revoked")


def test_operator_that_stops_reading_is_cut_off(write_config: Callable[..., Path],
                                                start_daemon: Callable[..., Daemon],
                                                opened: list[Any]) -> None:
    """An operator that never reads is dropped once max_outbound_buffer bytes
    wait for it; visitors and the other operators carry on."""
    import base64
    import os
    import socket

    daemon = start_daemon(write_config(config_text(
        "max_outbound_buffer = 64KiB\nmax_unanswered = 0", "max_message_rate = 0")))
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", daemon.port))
    opened.append(stuck)
    key = base64.b64encode(os.urandom(16)).decode()
    stuck.sendall((f"GET /operator HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Authorization: Bearer {BOB}\r\n\r\n").encode())
    daemon.wait_for_log("operator bob connected")
    # 50 at once from each visitor: under a conversation's lane (100 waiting).
    for v in range(8):
        sender = client(daemon, f"flood-{v}", opened)
        for n in range(50):
            sender.send(f"{n:04d}" + "z" * 9996)
        if "does not read" in daemon.log():
            break
    daemon.wait_for_log("dropping operator bob", timeout=10)
    alice = desk(daemon, ALICE, opened)
    assert request(alice, {"type": "conversations"})["type"] == "ok"
    sender.send("still there?")
    while "still there?" not in str(alice.recv(timeout=10)):
        pass
