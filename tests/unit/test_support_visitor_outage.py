"""
The visitor's side while Redis is away, in memory (the route protocol
harness, the driver, a memory store made to fail as the Redis link does,
one Clock): no traceback per visitor (the link logs the outage once), a
plain visitor's catch-up and a structured visitor's welcome read again
until Redis answers.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import fail
from twisted.logger import LogEvent

from tests.unit.test_support_visitor import Desk, cid, frames, send, texts
from wsdaemon.conversations import OperatorReply
from wsdaemon.errors import BrokerUnavailable
from wsdaemon.support.driver import TIMER_RETRY
from wsdaemon.support.visitor import CATCH_UP_RETRY
from wsdaemon.support.visitor_chat import WELCOME_RETRY


def away(*args: object, **kwargs: object) -> Any:
    return fail(BrokerUnavailable("Redis did not answer ZRANGEBYSCORE within 1 s"))


def test_plain_catch_up_is_read_again_once_redis_answers(failures: list[LogEvent]) -> None:
    """
    A plain visitor connecting while Redis is away gets what was written
    while it was away once Redis answers (read again every second), before
    what came live meanwhile, each once; nothing logged with a traceback.
    """
    desk = Desk()
    first = desk.plain()
    first.send("Hello?")
    first.disconnect()
    desk.online()
    desk.reply("While away")
    messages = desk.store.inner.messages
    desk.store.inner.messages = away  # type: ignore[method-assign]
    client = desk.plain()
    desk.clock.advance(CATCH_UP_RETRY)
    desk.reply("Live")
    assert texts(client) == []
    desk.store.inner.messages = messages  # type: ignore[method-assign]
    desk.clock.advance(CATCH_UP_RETRY)
    assert texts(client) == ["While away", "Live"]
    assert desk.conversation().delivered_upto == desk.conversation().last_seq
    desk.clock.advance(10 * CATCH_UP_RETRY)
    assert texts(client) == []
    assert failures == []


def test_plain_catch_up_stops_when_the_visitor_leaves(failures: list[LogEvent]) -> None:
    """A visitor gone while Redis is away: nothing more is read for it."""
    desk = Desk()
    reads: list[object] = []

    def counted(*args: object, **kwargs: object) -> Any:
        reads.append(args)
        return away()

    desk.store.inner.messages = counted  # type: ignore[method-assign]
    client = desk.plain()
    desk.clock.advance(CATCH_UP_RETRY)
    assert len(reads) == 2
    client.disconnect()
    desk.clock.advance(10 * CATCH_UP_RETRY)
    assert len(reads) == 2
    assert failures == []


def test_structured_welcome_waits_for_redis_and_receipts_are_quiet(
        failures: list[LogEvent]) -> None:
    """
    A hello whose page cannot be read because Redis is away is read again
    every second while the connection is open (a widget waits for its
    welcome and does not ask again); a message sent meanwhile waits for the
    welcome, then is acknowledged. A receipt that cannot be stored is
    dropped. No traceback.
    """
    desk = Desk()
    client = desk.structured()
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    frames(client)
    desk.reply("Answer")
    frames(client)
    messages = desk.store.inner.messages
    desk.store.inner.messages = away  # type: ignore[method-assign]
    desk.store.error = BrokerUnavailable("Redis cannot take EVALSHA now: LOADING")
    send(client, {"type": "read", "upto": 2})
    tab = desk.structured(after=0)
    send(tab, {"type": "message", "id": "c-2", "text": "Still there?"})
    desk.clock.advance(3 * WELCOME_RETRY)
    assert frames(tab) == []
    desk.store.inner.messages = messages  # type: ignore[method-assign]
    desk.store.error = None
    desk.clock.advance(WELCOME_RETRY)
    got = frames(tab)
    assert [f["type"] for f in got][:2] == ["welcome", "ack"], got
    assert [m["text"] for m in got[0]["messages"]][-1] == "Answer"
    assert got[1]["id"] == "c-2"
    assert failures == []


def test_a_welcome_not_read_for_a_closed_connection_is_not_read_again(
        failures: list[LogEvent]) -> None:
    """The tab closed while Redis is away: its welcome is not read again."""
    desk = Desk()
    reads: list[object] = []

    def counted(*args: object, **kwargs: object) -> Any:
        reads.append(args)
        return away()

    desk.store.inner.messages = counted  # type: ignore[method-assign]
    tab = desk.structured(after=0)
    desk.clock.advance(WELCOME_RETRY)
    assert len(reads) == 2
    tab.disconnect()
    desk.clock.advance(10 * WELCOME_RETRY)
    assert len(reads) == 2
    assert failures == []


def test_a_plain_reply_taken_but_not_recorded_is_not_written_again(
        failures: list[LogEvent]) -> None:
    """
    A plain connection took a reply, and Redis went away before the
    delivery was recorded: the visitor's next connection to this daemon
    (while the record waits) is not written that reply a second time;
    once Redis answers the record is made.
    """
    desk = Desk()
    first = desk.plain()
    first.send("Hello?")
    texts(first)
    desk.store.gated = True
    desk.driver.submit(OperatorReply(cid("v1"), "alice", "Answer"))
    desk.store.land(0)
    assert texts(first) == ["Answer"]
    desk.store.refuse(0, BrokerUnavailable("Redis did not answer EVALSHA within 1 s"))
    assert desk.conversation().delivered_upto < desk.conversation().last_seq
    first.disconnect()
    again = desk.plain()
    assert texts(again) == []
    desk.store.gated = False
    desk.clock.advance(TIMER_RETRY)
    assert desk.conversation().delivered_upto == desk.conversation().last_seq
    third = desk.plain()
    assert texts(third) == []
    desk.reply("Later")
    assert texts(again) == texts(third) == ["Later"]
    assert failures == []
