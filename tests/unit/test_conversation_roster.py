"""
The configured operators are members of the team from the start (offline):
listed, and assignable by hand before they ever connect; automatic routing
refuses to give a conversation to an operator who is offline.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from tests.conversation_desk import ROUTE, Desk, cid
from tests.driver_bench import GatedStore, RecordingPorts
from wsdaemon.conversations import (
    Assign,
    Availability,
    ConversationSettings,
    Inbox,
    InvalidMove,
    OperatorAvailability,
    Transfer,
    VisitorMessage,
)
from wsdaemon.conversations.model import Bounds
from wsdaemon.conversations.settings import Routing
from wsdaemon.support.driver import ConversationDriver


def test_enrolled_operators_are_offline_members_with_their_loads() -> None:
    """enrol: each configured name once, offline, default capacity, the load its
    loaded conversations give it; a member already known stays as it is."""
    desk = Desk(default_capacity=3)
    desk.online("alice")
    write(desk)
    desk.step(Assign(cid("v1"), "alice", "alice"))
    desk.inbox.enrol(["carol", "alice", "bob", "carol"])
    team = desk.inbox.team
    assert [o.name for o in team.operators] == ["alice", "bob", "carol"]
    assert team.get("alice") is not None and team.get("alice").online  # type: ignore[union-attr]
    bob = team.get("bob")
    assert bob is not None and bob.availability is Availability.OFFLINE
    assert (bob.capacity, bob.load) == (3, 0)
    assert team.available == 1


def test_enrol_is_bounded_by_max_operators() -> None:
    """No more members than Bounds.max_operators, whatever the config names."""
    desk = Desk(bounds=Bounds(max_operators=2))
    desk.inbox.enrol(["a", "b", "c", "d"])
    assert [o.name for o in desk.inbox.team.operators] == ["a", "b"]


def test_the_roster_is_the_team_before_the_store_opens() -> None:
    """An operator connected while the store still opens is shown the roster."""
    store = GatedStore()
    ports = RecordingPorts(store)
    driver = ConversationDriver(store, Inbox(ConversationSettings()), Clock(), ports, ports,
                                ports, roster=("carol", "bob"))
    assert [(o.name, str(o.availability)) for o in driver.inbox.team.operators] == [
        ("bob", "offline"), ("carol", "offline")]


def test_the_driver_enrols_its_roster_at_start_with_stored_loads() -> None:
    """A driver started on a store where bob holds a conversation: bob is a
    member from the start, offline, with that conversation as his load."""
    first = Bench2(ConversationSettings(fallback_after=0))
    first.driver.submit(OperatorAvailability("bob", Availability.ONLINE))
    first.driver.submit(write_event("v1"))
    first.driver.submit(Assign(cid("v1"), "bob", "bob"))
    first.driver.stop()
    second = Bench2(first.settings, store=first.store, roster=("bob", "alice"))
    team = second.driver.inbox.team
    assert [(o.name, str(o.availability), o.load) for o in team.operators] == [
        ("alice", "offline", 0), ("bob", "offline", 1)]


def test_assigning_to_an_enrolled_offline_operator_by_hand() -> None:
    """Manual routing: alice gives a conversation to bob, who never connected;
    it waits for him, assigned, and counts as his load; then transfer back."""
    desk = Desk()
    desk.online("alice")
    desk.inbox.enrol(["alice", "bob"])
    write(desk)
    desk.step(Assign(cid("v1"), "bob", "alice"))
    assert desk.conversation("v1").assignee == "bob"
    assert desk.inbox.team.get("bob").load == 1  # type: ignore[union-attr]
    desk.step(Transfer(cid("v1"), "alice", "alice"))
    assert desk.conversation("v1").assignee == "alice"
    assert desk.inbox.team.get("bob").load == 0  # type: ignore[union-attr]


def test_automatic_routing_refuses_an_offline_assignee() -> None:
    """Auto routing would move it away at once: refused, saying why; an
    online (or away) operator may still be given it."""
    desk = Desk(routing=Routing.AUTO)
    desk.inbox.enrol(["alice", "bob", "carol"])
    desk.online("alice")
    write(desk)
    assert desk.conversation("v1").assignee == "alice"
    with pytest.raises(InvalidMove, match="bob is offline, and automatic routing"):
        desk.step(Transfer(cid("v1"), "bob", "alice"))
    desk.step(OperatorAvailability("carol", Availability.AWAY))
    desk.step(Transfer(cid("v1"), "carol", "alice"))
    assert desk.conversation("v1").assignee == "carol"


# -- a driver on a store, as the daemon starts it ----------------------------


def write_event(visitor: str) -> VisitorMessage:
    return VisitorMessage(ROUTE, visitor, "Hello?")


def write(desk: Desk, visitor: str = "v1") -> None:
    desk.step(write_event(visitor))


class Bench2:
    """A started driver with a roster, on a memory store, a clock and recording ports."""

    def __init__(self, settings: ConversationSettings, *, store: GatedStore | None = None,
                 roster: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.store = store if store is not None else GatedStore()
        self.ports = RecordingPorts(self.store)
        self.driver = ConversationDriver(self.store, Inbox(settings), Clock(), self.ports,
                                         self.ports, self.ports, roster=roster)
        assert self.driver.start().called
