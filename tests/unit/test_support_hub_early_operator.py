"""
An operator that connects while the conversations are still loading (the
daemon listens before the store has opened: a queue's take-over, a large
store) finds every loaded conversation once the load is done: in the
greeting's order and by its alias.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from wsdaemon.conversations import Conversation, ConversationSettings, Inbox, conversation_id_for
from wsdaemon.support.hub import OperatorHub


class Link:
    def __init__(self, operator: str) -> None:
        self.operator = operator
        self.got: list[dict[str, Any]] = []

    def send_event(self, event: dict[str, Any]) -> None:
        self.got.append(event)


def conversation(visitor: str) -> Conversation:
    return Conversation(conversation_id_for("/r", visitor), "/r", visitor, 0.0, 0.0, 0.0)


def test_an_operator_connected_before_the_load_sees_what_was_loaded() -> None:
    """Attached to an empty inbox (the load under way), then the load: the
    hub's order lists both loaded conversations and their aliases resolve."""
    inbox = Inbox(ConversationSettings())
    hub = OperatorHub(inbox, Clock())
    hub.attach(Link("alice"))
    hub.sync()
    assert hub.order.first(10) == []
    loaded = [conversation("ann"), conversation("bob")]
    inbox.load(loaded)
    hub.sync()  # as the listing does (support/operator_reading.py)
    assert {c.conversation_id for c in hub.order.first(10)} == \
        {c.conversation_id for c in loaded}
    for c in loaded:
        assert hub.resolve(hub.alias(c)) == c.conversation_id


def test_the_sync_is_done_once() -> None:
    """Once the inbox held conversations, the index is not walked again
    (later conversations reach it one by one, as they change)."""
    inbox = Inbox(ConversationSettings())
    inbox.load([conversation("ann")])
    hub = OperatorHub(inbox, Clock())
    hub.sync()
    inbox.load([conversation("bob")])
    hub.sync()
    assert [c.visitor for c in hub.order.first(10)] == ["ann"]
