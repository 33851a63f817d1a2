"""
The visitor's side of conversations on the real daemon
(`[operator] model = conversations`), with `websockets` clients: a
structured visitor (`wsdaemon.chat.v1`) whose connection breaks while an
operator's replies are coming resumes after the last one it has and gets
the rest once and in order; a plain visitor (the seed's page, its cookie)
gets on its next connection what was written while it was away.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon
from tests.operator_client import (
    ACK,
    TOKEN,
    cookie_of,
    next_of,
    operator_desk,
    request,
    structured,
    support_config,
    the_conversation,
)

pytestmark = pytest.mark.slow


CONFIG = support_config("[route:/support]\nstrategy = operator")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG, encoding="utf-8")
    running = Daemon(config)
    try:
        yield running
    finally:
        assert running.stop() == 0


def operator(daemon: Daemon) -> ClientConnection:
    return operator_desk(daemon, TOKEN)


def thread_seqs(frames: list[dict[str, Any]]) -> list[int]:
    out: list[int] = []
    for frame in frames:
        if frame["type"] in ("welcome", "history"):
            out.extend(m["seq"] for m in frame["messages"])
        elif frame["type"] == "message":
            out.append(frame["seq"])
    return out


def test_structured_resume_after_a_broken_connection(daemon: Daemon) -> None:
    """
    An operator's replies keep coming while the visitor's connection breaks;
    the visitor reconnects saying the last seq it has and gets everything
    after it: every message of the thread once, in order, none lost.
    """
    visitor = structured(daemon)
    cookie = cookie_of(visitor)
    visitor.send(json.dumps({"type": "hello"}))
    assert next_of(visitor, "welcome")["messages"] == []
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "Where is my order?"}))
    ack = next_of(visitor, "ack")
    assert ack["id"] == "c-1" and ack["seq"] == 1
    received: list[dict[str, Any]] = []
    with operator(daemon) as desk:
        conversation = the_conversation(desk)
        replies = 60
        done = threading.Event()

        def answer() -> None:
            for n in range(replies):
                sent = request(desk, {"type": "reply", "conversation": conversation,
                                      "text": f"part {n}"}, f"r{n}")
                assert sent["type"] == "ok", sent
            done.set()

        writer = threading.Thread(target=answer)
        writer.start()
        # Read a few replies, then break the connection without a close.
        while len(thread_seqs(received)) < 12:
            received.append(json.loads(visitor.recv(timeout=5)))
        visitor.socket.close()
        writer.join(timeout=30)
        assert done.is_set()
        have = max(thread_seqs(received))
        again = structured(daemon, cookie)
        again.send(json.dumps({"type": "hello", "after": have}))
        welcome = next_of(again, "welcome")
        assert welcome["status"] == "open" and welcome["more"] is False
        received.append(welcome)
        request(desk, {"type": "reply", "conversation": conversation, "text": "the end"},
                "last")
        while thread_seqs(received)[-1:] != [replies + 3]:
            received.append(json.loads(again.recv(timeout=5)))
        again.close()
    seqs = thread_seqs(received)
    # 1 is the visitor's (acknowledged), 2 the acknowledgement notice, then the replies.
    assert seqs == list(range(2, replies + 4))
    texts = [m["text"] for f in received if f["type"] == "welcome" for m in f["messages"]]
    assert all(text.startswith("part ") for text in texts)
    names = {f["name"] for f in received if f["type"] == "message" and f["seq"] > 2}
    assert names == {"Alice Martin"}


def test_plain_visitor_gets_what_was_written_while_away(daemon: Daemon) -> None:
    """
    The seed's page: the acknowledgement once; replies written while the
    visitor had no connection come on its next one (same cookie), in order,
    once; a third connection gets nothing old again.
    """
    visitor = connect(f"{daemon.url}/support")
    cookie = cookie_of(visitor)
    visitor.send("Hello, is anyone there?")
    assert visitor.recv(timeout=5) == ACK
    visitor.send("My order is late")
    with operator(daemon) as desk:
        conversation = the_conversation(desk)
        assert request(desk, {"type": "reply", "conversation": conversation,
                              "text": "Hello! Looking now."})["type"] == "ok"
        assert visitor.recv(timeout=5) == "Hello! Looking now."
        visitor.close()
        for text in ("It left the warehouse today.", "It arrives Friday."):
            assert request(desk, {"type": "reply", "conversation": conversation,
                                  "text": text})["type"] == "ok"
    back = connect(f"{daemon.url}/support", additional_headers={"Cookie": cookie})
    assert back.recv(timeout=5) == "It left the warehouse today."
    assert back.recv(timeout=5) == "It arrives Friday."
    with pytest.raises(TimeoutError):
        back.recv(timeout=0.5)
    back.close()
    third = connect(f"{daemon.url}/support", additional_headers={"Cookie": cookie})
    with pytest.raises(TimeoutError):
        third.recv(timeout=0.5)
    third.close()


def test_structured_resend_and_second_tab(daemon: Daemon) -> None:
    """
    A message sent again with its id on a new connection (the first ack was
    lost) is acknowledged with the first seq and time and stored once; the
    visitor's other tab gets it as a message with that id.
    """
    first = structured(daemon)
    cookie = cookie_of(first)
    first.send(json.dumps({"type": "hello"}))
    next_of(first, "welcome")
    tab = structured(daemon, cookie)
    tab.send(json.dumps({"type": "hello"}))
    next_of(tab, "welcome")
    first.send(json.dumps({"type": "message", "id": "c-1", "text": "Is it in stock?"}))
    ack = next_of(first, "ack")
    copy = next_of(tab, "message")
    assert (copy["seq"], copy["id"], copy["author"]) == (ack["seq"], "c-1", "visitor")
    first.socket.close()
    again = structured(daemon, cookie)
    again.send(json.dumps({"type": "hello", "after": ack["seq"]}))
    next_of(again, "welcome")
    again.send(json.dumps({"type": "message", "id": "c-1", "text": "Is it in stock?"}))
    resent = next_of(again, "ack")
    assert (resent["seq"], resent["at"], resent.get("duplicate")) == (ack["seq"], ack["at"],
                                                                      True)
    with operator(daemon) as desk:
        conversation = the_conversation(desk)
        opened = request(desk, {"type": "open", "conversation": conversation}, "open")
        texts = [entry.get("text") for entry in opened["entries"]]
        assert texts.count("Is it in stock?") == 1
    again.close()
    tab.close()


def test_structured_signals_from_operators(daemon: Daemon) -> None:
    """
    A structured visitor hears that an operator became available, sees the
    operator type (with its display name) and read, hears the conversation
    resolved; its own typing reaches the operators.
    """
    visitor = structured(daemon)
    visitor.send(json.dumps({"type": "hello"}))
    assert next_of(visitor, "welcome")["operators_available"] is False
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "Hello?"}))
    ack = next_of(visitor, "ack")
    with operator(daemon) as desk:
        assert request(desk, {"type": "availability", "availability": "online"},
                       "on")["type"] == "ok"
        assert next_of(visitor, "availability")["available"] is True
        conversation = the_conversation(desk)
        assert request(desk, {"type": "typing", "conversation": conversation, "on": True},
                       "t")["type"] == "ok"
        assert next_of(visitor, "typing") == {"type": "typing", "on": True,
                                              "name": "Alice Martin"}
        assert request(desk, {"type": "read", "conversation": conversation,
                              "upto": ack["seq"]}, "r")["type"] == "ok"
        assert next_of(visitor, "read") == {"type": "read", "upto": ack["seq"]}
        visitor.send(json.dumps({"type": "typing", "on": True}))
        while "visitor" not in next_of(desk, "typing")["conversation"]["typing"]:
            pass
        assert request(desk, {"type": "resolve", "conversation": conversation},
                       "x")["type"] == "ok"
        assert next_of(visitor, "status") == {"type": "status", "status": "resolved"}
    visitor.close()
