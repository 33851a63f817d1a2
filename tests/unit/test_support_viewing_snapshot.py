"""
Viewing news lost between daemons is put right by the heartbeat
(support/viewing.py, ViewingNews.beat; support/redis_team.py): after a
publish failed, the next heartbeat sends a snapshot of everything viewed
here; every SNAPSHOT_EVERY heartbeats one is sent anyway (whatever a
daemon far behind lost). Two daemons' news on one in-memory stream, each
with its hub's part (its own viewers, the others' index); the heartbeat on
a Clock through the real TeamPresence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from wsdaemon.errors import BrokerUnavailable
from wsdaemon.support.redis_team import TeamPresence
from wsdaemon.support.viewing import SNAPSHOT_EVERY, VIEWING, RemoteViewers, ViewingNews


class Stream:
    """The event stream every daemon reads; a daemon may be made to miss entries."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[list[dict[str, Any]]], None]] = {}
        self.deaf: set[str] = set()
        self.entries: list[dict[str, Any]] = []

    def append(self, event: dict[str, Any]) -> None:
        self.entries.append(event)
        for daemon, handler in list(self.handlers.items()):
            if daemon not in self.deaf:
                handler([event])


class Link:
    prefix = "t:"
    up_since: float | None = 0.0

    def __init__(self, daemon_id: str, stream: Stream) -> None:
        self.daemon_id = daemon_id
        self.stream = stream
        self.failing = False
        #: What a heartbeat's script answers: no dead daemon, this one alive, no team.
        self.calls: list[tuple[Any, ...]] = []

    def on_events(self, handler: Callable[[list[dict[str, Any]]], None]) -> None:
        self.stream.handlers[self.daemon_id] = handler

    def publish(self, event: dict[str, Any]) -> Deferred[Any]:
        if self.failing:
            return fail(BrokerUnavailable("Redis went away"))
        self.stream.append(event)
        return succeed(None)

    def call(self, *args: Any) -> Deferred[Any]:
        self.calls.append(args)
        return succeed([[], [self.daemon_id], []])


class Hub:
    """The hub's part the news needs: this daemon's viewers, the others' index."""

    def __init__(self) -> None:
        self.remote = RemoteViewers()
        self.here: dict[str, tuple[str, str]] = {}
        self.changed: list[set[str]] = []

    def viewing_here(self) -> Iterable[tuple[str, str, str]]:
        return [(c, o, v) for c, (o, v) in self.here.items()]

    def viewing_changed(self, conversation_ids: set[str]) -> None:
        self.changed.append(conversation_ids)


class Daemon:
    def __init__(self, name: str, stream: Stream) -> None:
        self.link = Link(name, stream)
        self.news = ViewingNews(self.link)
        self.hub = Hub()
        self.news.hub = self.hub

    def opens(self, connection: str, operator: str, conversation: str | None) -> None:
        if conversation is None:
            self.hub.here.pop(connection, None)
        else:
            self.hub.here[connection] = (operator, conversation)
        self.news.viewing(connection, operator, conversation)


def _pair() -> tuple[Daemon, Daemon, Stream]:
    stream = Stream()
    return Daemon("a", stream), Daemon("b", stream), stream


def test_a_lost_close_is_put_right_at_the_next_heartbeat() -> None:
    """Alice on A closes conversation x while Redis refuses the news: B
    still shows her on x; A's next heartbeat sends its snapshot and B shows
    nobody (before: until the link went down and came back)."""
    a, b, _ = _pair()
    a.opens("c1", "alice", "x")
    assert b.hub.remote.operators("x") == {"alice"}
    a.link.failing = True
    a.opens("c1", "alice", None)
    a.link.failing = False
    assert b.hub.remote.operators("x") == {"alice"}
    a.news.beat()
    assert b.hub.remote.operators("x") == set()
    assert b.hub.changed[-1] == {"x"}


def test_a_failed_snapshot_is_sent_again() -> None:
    """The snapshot itself refused: the heartbeat after sends it again."""
    a, b, _ = _pair()
    a.opens("c1", "alice", "x")
    a.link.failing = True
    a.opens("c1", "alice", "y")
    a.news.beat()
    a.link.failing = False
    assert b.hub.remote.operators("y") == set()
    a.news.beat()
    assert b.hub.remote.operators("y") == {"alice"} and b.hub.remote.operators("x") == set()


def test_news_a_daemon_missed_is_right_within_the_snapshot_period() -> None:
    """B misses A's news (as when the capped stream dropped it while B was
    behind): nothing failed on A, so A sends its snapshot on every
    SNAPSHOT_EVERY-th heartbeat only; then B is right. Between, a
    heartbeat sends nothing."""
    a, b, stream = _pair()
    a.opens("c1", "alice", "x")
    stream.deaf.add("b")
    a.opens("c1", "alice", None)
    a.opens("c2", "dave", "z")
    stream.deaf.clear()
    sent = len(stream.entries)
    for _ in range(SNAPSHOT_EVERY - 1):
        a.news.beat()
    assert len(stream.entries) == sent
    assert b.hub.remote.operators("x") == {"alice"}
    a.news.beat()
    assert b.hub.remote.operators("x") == set() and b.hub.remote.operators("z") == {"dave"}
    assert stream.entries[-1]["type"] == VIEWING and "views" in stream.entries[-1]


def test_the_heartbeat_sends_the_snapshots() -> None:
    """TeamPresence's heartbeat: the first one (the link up) announces and
    asks; then a snapshot every SNAPSHOT_EVERY beats, and at the next beat
    after a publish failed."""
    clock = Clock()
    stream = Stream()
    a = Daemon("a", stream)
    team = TeamPresence(a.link, clock, 2.0)
    team.news = a.news
    team.start(object())  # type: ignore[arg-type]  # no team to learn: the driver is not asked
    snapshots = lambda: [e for e in stream.entries if "views" in e]  # noqa: E731
    assert [e["ask"] for e in snapshots()] == [True]
    for _ in range(SNAPSHOT_EVERY):
        clock.advance(2.0)
    assert [e["ask"] for e in snapshots()] == [True, False]
    a.link.failing = True
    a.opens("c1", "alice", "x")
    a.link.failing = False
    clock.advance(2.0)
    assert len(snapshots()) == 3 and snapshots()[-1]["views"] == [["c1", "alice", "x"]]
    team.stop()
