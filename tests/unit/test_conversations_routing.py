"""
The conversation core's routing: by hand and automatic (round robin over
online operators with room), the queue when nobody has room, reassignment
when an assignee goes offline or stays silent, availability as visitors hear
it, and the bounds on a team and on one transition.
"""

from __future__ import annotations

import pytest

from tests.conversation_desk import ROUTE, Desk, cid
from wsdaemon.conversations import (
    AnnounceAvailability,
    Assign,
    Availability,
    Bounds,
    InvalidMove,
    NotifyOperators,
    NotifyTeam,
    OperatorAvailability,
    OperatorCapacity,
    OperatorReply,
    Reopen,
    Resolve,
    Routing,
    SetTimer,
    Snooze,
    Status,
    Timer,
    TimerFired,
    TimerKind,
    VisitorMessage,
)


def auto(**changes: object) -> Desk:
    return Desk(routing=Routing.AUTO, fallback_after=0, **changes)  # type: ignore[arg-type]


def write(desk: Desk, visitor: str, text: str = "hello", at: float | None = None) -> None:
    desk.step(VisitorMessage(ROUTE, visitor, text), at)


def assignees(desk: Desk, *visitors: str) -> list[str | None]:
    return [desk.conversation(v).assignee for v in visitors]


def loads(desk: Desk) -> dict[str, int]:
    return {o.name: o.load for o in desk.inbox.team.operators}


def test_by_hand_nothing_is_assigned_by_itself() -> None:
    """routing = manual: new conversations wait unassigned for an operator to take them."""
    desk = Desk(fallback_after=0)
    desk.online("alice", "bob")
    write(desk, "v1")
    assert assignees(desk, "v1") == [None]
    assert [c.conversation_id for c in desk.inbox.waiting(10)] == [cid("v1")]


def test_round_robin_in_name_order() -> None:
    """Automatic routing deals new conversations to online operators in turn."""
    desk = auto()
    desk.online("carol", "alice", "bob")
    for visitor in ("v1", "v2", "v3", "v4"):
        write(desk, visitor)
    assert assignees(desk, "v1", "v2", "v3", "v4") == ["alice", "bob", "carol", "alice"]
    assert loads(desk) == {"alice": 2, "bob": 1, "carol": 1}
    notified = [n for n in desk.effects(NotifyOperators) if n.kind == "assigned"]
    assert [n.operator for n in notified] == ["alice"]


def test_capacity_queues_and_a_freed_slot_takes_the_oldest() -> None:
    """Nobody with room: conversations queue; a resolve frees a slot, filled
    at once by the longest waiting one."""
    desk = auto(default_capacity=1)
    desk.online("alice", "bob")
    for visitor in ("v1", "v2", "v3", "v4"):
        write(desk, visitor)
    assert assignees(desk, "v1", "v2", "v3", "v4") == ["alice", "bob", None, None]
    assert [c.visitor for c in desk.inbox.waiting(10)] == ["v3", "v4"]
    desk.step(Resolve(cid("v2"), "bob"))
    assert assignees(desk, "v3", "v4") == ["bob", None]
    desk.step(Snooze(cid("v1"), "alice"))  # a snoozed one takes no slot
    assert assignees(desk, "v4") == ["alice"]
    assert loads(desk) == {"alice": 1, "bob": 1}


def test_away_operators_keep_theirs_and_take_no_new_ones() -> None:
    """Away: an operator keeps its conversations but routing passes it by."""
    desk = auto()
    desk.online("alice", "bob")
    write(desk, "v1")
    desk.step(OperatorAvailability("alice", Availability.AWAY))
    write(desk, "v2")
    write(desk, "v3")
    assert assignees(desk, "v1", "v2", "v3") == ["alice", "bob", "bob"]


def test_offline_assignee_open_conversations_go_to_others_or_the_queue() -> None:
    """An operator going offline: its open conversations go to others with
    room, the rest queue; its snoozed ones stay with it."""
    desk = auto(default_capacity=1)
    desk.online("alice", "bob")
    write(desk, "v1")
    write(desk, "v2")
    write(desk, "v3")  # queued: both full
    desk.step(Assign(cid("v3"), "alice", "alice"))  # by hand, past capacity
    desk.step(Snooze(cid("v1"), "alice"))
    assert loads(desk) == {"alice": 1, "bob": 1}
    desk.online("carol")
    desk.step(OperatorAvailability("alice", Availability.OFFLINE))
    assert assignees(desk, "v1", "v2", "v3") == ["alice", "bob", "carol"]
    write(desk, "v1", "I am back")  # wakes; its assignee is gone: routed anew
    assert desk.conversation("v1").assignee is None  # nobody has room: queued
    assert loads(desk) == {"alice": 0, "bob": 1, "carol": 1}


def test_coming_online_takes_from_the_queue_up_to_capacity() -> None:
    """An operator coming online (or given more capacity) takes queued ones, oldest first."""
    desk = auto(default_capacity=2)
    for visitor in ("v1", "v2", "v3"):
        write(desk, visitor)
    assert assignees(desk, "v1", "v2", "v3") == [None, None, None]
    desk.online("alice")
    assert assignees(desk, "v1", "v2", "v3") == ["alice", "alice", None]
    desk.step(OperatorCapacity("alice", 3))
    assert assignees(desk, "v3") == ["alice"]
    assert desk.effects(NotifyTeam)[0] == NotifyTeam("alice", "online", 3, 2)
    with pytest.raises(InvalidMove, match="the team is unchanged: cannot set alice's capacity"):
        desk.step(OperatorCapacity("alice", -1))


def test_silent_assignee_is_replaced_once_per_wait() -> None:
    """A visitor waiting reassign_after on its assignee goes to another with
    room; with nobody else it stays."""
    desk = auto(reassign_after=120.0)
    desk.online("alice")
    write(desk, "v1", at=0.0)
    assert SetTimer(Timer(TimerKind.SILENCE, cid("v1")), 120.0) in desk.all_effects
    desk.step(TimerFired(Timer(TimerKind.SILENCE, cid("v1"))), at=120.0)
    assert assignees(desk, "v1") == ["alice"]  # nobody else
    desk.online("bob")
    write(desk, "v2", at=130.0)  # bob: round robin
    write(desk, "v3", at=140.0)  # alice
    desk.step(TimerFired(Timer(TimerKind.SILENCE, cid("v3"))), at=200.0)  # stale: not due
    assert assignees(desk, "v3") == ["alice"]
    desk.step(TimerFired(Timer(TimerKind.SILENCE, cid("v3"))), at=260.0)
    assert assignees(desk, "v3") == ["bob"]
    assert SetTimer(Timer(TimerKind.SILENCE, cid("v3")), 380.0) in desk.all_effects
    desk.step(OperatorReply(cid("v3"), "bob", "hi"), at=270.0)
    assert desk.conversation("v3").waiting_since is None


def test_reopened_or_woken_goes_back_to_an_online_assignee() -> None:
    """A reopened conversation returns to its assignee if online, even at
    capacity; otherwise it is routed anew."""
    desk = auto(default_capacity=1)
    desk.online("alice", "bob")
    write(desk, "v1")  # alice
    desk.step(Resolve(cid("v1"), "alice"))
    write(desk, "v2")  # bob
    write(desk, "v3")  # alice
    write(desk, "v1", "again")
    assert assignees(desk, "v1") == ["alice"]
    assert loads(desk) == {"alice": 2, "bob": 1}
    desk.step(Resolve(cid("v1"), "alice"))
    desk.step(OperatorAvailability("alice", Availability.OFFLINE))
    desk.step(Reopen(cid("v1"), "bob"))
    assert desk.conversation("v1").assignee is None  # bob is full


def test_unassigning_passes_it_to_someone_else() -> None:
    """Giving a conversation back under automatic routing gives it to the
    next operator with room, never back to the one who let go."""
    desk = auto()
    desk.online("alice", "bob")
    write(desk, "v1")
    desk.step(Assign(cid("v1"), None, "alice"))
    assert assignees(desk, "v1") == ["bob"]
    desk.step(OperatorAvailability("alice", Availability.AWAY))
    desk.step(Assign(cid("v1"), None, "bob"))
    assert assignees(desk, "v1") == [None]
    assert desk.conversation("v1").status is Status.OPEN


def test_one_transition_routes_at_most_a_batch() -> None:
    """Past max_batch, a transition routes a batch and sets a route timer due
    now; firing it routes the next batch."""
    desk = auto(bounds=Bounds(max_batch=2))
    for visitor in ("v1", "v2", "v3", "v4", "v5"):
        write(desk, visitor, at=1.0)
    desk.online("alice")
    assert assignees(desk, "v1", "v2", "v3") == ["alice", "alice", None]
    assert SetTimer(Timer(TimerKind.ROUTE), 1.0) in desk.all_effects
    desk.step(TimerFired(Timer(TimerKind.ROUTE)))
    assert assignees(desk, "v3", "v4", "v5") == ["alice", "alice", None]
    desk.step(TimerFired(Timer(TimerKind.ROUTE)))
    assert assignees(desk, "v5") == ["alice"]
    assert loads(desk) == {"alice": 5}


def test_visitors_hear_when_the_first_operator_comes_and_the_last_goes() -> None:
    """Availability is announced when it flips: first online, last no longer online."""
    desk = Desk()
    desk.step(OperatorAvailability("alice", Availability.ONLINE))
    assert desk.effects(AnnounceAvailability) == [AnnounceAvailability(True)]
    desk.step(OperatorAvailability("bob", Availability.ONLINE))
    assert desk.effects(AnnounceAvailability) == []
    desk.step(OperatorAvailability("alice", Availability.OFFLINE))
    desk.step(OperatorAvailability("bob", Availability.AWAY))
    assert desk.effects(AnnounceAvailability) == [AnnounceAvailability(False)]
    desk.step(OperatorAvailability("bob", Availability.AWAY))
    assert desk.all_effects == ()


def test_by_hand_an_offline_assignee_keeps_its_conversations() -> None:
    """routing = manual: going offline moves nothing."""
    desk = Desk(fallback_after=0)
    desk.online("alice", "bob")
    write(desk, "v1")
    desk.step(Assign(cid("v1"), "alice", "alice"))
    desk.step(OperatorAvailability("alice", Availability.OFFLINE))
    assert assignees(desk, "v1") == ["alice"]


def test_the_team_is_bounded() -> None:
    """Past max_operators nobody else joins, and the refusal says so."""
    desk = Desk(bounds=Bounds(max_operators=2))
    desk.online("alice", "bob")
    with pytest.raises(InvalidMove, match="the team is full \\(2 operators\\)"):
        desk.online("carol")


def test_joining_operator_brings_its_load() -> None:
    """An operator the team did not know, joining, counts the open
    conversations already assigned to it."""
    desk = Desk(fallback_after=0)
    desk.online("alice")
    write(desk, "v1")
    desk.step(Assign(cid("v1"), "alice", "alice"))
    fresh = Desk(desk.settings)
    fresh.inbox.load(desk.inbox.conversations())
    fresh.online("alice")
    assert loads(fresh) == {"alice": 1}
