"""
Whether a conversation's visitor is connected (L{VisitorPresence}, kept by
L{VisitorSessions}), in the operators' summaries and as C{presence} events
(issue 23, the inbox's user trial: a reply to a visitor who left said only
"Sent").
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from wsdaemon.conversations import ConversationSettings, Inbox
from wsdaemon.support.summaries import summary
from wsdaemon.support.visitor_presence import VisitorPresence
from wsdaemon.support.visitors import Mode, VisitorSessions
from wsdaemon.testing import RecordingSession

ROUTE = "/support"


def test_online_while_any_connection_is_open_then_last_seen() -> None:
    """Two tabs: online until the last one closes; then offline, seen at that time."""
    clock = Clock()
    sessions = VisitorSessions(Inbox(ConversationSettings()), clock)
    changes: list[tuple[str, str]] = []
    sessions.presence.on_change = lambda route, visitor: changes.append((route, visitor))
    assert sessions.presence.state(ROUTE, "v1") == {"visitor_online": False,
                                                    "visitor_last_seen": None}
    one, two = RecordingSession("s1", ROUTE, client_id="v1"), RecordingSession("s2", ROUTE,
                                                                               client_id="v1")
    sessions.add(one, Mode.STRUCTURED)
    sessions.add(two, Mode.STRUCTURED)
    assert changes == [(ROUTE, "v1")]
    assert sessions.presence.state(ROUTE, "v1")["visitor_online"] is True
    clock.advance(30)
    sessions.remove(one)
    assert sessions.presence.state(ROUTE, "v1")["visitor_online"] is True
    clock.advance(12)
    sessions.remove(two)
    assert sessions.presence.state(ROUTE, "v1") == {"visitor_online": False,
                                                    "visitor_last_seen": 42.0}
    assert changes == [(ROUTE, "v1"), (ROUTE, "v1")]
    assert sessions.presence.state(ROUTE, "v2")["visitor_online"] is False


def test_a_refused_extra_connection_does_not_count() -> None:
    """Past max_sessions_per_visitor a connection is not added, nor counted online."""
    sessions = VisitorSessions(Inbox(ConversationSettings()), Clock(), max_sessions_per_visitor=1)
    first = RecordingSession("s1", ROUTE, client_id="v1")
    assert sessions.add(first, Mode.STRUCTURED) is not None
    extra = RecordingSession("s2", ROUTE, client_id="v1")
    assert sessions.add(extra, Mode.STRUCTURED) is None
    sessions.remove(extra)
    assert sessions.presence.state(ROUTE, "v1")["visitor_online"] is True
    sessions.remove(first)
    assert sessions.presence.state(ROUTE, "v1")["visitor_online"] is False


def test_last_seen_is_bounded_oldest_forgotten() -> None:
    """At max_remembered, the visitor seen longest ago is forgotten first."""
    clock = Clock()
    presence = VisitorPresence(clock, max_remembered=2)
    for n, visitor in enumerate(["a", "b", "c"]):
        clock.advance(1)
        presence.opened(ROUTE, visitor)
        presence.closed(ROUTE, visitor)
        assert presence.state(ROUTE, visitor)["visitor_last_seen"] == float(n + 1)
    assert presence.state(ROUTE, "a")["visitor_last_seen"] is None
    assert presence.state(ROUTE, "c")["visitor_last_seen"] == 3.0
    with pytest.raises(ValueError, match="max_remembered"):
        VisitorPresence(clock, max_remembered=0)


def test_shared_store_says_unknown_not_gone() -> None:
    """With other daemons, a visitor not connected here may be there: None, not False."""
    presence = VisitorPresence(Clock(), shared=True)
    assert presence.state(ROUTE, "v1")["visitor_online"] is None
    presence.opened(ROUTE, "v1")
    assert presence.state(ROUTE, "v1")["visitor_online"] is True


def test_summary_carries_presence() -> None:
    """The summary's visitor_online / visitor_last_seen; None when nobody keeps them."""
    from wsdaemon.conversations import Conversation, conversation_id_for

    conversation = Conversation(conversation_id_for(ROUTE, "v1"), ROUTE, "v1", 0.0, 0.0, 0.0)
    plain: dict[str, Any] = summary(conversation, "alice", 0.0, alias="Visitor 1")
    assert plain["visitor_online"] is None and plain["visitor_last_seen"] is None
    shown = summary(conversation, "alice", 0.0, alias="Visitor 1",
                    presence={"visitor_online": False, "visitor_last_seen": 5.0})
    assert shown["visitor_online"] is False and shown["visitor_last_seen"] == 5.0


def test_the_hub_tells_operators_when_a_visitor_comes_and_goes() -> None:
    """Wired as the support component wires it: the visitor's first connection
    and its last one closing each send every operator a 'presence' event with
    the summary's new visitor_online; a visitor with no live conversation
    sends nothing."""
    from wsdaemon.conversations import Conversation, conversation_id_for
    from wsdaemon.support.hub import OperatorHub

    class Link:
        def __init__(self, operator: str) -> None:
            self.operator = operator
            self.got: list[dict[str, Any]] = []

        def send_event(self, event: dict[str, Any]) -> None:
            self.got.append(event)

    clock = Clock()
    inbox = Inbox(ConversationSettings())
    inbox.load([Conversation(conversation_id_for(ROUTE, "v1"), ROUTE, "v1", 0.0, 0.0, 0.0)])
    sessions = VisitorSessions(inbox, clock)
    hub = OperatorHub(inbox, clock)
    hub.visitor_state = sessions.presence.state
    sessions.presence.on_change = hub.visitor_presence_changed
    alice, bob = Link("alice"), Link("bob")
    hub.attach(alice)  # type: ignore[arg-type]
    hub.attach(bob)  # type: ignore[arg-type]
    tab = RecordingSession("s1", ROUTE, client_id="v1")
    sessions.add(tab, Mode.STRUCTURED)
    clock.advance(7)
    sessions.remove(tab)
    for link in (alice, bob):
        assert [(e["type"], e["conversation"]["visitor_online"],
                 e["conversation"]["visitor_last_seen"]) for e in link.got] == [
            ("presence", True, None), ("presence", False, 7.0)]
    other = RecordingSession("s2", ROUTE, client_id="v2")
    sessions.add(other, Mode.STRUCTURED)
    sessions.remove(other)
    assert len(alice.got) == 2
