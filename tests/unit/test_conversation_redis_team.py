"""
The team across daemons in Redis keys (support/redis_team.py): presence
per daemon (C{c:held}: which daemons hold a connection of an operator),
kept exact by each heartbeat, and a gone daemon's operator let go only
when no live daemon holds it. Real redis-server, the broker's real links,
the real drivers and feeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from tests.redis_server import RedisServer
from tests.redis_store_link import redis_link
from tests.unit.test_conversation_redis_feed import Daemon, until
from wsdaemon.broker.link import RedisLink
from wsdaemon.conversations import Availability, ConversationSettings, OperatorAvailability

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

