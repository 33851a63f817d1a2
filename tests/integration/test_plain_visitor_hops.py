"""
A plain (text) visitor hopping between two daemons that share a real
redis-server (docs/conversations.md, sections 7 and 13): it reads an
operator's reply on one daemon, closes at once and connects through the
other. The new daemon's catch-up (what was written while it was away) and
the old daemon's live write must not both deliver the reply: the old one
records the delivery before it writes, the new one reads the stored record.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon
from tests.integration.test_conversations_redis import ACK, ALICE, pair
from tests.operator_client import operator_desk, request, the_conversation

pytestmark = pytest.mark.slow

__all__ = ["pair"]

#: Hops; before the fix, 2 of 20 came twice in the first run.
HOPS = 50


def plain(daemon: Daemon, cookie: str | None = None) -> ClientConnection:
    headers = {"Cookie": cookie} if cookie else {}
    return connect(f"{daemon.url}/support", additional_headers=headers)


def frames_until(ws: ClientConnection, last: str, timeout: float = 5) -> list[str]:
    """Text frames up to and including C{last}."""
    got: list[str] = []
    while not got or got[-1] != last:
        frame = ws.recv(timeout=timeout)
        assert isinstance(frame, str)
        got.append(frame)
    return got


@pytest.fixture
def hopping(pair: tuple[Daemon, Daemon]) -> Iterator[tuple[Daemon, Daemon]]:
    yield pair


def test_a_reply_read_on_one_daemon_is_not_written_again_through_the_other(
        hopping: tuple[Daemon, Daemon]) -> None:
    """
    20 times: the operator (on A) replies; the visitor reads it, closes and
    connects through the other daemon; the operator's next reply is the
    first thing it reads there (before: the catch-up wrote the reply read
    a moment before once more). Every reply reaches it exactly once, in order.
    """
    a, b = hopping
    daemons = (a, b)
    visitor = plain(a)
    assert visitor.response is not None
    cookie = visitor.response.headers["Set-Cookie"].split(";", 1)[0]
    visitor.send("Hello, is anyone there?")
    assert visitor.recv(timeout=5) == ACK
    read: list[str] = []
    with operator_desk(a, ALICE) as desk:
        conversation = the_conversation(desk)
        for hop in range(HOPS):
            text = f"reply {hop}"
            answer = request(desk, {"type": "reply", "conversation": conversation,
                                    "text": text}, f"r{hop}")
            assert answer["type"] == "ok", answer
            read += frames_until(visitor, text)
            visitor.close()
            visitor = plain(daemons[(hop + 1) % 2], cookie)
        last = "the last reply"
        assert request(desk, {"type": "reply", "conversation": conversation,
                              "text": last}, "last")["type"] == "ok"
        read += frames_until(visitor, last)
        visitor.close()
    expected = [f"reply {hop}" for hop in range(HOPS)] + [last]
    doubled = [text for text in expected if read.count(text) > 1]
    assert doubled == [] and read == expected, read


def test_what_a_catch_up_wrote_is_not_written_again_through_the_other(
        hopping: tuple[Daemon, Daemon]) -> None:
    """
    20 times: the operator replies while the visitor has no connection; the
    visitor connects through one daemon, reads the reply (that daemon's
    catch-up), closes at once and connects through the other: the next
    reply is the first thing it reads there (the catch-up recorded its page
    before writing it).
    """
    a, b = hopping
    daemons = (a, b)
    visitor = plain(a)
    assert visitor.response is not None
    cookie = visitor.response.headers["Set-Cookie"].split(";", 1)[0]
    visitor.send("Hello, is anyone there?")
    assert visitor.recv(timeout=5) == ACK
    visitor.close()
    read: list[str] = []
    with operator_desk(b, ALICE) as desk:
        conversation = the_conversation(desk)
        for hop in range(HOPS // 2):
            text = f"away {hop}"
            assert request(desk, {"type": "reply", "conversation": conversation,
                                  "text": text}, f"r{hop}")["type"] == "ok"
            visitor = plain(daemons[hop % 2], cookie)
            read += frames_until(visitor, text)
            visitor.close()
            visitor = plain(daemons[(hop + 1) % 2], cookie)
            here = f"here {hop}"
            assert request(desk, {"type": "reply", "conversation": conversation,
                                  "text": here}, f"h{hop}")["type"] == "ok"
            read += frames_until(visitor, here)
            visitor.close()
    expected = [text for hop in range(HOPS // 2) for text in (f"away {hop}", f"here {hop}")]
    assert read == expected, read
