"""
The team across daemons in Redis keys (support/redis_team.py): presence
per daemon (C{c:held}: which daemons hold a connection of an operator),
kept exact by each heartbeat, and a gone daemon's operator let go only
when no live daemon holds it; the team's version checked by the commit
script for commits raising a load, and caught up with (redis_catchup).
Real redis-server, the broker's real links, the real drivers and feeds.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater

from tests.conversation_desk import ROUTE
from tests.redis_store_link import Links
from tests.unit.test_conversation_redis_feed import Daemon, until
from wsdaemon.conversations import Availability, ConversationSettings, OperatorAvailability
from wsdaemon.conversations.effects import Commit
from wsdaemon.conversations.errors import StaleConversation
from wsdaemon.conversations.model import Conversation, conversation_id_for
from wsdaemon.conversations.routing import OperatorState, Team
from wsdaemon.support.peers import raised_loads
from wsdaemon.support.redis_catchup import Backlog
from wsdaemon.support.redis_news import Change
from wsdaemon.support.redis_scripts import TEAM
from wsdaemon.support.redis_store import RedisConversationStore

pytestmark = pytest.mark.slow

def _held(daemon: Daemon, operator: str) -> Any:
    d = daemon.link.call("HGET", f"{daemon.link.prefix}c:held", operator)
    d.addCallback(lambda raw: None if raw is None else sorted(json.loads(raw)))
    return d


@pytest_twisted.inlineCallbacks
def test_released_on_one_daemon_still_held_on_the_other(
        links: Links) -> Generator[Any, Any, None]:
    """Bob holds connections to A and B: B's release answers that a live
    daemon still holds him; A's then answers none; c:held follows."""
    settings = ConversationSettings(fallback_after=0)
    a, b = Daemon(links(), settings, 0.2), Daemon(links(), settings, 0.2)
    yield a.start()
    yield b.start()
    try:
        yield a.team.hold("bob")
        yield b.team.hold("bob")
        yield b.team.hold("bob")  # twice: held once
        assert (yield _held(a, "bob")) == ["d1", "d2"]
        assert (yield b.team.release("bob")) is True
        assert (yield _held(a, "bob")) == ["d1"]
        assert (yield a.team.release("bob")) is False
        assert (yield _held(a, "bob")) is None
    finally:
        yield a.stop()
        yield b.stop()


@pytest_twisted.inlineCallbacks
def test_the_heartbeat_says_exactly_what_is_held(links: Links) -> Generator[Any, Any, None]:
    """A hold lost (Redis away when it was sent) is written by the next
    heartbeat; a holder entry of this daemon it no longer holds is taken
    out, and so are daemons not beating (one never seen, one that stopped)."""
    settings = ConversationSettings(fallback_after=0)
    a, b = Daemon(links(), settings, 0.2), Daemon(links(), settings, 0.2)
    yield a.start()
    yield b.start()
    try:
        a.team._here.add("carol")  # as if its HOLD had been lost
        yield a.link.call("HSET", f"{a.link.prefix}c:held", "dave",
                          json.dumps(["d1", "d2", "d9"]))
        b.team._here.add("dave")
        yield b.team.hold("erin")
        yield until_held(a, "carol", ["d1"])
        yield until_held(a, "dave", ["d2"])
        b.team.stop()  # B hangs: after 3 heartbeats it holds nobody
        yield until_held(a, "erin", None, timeout=5)
        yield until_held(a, "dave", None)
    finally:
        yield a.stop()
        yield b.stop()


@inlineCallbacks
def until_held(daemon: Daemon, operator: str, expected: list[str] | None,
               timeout: float = 3.0) -> Generator[Any, Any, None]:
    """Polls C{c:held} (one read at a time) until it says C{expected}."""
    waited = 0.0
    while (yield _held(daemon, operator)) != expected:
        if waited > timeout:
            raise AssertionError(f"{operator} is not held by {expected}")
        yield deferLater(reactor, 0.05, lambda: None)
        waited += 0.05


@pytest_twisted.inlineCallbacks
def test_a_gone_daemons_operator_held_elsewhere_is_not_let_go(
        links: Links) -> Generator[Any, Any, None]:
    """Bob became available through B and holds a connection to A too; B
    hangs: after three heartbeats nobody lets him go (A holds him), and his
    entry names A now (a daemon starting later learns him from A)."""
    settings = ConversationSettings(fallback_after=0)
    a, b = Daemon(links(), settings, 0.2), Daemon(links(), settings, 0.2)
    yield a.start()
    yield b.start()
    try:
        yield a.team.hold("bob")
        yield b.team.hold("bob")
        yield b.driver.submit(OperatorAvailability("bob", Availability.ONLINE))
        yield until(lambda: a.driver.inbox.team.is_online("bob"))
        b.team.stop()
        waited = 0.0
        while (entry := json.loads((yield a.link.call(
                "HGET", f"{a.link.prefix}c:team", "bob"))))["daemon"] != "d1":
            assert waited < 10, entry
            yield deferLater(reactor, 0.05, lambda: None)
            waited += 0.05
        assert entry["availability"] == "online"
        assert a.team.let_go == 0 and a.driver.inbox.team.is_online("bob")
    finally:
        yield a.stop()
        yield b.stop()



def _new(n: int) -> Commit:
    key = conversation_id_for(ROUTE, f"v{n}")
    return Commit((Conversation(key, ROUTE, f"v{n}", created_at=1.0, opened_at=1.0,
                                last_activity_at=1.0, version=1, assignee="bob",
                                assigned_at=1.0),))


@pytest_twisted.inlineCallbacks
def test_a_commit_raising_a_load_is_refused_only_when_the_room_may_be_full(
        links: Links) -> Generator[Any, Any, None]:
    """Bob has a capacity of 2. Two daemons each route a conversation to
    him, both having seen no raise (load 0 -> 1): both land (two unseen
    raises at most fill his room). A third decided on the same view (load
    1 -> 2, nothing seen) is refused naming him and writes nothing: with
    the 2 raises seen it lands. Each event says the count after it; a
    commit raising no load is not counted."""
    link = links()
    a = RedisConversationStore(link, link.prefix, reactor)
    b = RedisConversationStore(links(), link.prefix, reactor)
    yield a.commit(_new(1), {"team_raise": {"bob": [0, 1, 2]}})
    yield b.commit(_new(2), {"team_raise": {"bob": [0, 1, 2]}})
    with pytest.raises(StaleConversation) as refused:
        yield b.commit(_new(3), {"team_raise": {"bob": [0, 2, 2]}})
    assert refused.value.conversation_ids == (TEAM + "bob",)
    assert (yield b.load(conversation_id_for(ROUTE, "v3"))) is None
    yield b.commit(_new(3), {"team_raise": {"bob": [2, 3, 0]}})  # no cap: counted only
    yield b.commit(_new(4))
    assert (yield link.call("HGET", f"{link.prefix}c:team:raised", "bob")) == "3"
    events = yield link.call("XRANGE", f"{link.prefix}events", "-", "+")
    told = [json.loads(fields[1]) for _, fields in events]
    assert [e.get("team_raised") for e in told] == [{"bob": 1}, {"bob": 2}, {"bob": 3}, None]
    assert all("team_raise" not in e for e in told)
    yield b.load_live()
    assert b.loaded_team_raised == {"bob": 3}


def _change(key: str, version: int, raised: dict[str, int] | None) -> Change:
    conversation = Conversation(key, ROUTE, key, created_at=1.0, opened_at=1.0,
                                last_activity_at=1.0, version=version)
    return Change("d2", version, (conversation,), (), None, team_raised=raised)


def test_the_backlog_claims_load_raising_changes_after_their_conversations_earlier_ones(
        ) -> None:
    """A commit refused because Bob's room may be full takes every change
    that raised Bob's load up to the stored count, each after the changes
    of its conversation before it (their deliveries stay in order), and
    none that raised only another's; the view's count is then the stored
    one, and the stream bringing count 2 ends the wait for it."""
    backlog = Backlog(Clock())
    earlier = backlog.pending(_change("x", 1, None))
    raised = backlog.pending(_change("x", 2, {"bob": 1}))
    other = backlog.pending(_change("y", 1, {"alice": 1}))
    later = backlog.pending(_change("z", 1, {"bob": 2}))
    for pending in (earlier, raised, other, later):
        backlog.saw(pending.change)
    assert backlog.following(TEAM + "bob")
    taken = backlog.claim_up_to(TEAM + "bob", 1)
    assert [(a.conversations[0].conversation_id, a.conversations[0].version)
            for a in taken] == [("x", 1), ("x", 2)]
    assert backlog.raised == {"bob": 1}
    assert not other.done and not later.done
    assert backlog.read_up_to(TEAM + "bob", 2).called
    assert not backlog.read_up_to(TEAM + "bob", 3).called
    assert later.claim() and backlog.raised == {"bob": 2}


def test_raised_loads_say_what_the_view_holds() -> None:
    """What a commit tells the script of the loads it raises: each raised
    operator with the raises of it the view holds, its load after and its
    capacity in the view (0: none: the store's capacity, if it holds one, is
    checked; a load taken past it by hand is told as -1, never refused); a
    lowered load is not told."""
    before = Team((OperatorState("alice", Availability.ONLINE, capacity=2, load=1),
                   OperatorState("bob", Availability.ONLINE, capacity=0, load=4)))
    seen = {"alice": 7}
    assert raised_loads(before, before.with_load("alice", +1), seen) == {"alice": [7, 2, 2]}
    assert raised_loads(before, before.with_load("bob", +1), seen) == {"bob": [0, 5, 0]}
    past = before.with_load("alice", +1).with_load("alice", +1)  # by hand, past its room
    assert raised_loads(before, past, seen) == {"alice": [7, 3, -1]}
    assert raised_loads(before, before.with_load("alice", -1), seen) == {}
    assert raised_loads(before, before, seen) == {}
