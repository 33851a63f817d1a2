"""
Conversations served by the real daemon (`[operator] model = conversations`):
a plain visitor (the seed's page) and an operator speaking protocol 2 over
`websockets`, the thread kept across a restart, the figures on /metrics and
/healthz, a reload that keeps every conversation.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon, free_port
from tests.operator_client import next_of, request

TOKEN = "alice-token-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
ACK = "Thanks! We will be with you shortly."


def config_text(ack: str, admin_port: int) -> str:
    return (
        "[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n\n"
        # Visitors keep who they are across restarts: the cookie's key is kept.
        "[protocol]\nidentity = anonymous\nidentity_secret_file = identity.key\n\n"
        f"[operator]\nmodel = conversations\ntokens = alice:{TOKEN}\n"
        "display_names = alice: Alice Martin\n"
        f"store = conversations.sqlite3\nack_message = {ack}\nfallback_after = 0\n"
        "offline_message =\n\n"
        f"[admin]\nlisten = tcp:{admin_port}:interface=127.0.0.1\napi_keys = ops:{ADMIN_KEY}\n\n"
        "[route:/support]\nstrategy = operator\n\n"
        "[route:/echo]\nstrategy = echo\n")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    admin_port = free_port()
    config = tmp_path / "wsdaemon.ini"
    config.write_text(config_text(ACK, admin_port), encoding="utf-8")
    yield config, admin_port


def operator(daemon: Daemon) -> ClientConnection:
    return connect(f"{daemon.url}/operator",
                   additional_headers={"Authorization": f"Bearer {TOKEN}"})


def admin_get(port: int, path: str) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(req, timeout=5) as answer:
        return str(answer.read().decode())


def test_a_visitor_and_an_operator_talk(setup: tuple[Path, int]) -> None:
    """The acknowledgement once per conversation, not per message; the
    operator sees one conversation with an alias and both messages, and
    its reply reaches the visitor; the conversation outlives a restart."""
    config, admin_port = setup
    daemon = Daemon(config)
    try:
        with connect(f"{daemon.url}/support") as visitor, operator(daemon) as desk:
            hello = next_of(desk, "hello")
            assert hello["protocol"] == 2 and hello["operator"] == "alice"
            # The daemon's identity cookie: who this visitor is next time.
            cookie = visitor.response.headers["Set-Cookie"].split(";")[0]
            visitor.send("hello, my order is late")
            assert visitor.recv(timeout=5) == ACK
            visitor.send("it was due Monday")
            while "it was due Monday" not in desk.recv(timeout=5):
                pass  # the operator is told of each message once it is stored
            listed = request(desk, {"type": "conversations", "view": "all"})
            assert listed["type"] == "ok", listed
            [summary] = listed["conversations"]
            assert summary["alias"].startswith("Visitor ")
            opened = request(desk, {"type": "open", "conversation": summary["alias"]})
            assert opened["type"] == "ok", opened
            texts = [entry.get("text") for entry in opened["entries"]]
            assert texts == ["hello, my order is late", ACK, "it was due Monday"]
            answer = request(desk, {"type": "reply", "conversation": summary["id"][:8],
                                    "text": "It ships today."})
            assert answer["type"] == "ok", answer
            # No second acknowledgement came for the second message.
            assert visitor.recv(timeout=5) == "It ships today."
        metrics = admin_get(admin_port, "/metrics")
        assert 'wsdaemon_conversations{state="assigned"} 1.0' in metrics
        assert "wsdaemon_conversation_first_response_seconds_count" in metrics
        health = json.loads(admin_get(admin_port, "/healthz"))
        assert health["conversations"]["started"] is True
        assert health["conversations"]["live"] == 1
    finally:
        assert daemon.stop() == 0
    again = Daemon(config)
    try:
        with operator(again) as desk:
            next_of(desk, "hello")
            listed = request(desk, {"type": "conversations", "view": "all"})
            assert [c["preview"] for c in listed["conversations"]] == ["It ships today."]
        with connect(f"{again.url}/support", additional_headers={"Cookie": cookie}) as visitor:
            visitor.send("thanks!")
            # The same conversation, still open: no acknowledgement again.
            with pytest.raises(TimeoutError):
                visitor.recv(timeout=0.5)
    finally:
        assert again.stop() == 0


def test_a_reload_keeps_conversations_and_takes_new_settings(
        setup: tuple[Path, int]) -> None:
    """SIGHUP: the conversations stay; a new acknowledgement applies to the
    next conversation; a wrong new config is refused, the old one kept."""
    config, admin_port = setup
    daemon = Daemon(config)
    try:
        with connect(f"{daemon.url}/support") as first:
            first.send("hi")
            assert first.recv(timeout=5) == ACK
        config.write_text(config_text("New greeting.", admin_port), encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log("reloaded")
        with connect(f"{daemon.url}/support") as second:
            second.send("hello")
            assert second.recv(timeout=5) == "New greeting."
        config.write_text(config_text("Number {position}", admin_port), encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log("{position} is gone")
        health = json.loads(admin_get(admin_port, "/healthz"))
        assert health["conversations"]["live"] == 2
    finally:
        assert daemon.stop() == 0


def test_route_options_of_the_queue_are_refused_with_their_line(tmp_path: Path) -> None:
    """A route's ack_message belongs to [operator] with conversations: the
    daemon refuses to start, naming the file, line, section and key."""
    config = tmp_path / "wsdaemon.ini"
    config.write_text(config_text(ACK, free_port()) + "\n[route:/old]\nstrategy = operator\n"
                      "ack_message = Number {position}\n", encoding="utf-8")
    with pytest.raises(AssertionError, match=r"exited with 1") as raised:
        Daemon(config)
    assert "[route:/old] ack_message" in str(raised.value)


def admin_push(port: int, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/push", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(req, timeout=5) as answer:
        return dict(json.loads(answer.read()))


def test_pushes_reach_structured_visitors_in_their_protocol(setup: tuple[Path, int]) -> None:
    """A push to the route reaches a structured visitor as a push frame of
    wsdaemon.chat.v1 (JSON, not a bare text it could not parse) and a plain
    visitor as the text itself; a binary push comes base64 in the frame;
    neither becomes part of the thread."""
    config, admin_port = setup
    daemon = Daemon(config)
    try:
        with connect(f"{daemon.url}/support", subprotocols=["wsdaemon.chat.v1"]) as chat, \
                connect(f"{daemon.url}/support") as plain, \
                connect(f"{daemon.url}/echo") as echo:
            chat.send(json.dumps({"type": "hello"}))
            assert json.loads(chat.recv(timeout=5))["type"] == "welcome"
            answer = admin_push(admin_port, {"route": "/support", "text": "maintenance at 18:00"})
            assert answer["delivered"] == 2
            assert json.loads(chat.recv(timeout=5)) == {"type": "push",
                                                        "text": "maintenance at 18:00"}
            assert plain.recv(timeout=5) == "maintenance at 18:00"
            assert admin_push(admin_port, {"all": True, "base64": "AAEC"})["delivered"] == 3
            assert json.loads(chat.recv(timeout=5)) == {"type": "push", "base64": "AAEC"}
            assert plain.recv(timeout=5) == b"\x00\x01\x02"
            assert echo.recv(timeout=5) == b"\x00\x01\x02"
            chat.send(json.dumps({"type": "history", "after": 0}))
            assert json.loads(chat.recv(timeout=5))["messages"] == []
    finally:
        assert daemon.stop() == 0
