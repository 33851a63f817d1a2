"""
A capacity changed on one daemon while another routes on the one it knew
(support/redis_scripts.py, redis_feed.py): the commit script checks the
capacity the operator's team entry holds, so routing never gives an
operator more than its current capacity, whatever news a daemon has not
read yet; the refused daemon takes the stored capacity into its view.
And a name joined by a reload writes its team entry only if it has none.
Real redis-server, the broker's real links, the real drivers and feeds.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from tests.conversation_desk import ROUTE, cid
from tests.redis_store_link import Links
from tests.unit.test_conversation_redis_feed import Daemon, until
from wsdaemon.conversations import (
    Availability,
    ConversationSettings,
    Inbox,
    NotifyTeam,
    OperatorAvailability,
    Routing,
    VisitorMessage,
)
from wsdaemon.conversations.effects import Commit
from wsdaemon.conversations.errors import StaleConversation
from wsdaemon.conversations.events import Assign, OperatorCapacity
from wsdaemon.conversations.model import Conversation, conversation_id_for
from wsdaemon.conversations.routing import OperatorState, Team
from wsdaemon.support.peers import Adopted, adopted_team
from wsdaemon.support.redis_scripts import TEAM
from wsdaemon.support.redis_store import RedisConversationStore
from wsdaemon.support.redis_team import TeamPresence

pytestmark = pytest.mark.slow

def hold_news(daemon: Daemon) -> list[dict[str, Any]]:
    """
    From now on C{daemon} reads no news (what stores nothing: availability,
    capacity, typing) until the test hands it the list returned: as if it
    were slow to read the stream.
    """
    held: list[dict[str, Any]] = []
    handlers = daemon.link._event_handlers
    follow = handlers[0]

    def gated(events: list[dict[str, Any]]) -> None:
        held.extend(e for e in events if e.get("type") == "conversation_news")
        follow([e for e in events if e.get("type") != "conversation_news"])

    handlers[0] = gated
    return held


def _capacity_written(daemon: Daemon, operator: str, capacity: int) -> Deferred[None]:
    """Fires once the operator's team entry holds C{capacity}."""
    async def poll() -> None:
        waited = 0.0
        while True:
            raw = await daemon.link.call("HGET", f"{daemon.link.prefix}c:team", operator)
            if raw is not None and json.loads(raw)["capacity"] == capacity:
                return
            assert waited < 5, raw
            await deferLater(reactor, 0.02, lambda: None)
            waited += 0.02

    return Deferred.fromCoroutine(poll())


@pytest_twisted.inlineCallbacks
def test_a_capacity_lowered_on_another_daemon_is_checked(
        links: Links) -> Generator[Any, Any, None]:
    """
    Automatic routing. Bob is online with a capacity of 2, on both
    daemons' views. A lowers it to 1; B has not read that news yet (held).
    B routes v1 to Bob (load 1: within 1), then v2: its view says room
    (capacity 2), but the commit script checks the stored capacity, 1, and
    refuses it; B takes the stored capacity and decides again: v2 waits
    for room. Bob never holds more than his capacity; B's view learns
    capacity 1 at once, B's operators when the news comes. (Before: v2 went
    to Bob, load 2.)
    """
    settings = ConversationSettings(fallback_after=0, routing=Routing.AUTO)
    a, b = Daemon(links(), settings, 0.2), Daemon(links(), settings, 0.2)
    yield a.start()
    yield b.start()
    try:
        yield b.driver.submit(OperatorCapacity("bob", 2))
        yield b.driver.submit(OperatorAvailability("bob", Availability.ONLINE))
        yield until(lambda: a.driver.inbox.team.is_online("bob"))
        assert a.driver.inbox.team.get("bob").capacity == 2  # type: ignore[union-attr]
        held = hold_news(b)
        yield a.driver.submit(OperatorCapacity("bob", 1))
        yield _capacity_written(a, "bob", 1)
        assert b.driver.inbox.team.get("bob").capacity == 2  # type: ignore[union-attr]
        yield b.driver.submit(VisitorMessage(ROUTE, "v1", "help"))
        yield b.driver.submit(VisitorMessage(ROUTE, "v2", "help too"))
        assigned = {v: b.driver.inbox.conversation(cid(v)).assignee  # type: ignore[union-attr]
                    for v in ("v1", "v2")}
        assert assigned == {"v1": "bob", "v2": None}
        stored = yield b.store.load(cid("v2"))
        assert stored.assignee is None
        bob = b.driver.inbox.team.get("bob")
        assert (bob.capacity, bob.load) == (1, 1)  # type: ignore[union-attr]
        # The news comes late: it changes nothing more; B's operators see it.
        b.feed._events(held)
        yield until(lambda: [e.capacity for e in b.told(NotifyTeam) if e.operator == "bob"][-1]
                    == 1)
        assert b.driver.inbox.team.get("bob").capacity == 1  # type: ignore[union-attr]
        yield until(lambda: a.driver.inbox.conversation(cid("v2")) is not None)
        assert a.driver.inbox.team.get("bob").load == 1  # type: ignore[union-attr]
    finally:
        yield a.stop()
        yield b.stop()


@pytest_twisted.inlineCallbacks
def test_an_assignment_by_hand_past_the_stored_capacity_is_kept(
        links: Links) -> Generator[Any, Any, None]:
    """
    By hand an operator may be given more than its capacity: B assigns v2
    to Bob while its view says capacity 2 and the store 1; the commit is
    refused once, B learns capacity 1, and the assignment, now past the
    capacity on purpose, lands (it does not rest on room).
    """
    settings = ConversationSettings(fallback_after=0, routing=Routing.MANUAL)
    a, b = Daemon(links(), settings, 0.2), Daemon(links(), settings, 0.2)
    yield a.start()
    yield b.start()
    try:
        yield b.driver.submit(OperatorCapacity("bob", 2))
        yield b.driver.submit(OperatorAvailability("bob", Availability.ONLINE))
        yield until(lambda: a.driver.inbox.team.is_online("bob"))
        hold_news(b)
        yield a.driver.submit(OperatorCapacity("bob", 1))
        yield _capacity_written(a, "bob", 1)
        for visitor in ("v1", "v2"):
            yield b.driver.submit(VisitorMessage(ROUTE, visitor, "help"))
            yield b.driver.submit(Assign(cid(visitor), "bob", by="alice"))
        stored = yield b.store.load(cid("v2"))
        assert stored.assignee == "bob"
        bob = b.driver.inbox.team.get("bob")
        assert (bob.capacity, bob.load) == (1, 2)  # type: ignore[union-attr]
    finally:
        yield a.stop()
        yield b.stop()


def _new(n: int) -> Commit:
    key = conversation_id_for(ROUTE, f"v{n}")
    return Commit((Conversation(key, ROUTE, f"v{n}", created_at=1.0, opened_at=1.0,
                                last_activity_at=1.0, version=1, assignee="bob",
                                assigned_at=1.0),))


@pytest_twisted.inlineCallbacks
def test_the_script_checks_the_capacity_the_team_entry_holds(
        links: Links) -> Generator[Any, Any, None]:
    """
    Bob's entry says capacity 1. A commit whose view says capacity 2 (load
    1 -> 2) is refused; one whose view says no cap is checked against the
    entry too; one past the capacity on purpose (-1) lands, counted. With
    the entry saying 0 (no cap), or no entry, the view's capacity is the
    one checked.
    """
    link = links()
    store = RedisConversationStore(link, link.prefix, reactor)
    entry = f"{link.prefix}c:team"
    yield link.call("HSET", entry, "bob", json.dumps(
        {"availability": "online", "capacity": 1, "daemon": "d9"}))
    yield store.commit(_new(1), {"team_raise": {"bob": [0, 1, 2]}})
    for told in ([1, 2, 2], [1, 2, 0]):
        with pytest.raises(StaleConversation) as refused:
            yield store.commit(_new(2), {"team_raise": {"bob": told}})
        assert refused.value.conversation_ids == (TEAM + "bob",)
    yield store.commit(_new(2), {"team_raise": {"bob": [1, 2, -1]}})
    yield link.call("HSET", entry, "bob", json.dumps(
        {"availability": "online", "capacity": 0, "daemon": "d9"}))
    yield store.commit(_new(3), {"team_raise": {"bob": [2, 3, 2]}})  # no cap stored
    yield link.call("HDEL", entry, "bob")
    with pytest.raises(StaleConversation):
        yield store.commit(_new(4), {"team_raise": {"bob": [3, 4, 3]}})  # the view's: 3
    yield link.call("HSET", entry, "bob", "not json")
    with pytest.raises(StaleConversation):
        yield store.commit(_new(4), {"team_raise": {"bob": [3, 4, 3]}})  # malformed: the view's
    assert (yield link.call("HGET", f"{link.prefix}c:team:raised", "bob")) == "3"


@pytest_twisted.inlineCallbacks
def test_a_joined_name_does_not_overwrite_a_team_entry(
        links: Links) -> Generator[Any, Any, None]:
    """A name joined by a reload writes its (offline) entry only if it has
    none: Bob's entry, online through another daemon, stays; one that left
    keeps its entry; Carol, unknown, gets hers."""
    link = links()
    team = TeamPresence(link, reactor, 2.0)
    key = f"{link.prefix}c:team"
    online = json.dumps({"availability": "online", "capacity": 2, "daemon": "d9"})
    yield link.call("HSET", key, "bob", online)
    team.record(NotifyTeam("bob", "offline", 0, 0, joined=True))
    team.record(NotifyTeam("bob", "offline", 0, 0, left=True))
    team.record(NotifyTeam("carol", "offline", 3, 0, joined=True))
    carol = yield link.call("HGET", key, "carol")
    assert json.loads(carol) == {"availability": "offline", "capacity": 3, "daemon": "d1"}
    assert (yield link.call("HGET", key, "bob")) == online


def test_a_stored_capacity_changes_only_the_capacity() -> None:
    """What a refused daemon takes of the store (Adopted.capacities): the
    capacity only; the availability the view holds by then (Bob went
    offline meanwhile) stays; an operator the view does not hold is not
    added."""
    inbox = Inbox(ConversationSettings())
    inbox.team = Team((OperatorState("bob", Availability.OFFLINE, capacity=2, load=1),))
    stored = Adopted((), durable=False, capacities=(("bob", 1), ("zed", 4)))
    assert adopted_team(inbox, stored) == Team(
        (OperatorState("bob", Availability.OFFLINE, capacity=1, load=1),))
