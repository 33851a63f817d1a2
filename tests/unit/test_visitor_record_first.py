"""
A plain visitor's side when daemons share the store (the support component
calls L{VisitorSessions.record_before_writing}), on the real route protocol
in memory, the conversation driver and a memory store whose commits land
when the test says: a live reply is written only once its delivery is
recorded; a catch-up starts after the I{stored} C{delivered_upto} (another
daemon's record this view has not taken yet) and records each page before
writing it.
"""

from __future__ import annotations

from tests.unit.test_support_visitor import Desk, cid, texts
from wsdaemon.conversations import OperatorReply
from wsdaemon.conversations.model import evolve


def shared() -> Desk:
    desk = Desk()
    desk.support.visitors.record_before_writing(desk.driver.submit)
    return desk


def test_a_live_reply_is_written_once_its_delivery_is_recorded() -> None:
    """The reply's commit lands; the plain client gets it only when the
    delivery record lands too."""
    desk = shared()
    client = desk.plain()
    client.send("Hello?")
    texts(client)
    desk.store.gated = True
    desk.driver.submit(OperatorReply(cid("v1"), "alice", "Hi!", display_name="Alice"))
    desk.store.land()  # the reply
    assert texts(client) == []
    assert desk.conversation().delivered_upto < desk.conversation().last_seq
    desk.store.land()  # its delivery record
    assert desk.conversation().delivered_upto == desk.conversation().last_seq
    assert texts(client) == ["Hi!"]


def test_the_catch_up_starts_after_what_another_daemon_recorded() -> None:
    """The store says the replies were delivered (another daemon wrote them
    and recorded it; this view has not taken that commit): a new plain
    connection here is not written them again (one daemon's view would)."""
    desk = shared()
    client = desk.plain()
    client.send("Hello?")
    client.disconnect()
    desk.reply("First answer")
    desk.reply("Second answer")
    stored = desk.conversation()
    desk.store.inner.conversations[cid("v1")] = evolve(stored,
                                                       delivered_upto=stored.last_seq)
    viewed = desk.driver.inbox.conversation(cid("v1"))
    assert viewed is not None and viewed.delivered_upto < stored.last_seq
    again = desk.plain()
    assert texts(again) == []
    desk.reply("Third answer")
    assert texts(again) == ["Third answer"]


def test_a_catch_up_page_is_recorded_before_it_is_written() -> None:
    """Replies written while away: the new connection's page is recorded
    delivered first, then written; nothing before the record lands."""
    desk = shared()
    client = desk.plain()
    client.send("Hello?")
    client.disconnect()
    desk.reply("First answer")
    desk.reply("Second answer")
    desk.store.gated = True
    again = desk.plain()
    assert texts(again) == []
    assert len(desk.store.held) == 1
    desk.store.land()
    assert desk.conversation().delivered_upto == desk.conversation().last_seq
    assert texts(again) == ["First answer", "Second answer"]
