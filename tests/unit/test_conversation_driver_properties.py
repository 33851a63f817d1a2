"""
The conversation driver under random interleavings (hypothesis): events for
several conversations and the team arrive while commits are in flight, land
in any order or fail, and the clock moves. Whatever happens, no two commits
of one conversation are ever in flight together, no message reaches a
visitor before it is stored, and once everything has landed the driver's
view and the store hold the same conversations.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.driver_bench import ROUTE, Bench, cid
from wsdaemon.conversations import (
    AddNote,
    Assign,
    Availability,
    ConversationSettings,
    OperatorAvailability,
    OperatorRead,
    OperatorReply,
    OperatorTyping,
    Reopen,
    Resolve,
    Routing,
    Snooze,
    Status,
    Timer,
    VisitorMessage,
    VisitorTyping,
    due_times,
)
from wsdaemon.support.memory import stored_form

VISITORS = ("v1", "v2", "v3")
OPERATORS = ("alice", "bob")

visitors = st.sampled_from(VISITORS)
operators = st.sampled_from(OPERATORS)
keys = visitors.map(cid)

events = st.one_of(
    st.builds(VisitorMessage, st.just(ROUTE), visitors, st.just("hi"),
              st.none() | st.sampled_from(["c1", "c2"])),
    st.builds(VisitorTyping, st.just(ROUTE), visitors, st.booleans()),
    st.builds(OperatorReply, keys, operators, st.just("Hello")),
    st.builds(AddNote, keys, operators, st.just("note")),
    st.builds(Assign, keys, st.none() | operators, operators),
    st.builds(Resolve, keys, operators),
    st.builds(Reopen, keys, operators),
    st.builds(Snooze, keys, operators, st.none() | st.just(10_000.0)),
    st.builds(OperatorRead, keys, operators, st.integers(0, 5)),
    st.builds(OperatorTyping, keys, operators, st.booleans()),
    st.builds(OperatorAvailability, operators, st.sampled_from(Availability)),
)
steps = st.lists(st.one_of(
    st.tuples(st.just("event"), events),
    st.tuples(st.just("event"), events),
    st.tuples(st.just("event"), events),
    st.tuples(st.just("land"), st.integers(0, 5)),
    st.tuples(st.just("fail"), st.integers(0, 5)),
    st.tuples(st.just("advance"), st.sampled_from([1.0, 7.0, 25.0])),
), min_size=1, max_size=50)
core_settings = st.builds(
    ConversationSettings, routing=st.sampled_from(Routing),
    default_capacity=st.integers(0, 2), reassign_after=st.sampled_from([0.0, 30.0]),
    fallback_after=st.sampled_from([0.0, 20.0]), max_open_total=st.sampled_from([0, 3]),
    typing_timeout=st.just(5.0))


def run(bench: Bench, drawn: list[tuple[str, Any]]) -> None:
    """The team and every visitor's conversation first, then the drawn steps."""
    for operator in OPERATORS:
        bench.submit(OperatorAvailability(operator, Availability.ONLINE))
    for visitor in VISITORS:
        bench.submit(VisitorMessage(ROUTE, visitor, "first"))
    store = bench.store
    store.gated = True
    for action, value in drawn:
        if action == "event":
            bench.submit(value)
        elif action == "advance":
            bench.clock.advance(value)
        elif store.held:
            index = value % len(store.held)
            if action == "land":
                store.land(index)
            else:
                store.refuse(index, OSError("disk full"))
    store.gated = False
    store.land_all()


def check(bench: Bench) -> None:
    store = bench.store.inner
    inbox = bench.driver.inbox
    assert bench.store.overlaps == [], "two commits of one conversation in flight"
    assert bench.ports.unstored == [], "a message reached the visitor before it was stored"
    assert bench.driver.waiting(None) == 0 and bench.store.held == []
    for conversation in inbox.conversations():
        assert store.conversations[conversation.conversation_id] == stored_form(conversation)
    for key, stored in store.conversations.items():
        if stored.status is not Status.RESOLVED:
            held = inbox.conversation(key)
            assert held is not None and stored_form(held) == stored
        # Nothing due later is without its timer (an overdue one may have
        # fired and done nothing, as a silence with nobody to take over).
        for kind, at in due_times(stored, bench.settings).items():
            if at is not None and at > bench.clock.seconds():
                assert Timer(kind, key) in bench.driver.timers.pending(), (kind, stored)
    for operator in inbox.team.operators:
        assert operator.load == inbox.load_of(operator.name)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(core=core_settings, drawn=steps)
def test_interleavings_keep_store_and_view_equal(core: ConversationSettings,
                                                 drawn: list[tuple[str, Any]]) -> None:
    """Random events, landings, failures and time: the view is what the store holds."""
    bench = Bench(core)
    run(bench, drawn)
    check(bench)
