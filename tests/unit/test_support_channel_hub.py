"""
The operator hub as the driver's IOperatorPort, without a WebSocket: it
provides the interface, fans out with each operator's own copy, goes on
past a link that fails, tells only the operator an effect names, and keeps
one viewed conversation per connection.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from wsdaemon.conversations import (
    Conversation,
    ConversationSettings,
    Inbox,
    NotifyOperators,
    NotifyTeam,
    conversation_id_for,
)
from wsdaemon.support.hub import OperatorHub
from wsdaemon.support.ports import IOperatorPort


class Link:
    def __init__(self, operator: str, *, broken: bool = False) -> None:
        self.operator = operator
        self.got: list[dict[str, Any]] = []
        self.broken = broken

    def send_event(self, event: dict[str, Any]) -> None:
        if self.broken:
            raise RuntimeError("gone")
        self.got.append(event)


def conversation(visitor: str = "ann", **fields: Any) -> Conversation:
    return Conversation(conversation_id_for("/r", visitor), "/r", visitor, 0.0, 0.0, 0.0,
                        **fields)


def test_provides_the_operator_port() -> None:
    """The hub is what the driver is built with: it provides IOperatorPort."""
    hub = OperatorHub(Inbox(ConversationSettings()), Clock())
    assert verifyObject(IOperatorPort, hub)


def test_fan_out_goes_on_past_a_failing_link() -> None:
    """A link that raises is logged; the others still get the event, each their own copy."""
    hub = OperatorHub(Inbox(ConversationSettings()), Clock())
    broken, alice, bob = Link("zed", broken=True), Link("alice"), Link("bob")
    for link in (broken, alice, bob):
        hub.attach(link)
    logged: list[Any] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        hub.notify(NotifyOperators("updated", conversation(
            recent_visitor_seqs=(1, 2), read_marks=(("alice", 1),))))
        hub.team_changed(NotifyTeam("bob", "online", 2, 0))
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert [e["conversation"]["unread"] for e in alice.got[:1] + bob.got[:1]] == [1, 2]
    assert alice.got[1]["type"] == bob.got[1]["type"] == "team"
    assert sum(1 for e in logged if "log_failure" in e) == 2


def test_an_effect_for_one_operator_reaches_only_it() -> None:
    """NotifyOperators naming an operator (assigned, read) goes to its links only."""
    hub = OperatorHub(Inbox(ConversationSettings()), Clock())
    alice, bob, alice_too = Link("alice"), Link("bob"), Link("alice")
    for link in (alice, bob, alice_too):
        hub.attach(link)
    hub.notify(NotifyOperators("assigned", conversation(assignee="alice"), operator="alice"))
    assert len(alice.got) == len(alice_too.got) == 1 and bob.got == []


def test_one_viewed_conversation_per_connection() -> None:
    """Viewing another conversation stops viewing the first; detaching stops both."""
    hub = OperatorHub(Inbox(ConversationSettings()), Clock())
    alice, bob = Link("alice"), Link("bob")
    hub.attach(alice)
    hub.attach(bob)
    hub.view(alice, "c1")
    hub.view(alice, "c2")
    assert hub.viewers("c1") == [] and hub.viewers("c2") == ["alice"]
    assert bob.got[-2:] == [{"type": "viewing", "conversation": "c1", "operators": []},
                            {"type": "viewing", "conversation": "c2",
                             "operators": ["alice"]}]
    assert hub.detach(alice) is True
    assert hub.viewers("c2") == []
