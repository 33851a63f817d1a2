"""
The Redis link when Redis is not there, stalls, or cannot take commands:
calls fail after the timeout with an error that says whether they may have
been done, the outage shows in its status and is logged once, and the link
keeps reconnecting, however long it takes, until Redis answers again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import txredisapi
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher

from tests.daemon import free_port
from wsdaemon.broker.link import (
    BrokerOutcomeUnknown,
    BrokerSettings,
    BrokerUnavailable,
    RedisLink,
)

SETTINGS = BrokerSettings(url="redis://127.0.0.1:6379", timeout=5, heartbeat=2,
                          daemon_id="unit")


@pytest_twisted.inlineCallbacks
def test_calls_fail_after_the_timeout_when_redis_is_unreachable() -> Iterator[Any]:
    """Nothing listens: a call fails with BrokerUnavailable; status says down."""
    port = free_port()  # nothing listens there
    link = RedisLink(BrokerSettings(url=f"redis://127.0.0.1:{port}", port=port, timeout=0.3,
                                    heartbeat=10, daemon_id="lonely"), reactor)
    link.start()
    try:
        started = reactor.seconds()
        with pytest.raises(BrokerUnavailable, match="did not answer PING within 0.3 s"):
            yield link.call("PING")
        assert reactor.seconds() - started < 2.0
        status = link.status()
        assert (status["up"], status["outages"], status["daemon_id"]) == (False, 1, "lonely")
        assert status["calls_failed"] >= 1 and status["down_for"] is not None
        with pytest.raises(BrokerUnavailable):
            yield link.call("GET", "lonely")
        assert link.status()["outages"] == 1  # one outage, however many calls fail
    finally:
        yield link.stop()


class FakeConnection:
    """
    What the link sees of one txredisapi connection: each command answers
    with what C{answer} returns for it (a value, an exception, or a Deferred
    left waiting: Redis stalled).
    """

    def __init__(self, server: FakeRedis) -> None:
        self.server = server
        self.lost: Deferred[Any] = Deferred()
        self.open = True

    def execute_command(self, *args: Any) -> Deferred[Any]:
        if not self.open:
            return fail(txredisapi.ConnectionError("Not connected"))
        self.server.sent.append(args)
        return self.server.answer(args)

    def whenDisconnected(self) -> Deferred[Any]:
        return self.lost

    def disconnect(self) -> Deferred[None]:
        self.drop()
        return succeed(None)

    def drop(self) -> None:
        if self.open:
            self.open = False
            for d in self.server.waiting:
                d.errback(txredisapi.ConnectionError("Lost connection"))
            self.server.waiting = []
            self.lost.callback(self)


class FakeRedis:
    """A Redis the test steers: whether it accepts connections, how it answers."""

    def __init__(self) -> None:
        self.accepting = True
        self.mode = "ok"  # "ok", "stalled", "loading"
        self.attempts = 0
        self.sent: list[tuple[Any, ...]] = []
        self.waiting: list[Deferred[Any]] = []
        self.connections: list[FakeConnection] = []

    def connect(self, reply_timeout: float) -> Deferred[Any]:
        self.attempts += 1
        if not self.accepting or self.mode == "stalled":
            # As txredisapi reports a SELECT that timed out or got BUSY.
            return fail(ValueError("Redis error: could not set dbid=0: Not received Redis "
                                   "response in 5 seconds"))
        connection = FakeConnection(self)
        self.connections.append(connection)
        return succeed(connection)

    def answer(self, args: tuple[Any, ...]) -> Deferred[Any]:
        if self.mode == "stalled":
            d: Deferred[Any] = Deferred()
            self.waiting.append(d)
            return d
        if self.mode == "loading":
            return fail(txredisapi.ResponseError("LOADING Redis is loading the dataset in "
                                                 "memory"))
        if args[0] == "PING":
            return succeed("PONG")
        if args[0] == "XREVRANGE":
            return succeed([])
        if args[0] == "XREAD":
            if "BLOCK" in args:
                d = Deferred()
                self.waiting.append(d)
                return d
            return succeed(None)
        return succeed(["ok"])

    def drop_all(self) -> None:
        for connection in self.connections:
            connection.drop()
        self.connections = []


@pytest.fixture
def logged() -> Iterator[list[LogEvent]]:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def started_link(redis: FakeRedis, clock: Clock) -> RedisLink:
    link = RedisLink(SETTINGS, clock, connect=redis.connect)
    link.start()
    assert link.up
    return link


def unreachable_lines(logged: list[LogEvent]) -> list[LogEvent]:
    return [e for e in logged if "redis: unreachable" in e.get("log_format", "")]


def test_reconnects_however_long_connecting_keeps_failing(logged: list[LogEvent]) -> None:
    """
    Redis stalled for 10 minutes: attempts fail the way txredisapi gives up
    for good (could not set dbid); the link keeps trying, at most a second
    apart, logs the outage once, and is up again as soon as Redis answers.
    """
    redis, clock = FakeRedis(), Clock()
    link = started_link(redis, clock)
    redis.mode = "stalled"
    redis.drop_all()
    assert not link.up
    for _ in range(600 * 10):
        clock.advance(0.1)
    assert not link.up and redis.attempts > 500
    assert len(unreachable_lines(logged)) == 1
    redis.mode = "ok"
    clock.advance(1.0)
    assert link.up
    assert link.status()["outages"] == 1
    assert not any(e.get("log_failure") for e in logged)


def test_a_call_sent_but_not_answered_has_an_unknown_outcome() -> None:
    """Sent, then the connection broke: it may have been done (BrokerOutcomeUnknown)."""
    redis, clock = FakeRedis(), Clock()
    link = started_link(redis, clock)
    redis.mode = "stalled"
    failures: list[Any] = []
    link.call("GET", "k").addErrback(failures.append)
    clock.advance(SETTINGS.timeout)  # stalled: sent, never answered
    assert failures and failures[0].check(BrokerOutcomeUnknown)
    link.call("SET", "k", "x").addErrback(failures.append)
    redis.drop_all()
    assert failures[1].check(BrokerOutcomeUnknown)


def test_a_call_never_sent_was_not_done() -> None:
    """No connection for the whole timeout: BrokerUnavailable, not an unknown outcome."""
    redis, clock = FakeRedis(), Clock()
    link = started_link(redis, clock)
    redis.accepting = False
    redis.drop_all()
    sent_before = len(redis.sent)
    failures: list[Any] = []
    link.call("SET", "k", "x").addErrback(failures.append)
    clock.advance(SETTINGS.timeout)
    assert failures and failures[0].check(BrokerUnavailable)
    assert not failures[0].check(BrokerOutcomeUnknown)
    assert not [args for args in redis.sent[sent_before:] if args[0] == "SET"]


def test_a_call_waits_for_the_connection_within_the_timeout() -> None:
    """Connection being made again: the call goes out once it is, and works."""
    redis, clock = FakeRedis(), Clock()
    link = started_link(redis, clock)
    redis.accepting = False
    redis.drop_all()
    results: list[Any] = []
    link.call("PING").addBoth(results.append)
    clock.advance(0.5)
    redis.accepting = True
    clock.advance(1.0)
    assert results == ["PONG"] and link.up


def test_loading_is_an_outage_logged_once(logged: list[LogEvent]) -> None:
    """
    Redis answers LOADING (after a restart): calls fail with
    BrokerUnavailable (not done), the link is down, one log line, no
    traceback; up again within a probe interval once loading ends.
    """
    redis, clock = FakeRedis(), Clock()
    link = started_link(redis, clock)
    redis.mode = "loading"
    redis.drop_all()  # restarted: connecting works (SELECT), commands do not
    failures: list[Any] = []
    for _ in range(50):
        link.call("GET", "x").addErrback(failures.append)
        clock.advance(0.1)
    assert len(failures) == 50
    assert all(f.check(BrokerUnavailable) and not f.check(BrokerOutcomeUnknown)
               for f in failures)
    assert "loading" in failures[0].getErrorMessage()
    assert not link.up
    assert len(unreachable_lines(logged)) == 1
    assert not any(e.get("log_failure") for e in logged)
    redis.mode = "ok"
    clock.advance(link.probe_interval + link.reread_after)
    assert link.up
