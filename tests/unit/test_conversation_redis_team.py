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
from collections.abc import Callable, Generator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater

from tests.conversation_desk import ROUTE
from tests.redis_server import RedisServer
from tests.redis_store_link import redis_link
from tests.unit.test_conversation_redis_feed import Daemon, until
from wsdaemon.broker.link import RedisLink
from wsdaemon.conversations import Availability, ConversationSettings, OperatorAvailability
from wsdaemon.conversations.effects import Commit
from wsdaemon.conversations.errors import StaleConversation
from wsdaemon.conversations.model import Conversation, conversation_id_for
from wsdaemon.conversations.routing import OperatorState, Team
from wsdaemon.support.peers import raises_load
from wsdaemon.support.redis_catchup import Backlog
from wsdaemon.support.redis_news import Change
from wsdaemon.support.redis_scripts import TEAM
from wsdaemon.support.redis_store import RedisConversationStore

pytestmark = pytest.mark.slow

Links = Callable[..., RedisLink]


@pytest.fixture
def made(redis_server: RedisServer) -> Generator[Links, None, None]:
    made: list[RedisLink] = []

    def make(**kwargs: Any) -> RedisLink:
        kwargs.setdefault("daemon_id", f"d{len(made) + 1}")
        link = redis_link(redis_server, **kwargs)
        made.append(link)
        return link

    yield make
    for link in made:
        pytest_twisted.blockon(link.stop())


def _held(daemon: Daemon, operator: str) -> Any:
    d = daemon.link.call("HGET", f"{daemon.link.prefix}c:held", operator)
    d.addCallback(lambda raw: None if raw is None else sorted(json.loads(raw)))
    return d


@pytest_twisted.inlineCallbacks
def test_released_on_one_daemon_still_held_on_the_other(
        made: Links) -> Generator[Any, Any, None]:
    """Bob holds connections to A and B: B's release answers that a live
    daemon still holds him; A's then answers none; c:held follows."""
    settings = ConversationSettings(fallback_after=0)
    a, b = Daemon(made(), settings, 0.2), Daemon(made(), settings, 0.2)
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
def test_the_heartbeat_says_exactly_what_is_held(made: Links) -> Generator[Any, Any, None]:
    """A hold lost (Redis away when it was sent) is written by the next
    heartbeat; a holder entry of this daemon it no longer holds is taken
    out, and so are daemons not beating (one never seen, one that stopped)."""
    settings = ConversationSettings(fallback_after=0)
    a, b = Daemon(made(), settings, 0.2), Daemon(made(), settings, 0.2)
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
        made: Links) -> Generator[Any, Any, None]:
    """Bob became available through B and holds a connection to A too; B
    hangs: after three heartbeats nobody lets him go (A holds him), and his
    entry names A now (a daemon starting later learns him from A)."""
    settings = ConversationSettings(fallback_after=0)
    a, b = Daemon(made(), settings, 0.2), Daemon(made(), settings, 0.2)
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
def test_a_commit_raising_a_load_is_checked_against_the_teams_version(
        made: Links) -> Generator[Any, Any, None]:
    """Two daemons route a new conversation each to Bob, both decided on
    team version 0: the first lands (version 1, in its event), the second
    is refused naming TEAM and writes nothing; decided again on version 1,
    it lands. A commit raising no load is not checked."""
    link = made()
    a = RedisConversationStore(link, link.prefix, reactor)
    b = RedisConversationStore(made(), link.prefix, reactor)
    yield a.commit(_new(1), {"team_version": 1})
    with pytest.raises(StaleConversation) as refused:
        yield b.commit(_new(2), {"team_version": 1})
    assert refused.value.conversation_ids == (TEAM,)
    assert (yield b.load(conversation_id_for(ROUTE, "v2"))) is None
    yield b.commit(_new(2), {"team_version": 2})
    yield b.commit(_new(3))  # not checked
    assert (yield link.call("GET", f"{link.prefix}c:team:version")) == "2"
    events = yield link.call("XRANGE", f"{link.prefix}events", "-", "+")
    assert [json.loads(fields[1]).get("team_version") for _, fields in events] == [1, 2, None]
    yield b.load_live()
    assert b.loaded_team_version == 2


def _change(key: str, version: int, team: int | None) -> Change:
    conversation = Conversation(key, ROUTE, key, created_at=1.0, opened_at=1.0,
                                last_activity_at=1.0, version=version)
    return Change("d2", version, (conversation,), (), None, team_version=team)


def test_the_backlog_claims_load_raising_changes_after_their_conversations_earlier_ones(
        ) -> None:
    """A commit refused for the team's version takes every change that
    raised a load up to the stored version, each after the changes of its
    conversation before it (their deliveries stay in order); the view's
    version is then the stored one, and the stream bringing version 2 ends
    the wait for it."""
    backlog = Backlog(Clock())
    earlier = backlog.pending(_change("x", 1, None))
    raised = backlog.pending(_change("x", 2, 1))
    other = backlog.pending(_change("y", 1, None))
    later = backlog.pending(_change("z", 1, 2))
    for pending in (earlier, raised, other, later):
        backlog.saw(pending.change)
    assert backlog.following(TEAM)
    taken = backlog.claim_up_to(TEAM, 1)
    assert [(a.conversations[0].conversation_id, a.conversations[0].version)
            for a in taken] == [("x", 1), ("x", 2)]
    assert backlog.team_version == 1
    assert not other.done and not later.done
    assert backlog.read_up_to(TEAM, 2).called
    assert not backlog.read_up_to(TEAM, 3).called
    assert later.claim() and backlog.team_version == 2


def test_only_raising_a_capped_operators_load_is_checked() -> None:
    """A transition that gives an operator with a capacity one more open
    conversation is checked against the team's version; one without a cap
    cannot be overfilled, and a lowered load never overshoots."""
    before = Team((OperatorState("alice", Availability.ONLINE, capacity=2, load=1),
                   OperatorState("bob", Availability.ONLINE, capacity=0, load=4)))
    assert raises_load(before, before.with_load("alice", +1))
    assert not raises_load(before, before.with_load("bob", +1))
    assert not raises_load(before, before.with_load("alice", -1))
    assert not raises_load(before, before)
