"""
The daemon listens while the conversation store opens (a queue's take-over,
a large store): an operator connected in that window is greeted once the
live conversations are loaded, with them, not with the empty inbox of
before; a request sent before the greeting is refused, saying why.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from tests.support_channel_kit import ROUTE, Desk
from wsdaemon.conversations import Conversation, conversation_id_for
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.memory import MemoryConversationStore


@pytest.fixture
def opening(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deferred[None]]:
    """The memory store's open, held until the test fires it."""
    held: Deferred[None] = Deferred()
    monkeypatch.setattr(MemoryConversationStore, "open", lambda self: held)
    yield held


def test_an_operator_is_greeted_once_the_conversations_are_loaded(
        opening: Deferred[None]) -> None:
    """Connected while the store opens: no hello yet, a request is refused;
    the load done, the hello lists the loaded conversation."""
    desk = Desk()
    stored = Conversation(conversation_id_for(ROUTE, "ann"), ROUTE, "ann", 1.0, 1.0, 1.0,
                          preview="my order?")
    desk.store.conversations[stored.conversation_id] = stored
    alice = desk.connect()
    assert alice.opened and alice.events("hello") == []
    refused = desk.ask(alice, {"type": "conversations", "view": "all"})
    assert refused["type"] == "error" and "still loading" in refused["error"], refused
    opening.callback(None)
    desk.flush()
    [hello] = alice.events("hello")
    assert [c["id"] for c in hello["conversations"]] == [stored.conversation_id]
    assert desk.ask(alice, {"type": "conversations", "view": "all"})["type"] == "ok"


def test_an_operator_gone_before_the_load_is_not_joined(opening: Deferred[None]) -> None:
    """Closed while waiting: the load done, nobody is greeted or attached."""
    desk = Desk()
    alice = desk.connect()
    alice.sendClose(1000)
    desk.flush()
    assert alice.closed is not None
    opening.callback(None)
    desk.flush()
    assert alice.events("hello") == [] and desk.hub.links_of("alice") == []


def test_a_failed_load_still_greets(opening: Deferred[None],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The store could not be opened: the operator is greeted with what the
    inbox holds (as before), not left waiting."""
    starts: list[Deferred[None]] = []
    start = ConversationDriver.start
    monkeypatch.setattr(ConversationDriver, "start",
                        lambda self: starts.append(start(self)) or starts[-1])
    desk = Desk()
    alice = desk.connect()
    opening.errback(OSError("disk gone"))
    failures: list[Failure] = []
    starts[0].addErrback(failures.append)
    desk.flush()
    assert len(alice.events("hello")) == 1
    assert failures and failures[0].check(OSError)
