"""
A reply a daemon wrote to its client is settled in Redis before any
heartbeat that says "everything I wrote before now is settled" reaches it:
the sweep gives back a live daemon's replies taken well before its last
heartbeat, and a written reply given back is written twice. And a sweep
right after an outage does not take daemons still reconnecting for dead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from wsdaemon.broker.connection import RedisConnection
from wsdaemon.broker.link import BrokerOutcomeUnknown, BrokerSettings, BrokerUnavailable
from wsdaemon.broker.queue import SharedOperatorQueue
from wsdaemon.strategies.operator.queue import OperatorSettings
from wsdaemon.testing import RecordingSession

SETTINGS = OperatorSettings(store_path=Path("unused"), fallback_after=0,
                            fallback_when_offline=False)


class PendingLink:
    """A Redis link whose every call waits until the test answers it."""

    def __init__(self) -> None:
        self.settings = BrokerSettings(url="redis://127.0.0.1", daemon_id="d", timeout=1,
                                       heartbeat=0.5, sweep_interval=0.25)
        self.daemon_id = "d"
        self.prefix = "t:"
        self.up_since: float | None = None
        self.calls: list[tuple[str, tuple[Any, ...], Deferred[Any]]] = []

    def script(self, name: str, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((name, args, d))
        return d

    def call(self, *args: Any) -> Deferred[Any]:
        return self.script(str(args[0]), *args[1:])

    def on_events(self, handler: Any) -> None:
        pass

    def on_recovery(self, handler: Any) -> None:
        pass

    def start(self) -> None:
        pass

    def pending(self, name: str) -> list[tuple[tuple[Any, ...], Deferred[Any]]]:
        return [(args, d) for n, args, d in self.calls if n == name and not d.called]


def settlements(heartbeat_args: tuple[Any, ...]) -> list[tuple[str, str, str]]:
    rest = list(heartbeat_args[4:])  # daemon, operators, now, ttl, then triples
    return [(rest[i], rest[i + 1], rest[i + 2]) for i in range(0, len(rest), 3)]


def started() -> tuple[PendingLink, Clock, SharedOperatorQueue]:
    link, clock = PendingLink(), Clock()
    queue = SharedOperatorQueue(SETTINGS, link, clock)  # type: ignore[arg-type]
    queue.start()
    return link, clock, queue


def test_every_heartbeat_carries_a_written_reply_until_redis_confirms_it() -> None:
    """
    A reply is written and its settlement lost with the connection; during
    the outage a client connects here, so a settle call goes out and waits
    for the connection, then a heartbeat. If only the settle call carried
    the written reply, it could time out unsent while the heartbeat, made
    after it, reaches Redis when it is back: Redis would record "settled up
    to now" without the reply, and the sweep give it back to be written
    again. Every heartbeat carries it until Redis has confirmed it.
    """
    link, clock, queue = started()
    session = RecordingSession(client_id="c1", route="/support")
    queue.client_connected(session)
    assert queue._delivery.write_taken("c1", 7, "answer to c1-7") == 1
    clock.advance(0)  # the end of the turn: takes, settlements, presence go
    [(_, settle)] = link.pending("settle")
    settle.errback(BrokerOutcomeUnknown("Redis did not answer settle within 1 s"))
    queue.client_connected(RecordingSession("s2", client_id="c2", route="/support"))
    clock.advance(0)
    waiting = link.pending("settle")
    clock.advance(0.5)
    [(args, heartbeat)] = link.pending("heartbeat")
    for _, settle in waiting:  # timed out, never sent
        settle.errback(BrokerUnavailable("Redis did not answer settle within 1 s"))
    assert ("c1", "7", "1") in settlements(args)
    heartbeat.errback(BrokerUnavailable("Redis did not answer heartbeat within 1 s"))
    clock.advance(0.5)
    [(args, heartbeat)] = link.pending("heartbeat")
    assert ("c1", "7", "1") in settlements(args)
    heartbeat.callback(1)  # Redis ran it: the reply is settled
    clock.advance(0.5)
    [(args, _)] = link.pending("heartbeat")
    assert settlements(args) == []
    assert session.sent == ["answer to c1-7"]


def test_a_heartbeat_carries_a_written_reply_whose_settlement_is_under_way() -> None:
    """
    A settlement sent and not answered yet may still fail (Redis killed
    before running it): a heartbeat made meanwhile carries it as well.
    """
    link, clock, queue = started()
    queue.client_connected(RecordingSession(client_id="c1", route="/support"))
    queue._delivery.write_taken("c1", 8, "answer")
    clock.advance(0)
    [(_, settle)] = link.pending("settle")
    clock.advance(0.5)
    [(args, heartbeat)] = link.pending("heartbeat")
    assert settlements(args) == [("c1", "8", "1")]
    settle.callback(1)
    heartbeat.callback(1)
    clock.advance(0.5)
    [(args, _)] = link.pending("heartbeat")
    assert settlements(args) == []


def test_a_given_back_settlement_is_sent_again_only_after_it_failed() -> None:
    """
    "Nobody here to write it to" ('0') is not carried while its call is under
    way: run twice, after the client came back and this daemon took the
    reply again, it would give back a reply being written.
    """
    link, clock, queue = started()
    queue._delivery.write_or_keep("c1", 9, "answer")  # nobody connected here
    clock.advance(0)
    [(_, settle)] = link.pending("settle")
    clock.advance(0.5)
    [(args, heartbeat)] = link.pending("heartbeat")
    assert settlements(args) == []
    settle.errback(BrokerOutcomeUnknown("lost"))
    heartbeat.callback(1)
    clock.advance(0.5)
    [(args, _)] = link.pending("heartbeat")
    assert settlements(args) == [("c1", "9", "0")]


def sweep_may_judge_gone(link: PendingLink, clock: Clock, seconds: float) -> bool:
    for _, d in link.pending("sweep"):
        d.callback([0, 0])
    clock.advance(seconds)
    [(args, _)] = link.pending("sweep")
    return bool(args[-1] == "1")


def test_a_sweep_takes_silent_daemons_for_dead_only_once_connected_long_enough() -> None:
    """
    After an outage every daemon's heartbeat has run out; a sweep made as
    soon as this daemon is connected again must not give back what the
    others (still reconnecting) took and wrote. Three heartbeats, plus what
    a reconnection can take, after the link came up, it may.
    """
    link, clock, _ = started()
    assert not sweep_may_judge_gone(link, clock, 10)  # the link is down
    link.up_since = clock.seconds()
    assert not sweep_may_judge_gone(link, clock, 0.25)
    b = link.settings
    assert not sweep_may_judge_gone(link, clock, 3 * b.heartbeat + RedisConnection.max_delay
                                    + b.timeout - 0.5)
    assert sweep_may_judge_gone(link, clock, 0.5)
