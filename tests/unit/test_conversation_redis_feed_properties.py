"""
Two daemons' drivers and feeds on one shared store, with the stream's
deliveries to each daemon, the clock and the events interleaved at random
(hypothesis). Whatever the order: each daemon writes each operator message
to a visitor at most once and in seq order, never before it is stored; once
everything is read, each daemon's view holds what the store holds.

The store is the memory store; the stream is a list each daemon reads at
its own pace (events go through JSON, as through Redis); a commit's event
is appended when the commit runs, as the commit script does; its answer
comes later, or is lost (outcome unknown), or the commit never reaches the
store, when the test says.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.conversation_desk import ROUTE, cid
from tests.driver_bench import GatedStore, RecordingPorts
from wsdaemon.conversations import (
    Author,
    ConversationSettings,
    DeliverMessage,
    Inbox,
    OperatorReply,
    Resolve,
    Status,
    VisitorMessage,
)
from wsdaemon.conversations.effects import Commit
from wsdaemon.errors import BrokerOutcomeUnknown, BrokerUnavailable
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.memory import MemoryConversationStore
from wsdaemon.support.ports import IConversationStore
from wsdaemon.support.redis_feed import ConversationFeed

OPERATORS = ("alice", "bob")
VISITORS = ("v0", "v1")


class Stream:
    """The event stream: appended to, read by each daemon at its own pace."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.read: dict[str, int] = {}
        self.handlers: dict[str, Any] = {}

    def append(self, event: dict[str, Any]) -> None:
        self.entries.append(json.loads(json.dumps(event)))

    def deliver(self, name: str, count: int) -> None:
        start = self.read[name]
        batch = self.entries[start:start + count]
        self.read[name] = start + len(batch)
        if batch:
            self.handlers[name](batch)

    def behind(self) -> bool:
        return any(n < len(self.entries) for n in self.read.values())


class Link:
    prefix = "t:"

    def __init__(self, name: str, stream: Stream) -> None:
        self.daemon_id = name
        self._stream = stream

    def on_events(self, handler: Any) -> None:
        self._stream.handlers[self.daemon_id] = handler
        self._stream.read[self.daemon_id] = 0

    def publish(self, event: dict[str, Any]) -> Deferred[None]:
        self._stream.append(event)
        return succeed(None)

    def call(self, *args: Any) -> Deferred[Any]:
        return fail(AssertionError(f"no Redis here: {args[0]}"))


@implementer(IConversationStore)
class SharedStore:
    """
    The memory store; a commit with news appends its event once it ran.
    Commits wait in C{sent} until the test runs them (then their answer
    waits in C{ran}) or loses them (the answer lost: outcome unknown if it
    ran, not done if not).
    """

    #: (Raised loads are not checked here: no load-raising clash.)
    loaded_team_raised: dict[str, int] = {}  # noqa: RUF012 - read only

    def __init__(self, inner: MemoryConversationStore, stream: Stream) -> None:
        self.inner = inner
        self._stream = stream
        self.sent: list[tuple[Commit, dict[str, Any] | None, Deferred[None]]] = []
        self.ran: list[tuple[Any, Deferred[None]]] = []

    def run(self) -> None:
        """The oldest commit sent runs in the store (its answer not yet back)."""
        commit, news, answer = self.sent.pop(0)
        result: list[Any] = []
        self._commit(commit, news).addBoth(result.append)
        self.ran.append((result[0], answer))

    def answer(self, lost: bool) -> None:
        """The oldest commit that ran is answered, or its answer is lost."""
        result, answer = self.ran.pop(0)
        if lost:
            answer.errback(BrokerOutcomeUnknown("no answer"))
        elif isinstance(result, Failure):
            answer.errback(result)
        else:
            answer.callback(None)

    def refuse(self) -> None:
        """The oldest commit sent never reached the store."""
        _, _, answer = self.sent.pop(0)
        answer.errback(BrokerUnavailable("not sent"))

    def open(self) -> Deferred[None]:
        return self.inner.open()

    def close(self) -> Deferred[None]:
        return self.inner.close()

    def commit(self, commit: Commit, news: dict[str, Any] | None = None) -> Deferred[None]:
        answer: Deferred[None] = Deferred()
        self.sent.append((commit, news, answer))
        return answer

    def _commit(self, commit: Commit, news: dict[str, Any] | None) -> Deferred[None]:
        def landed(_: None) -> None:
            if news is not None:
                self._stream.append({**news, "type": "conversations"})

        return self.inner.commit(commit).addCallback(landed)

    def load_live(self) -> Any:
        return self.inner.load_live()

    def load(self, conversation_id: str) -> Any:
        return self.inner.load(conversation_id)

    def messages(self, conversation_id: str, after: int = 0, limit: int = 100) -> Any:
        return self.inner.messages(conversation_id, after, limit)

    def history(self, conversation_id: str, before: int | None = None, limit: int = 100) -> Any:
        return self.inner.history(conversation_id, before, limit)

    def notes(self, conversation_id: str, before: int | None = None, limit: int = 100) -> Any:
        return self.inner.notes(conversation_id, before, limit)


class Daemon:
    def __init__(self, name: str, inner: MemoryConversationStore, stream: Stream,
                 clock: Clock) -> None:
        self.name = name
        self.store = store = SharedStore(inner, stream)
        self.ports = RecordingPorts(GatedStore(inner))
        self.feed = ConversationFeed(Link(name, stream), store, clock)  # type: ignore[arg-type]
        self.driver = ConversationDriver(store, Inbox(ConversationSettings(fallback_after=0)),
                                         clock, self.ports, self.ports, self.ports,
                                         peers=self.feed)
        self.feed.attach(self.driver)
        assert self.driver.start().called
        self.feed.ready()

    def operator_seqs(self) -> dict[str, list[int]]:
        """Per conversation, the seqs of operator messages written to visitors, in order."""
        seqs: dict[str, list[int]] = {}
        for effect in self.ports.of(DeliverMessage):
            message = effect.message
            if message.author is Author.OPERATOR:
                seqs.setdefault(message.conversation_id, []).append(message.seq)
        return seqs


actions = st.lists(st.one_of(
    st.tuples(st.just("visitor"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("reply"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("resolve"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("deliver"), st.integers(0, 1), st.integers(1, 3)),
    st.tuples(st.just("tick"), st.sampled_from([0.0, 0.004, 0.05, 2.0]), st.just(0)),
    st.tuples(st.sampled_from(["run", "answer", "lose", "refuse"]), st.integers(0, 1),
              st.just(0)),
), max_size=50)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_two_daemons_in_any_order(steps: list[tuple[str, Any, int]]) -> None:
    clock = Clock()
    stream = Stream()
    inner = MemoryConversationStore()
    daemons = [Daemon(name, inner, stream, clock) for name in ("a", "b")]
    for kind, first, second in steps:
        if kind == "tick":
            clock.advance(first)
            continue
        daemon = daemons[first]
        if kind == "deliver":
            stream.deliver(daemon.name, second)
            continue
        if kind in ("run", "refuse", "answer", "lose"):
            if kind in ("run", "refuse") and daemon.store.sent:
                (daemon.store.run if kind == "run" else daemon.store.refuse)()
            elif kind in ("answer", "lose") and daemon.store.ran:
                daemon.store.answer(lost=kind == "lose")
            continue
        visitor = VISITORS[second]
        event: Any = (VisitorMessage(ROUTE, visitor, "hello") if kind == "visitor"
                      else OperatorReply(cid(visitor), OPERATORS[first], "answer")
                      if kind == "reply" else Resolve(cid(visitor), OPERATORS[first]))
        daemon.driver.submit(event).addErrback(lambda _: None)
    for _ in range(100):  # everything run and read, every pause and wait run out
        for daemon in daemons:
            while daemon.store.sent or daemon.store.ran:
                if daemon.store.sent:
                    daemon.store.run()
                daemon.store.answer(lost=False)
            stream.deliver(daemon.name, len(stream.entries))
        clock.advance(2.0)
        if not stream.behind() and not any(d.driver._lanes.total or d.store.sent
                                           for d in daemons):
            break
    for daemon in daemons:
        assert daemon.ports.unstored == []
        for key, seqs in daemon.operator_seqs().items():
            assert seqs == sorted(set(seqs)), (daemon.name, key, seqs)
        for key, stored in inner.conversations.items():
            held = daemon.driver.inbox.conversation(key)
            if stored.status is Status.RESOLVED and held is None:
                continue
            assert held is not None and held.version == stored.version, (
                daemon.name, key, held and held.version, stored.version)
