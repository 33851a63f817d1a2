"""
The operator queue's contract, run against every backend: the in-memory
store, the SQLite store (one daemon) and Redis (several daemons). The same
steps and the same expectations: queueing and positions, one claim at a
time, answered exactly once, leases that run out, fallback timing, replies
kept for offline clients, transcripts.

Queue time runs on a task.Clock; I/O (SQLite's thread, Redis' socket) on
the real reactor, so each step waits for its result.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, maybeDeferred
from twisted.internet.task import Clock, deferLater

from tests.redis_server import RedisServer
from tests.unit.test_operator_queue import Operator
from wsdaemon.broker.connection import RedisConnection
from wsdaemon.broker.link import BrokerSettings, RedisLink
from wsdaemon.broker.queue import SharedOperatorQueue
from wsdaemon.strategies.operator.memory import MemoryStore
from wsdaemon.strategies.operator.queue import OperatorQueue, OperatorSettings, QueueError
from wsdaemon.strategies.operator.store import SQLiteStore
from wsdaemon.testing import RecordingSession

SETTINGS = OperatorSettings(store_path=Path("unused"), lease=60, fallback_after=300,
                            fallback_when_offline=False)


def client(client_id: str) -> RecordingSession:
    return RecordingSession(session_id=f"s-{client_id}", route="/support", client_id=client_id)


@dataclass
class Harness:
    kind: str
    make: Callable[[OperatorSettings], Any]
    clock: Clock

    @inlineCallbacks
    def settle(self, check: Callable[[], bool], timeout: float = 5.0) -> Iterator[Deferred[Any]]:
        """
        Let the real reactor run until C{check()} holds (and the queue's
        zero-delay calls, which batch its writes: no time passes for it).
        """
        for _ in range(int(timeout / 0.01)):
            self.clock.advance(0)
            if check():
                return
            yield deferLater(reactor, 0.01, lambda: None)
        raise AssertionError(f"{self.kind}: condition not met within {timeout}s")

    @inlineCallbacks
    def stop(self, queue: Any) -> Iterator[Deferred[Any]]:
        """Stop a queue (once) as the daemon does: the queue, then the link."""
        if getattr(queue, "_test_stopped", False):
            return
        queue._test_stopped = True
        yield queue.stop()
        if isinstance(queue, SharedOperatorQueue):
            yield queue.link.stop()

    @inlineCallbacks
    def advance(self, seconds: float, queue: Any) -> Iterator[Deferred[Any]]:
        """Move queue time on, and let Redis run the sweep it triggers."""
        self.clock.advance(seconds)
        if isinstance(queue, SharedOperatorQueue):
            yield queue.sweep()
            yield deferLater(reactor, 0.05, lambda: None)


@pytest_twisted.async_yield_fixture(params=["memory", "sqlite", "redis"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    clock = Clock()
    clock.advance(1_700_000_000)
    counter = itertools.count(1)
    made: list[Any] = []

    def new_id() -> str:
        return f"item{next(counter)}"

    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = f"test{id(clock)}:"

        def make(settings: OperatorSettings) -> Any:
            link = RedisLink(BrokerSettings(url=server.url, port=server.port, prefix=prefix,
                                            daemon_id=f"d{len(made)}", timeout=3), clock)
            queue = SharedOperatorQueue(settings, link, clock, new_id=new_id)
            made.append(queue)
            return queue
    elif request.param == "sqlite":
        def make(settings: OperatorSettings) -> Any:
            queue = OperatorQueue(settings, SQLiteStore(tmp_path / "q.sqlite3", reactor), clock,
                                  new_id=new_id)
            made.append(queue)
            return queue
    else:
        store = MemoryStore()

        def make(settings: OperatorSettings) -> Any:
            queue = OperatorQueue(settings, store, clock, new_id=new_id)
            made.append(queue)
            return queue

    harness = Harness(request.param, make, clock)
    yield harness
    for queue in made:
        await harness.stop(queue)


@inlineCallbacks
def started(harness: Harness, settings: OperatorSettings = SETTINGS) -> Iterator[Any]:
    queue = harness.make(settings)
    yield queue.start()
    yield queue.when_started()
    return queue


@pytest_twisted.inlineCallbacks
def test_items_queue_in_order_and_operators_hear_of_them(harness: Harness) -> Iterator[Any]:
    """Enqueued items are acknowledged with their position and announced."""
    queue = yield started(harness)
    operator = Operator("ann")
    queue.add_operator(operator)
    first = yield queue.enqueue(client("c1"), "hello")
    second = yield queue.enqueue(client("c2"), "hi there")
    assert (queue.position(first), queue.position(second)) == (1, 2)
    assert [i.item_id for i in queue.open_items()] == [first.item_id, second.item_id]
    yield harness.settle(lambda: [e["type"] for e in operator.events] == ["item", "item"])
    assert operator.events[1]["item"]["text"] == "hi there"


@pytest_twisted.inlineCallbacks
def test_one_claim_at_a_time_and_one_answer(harness: Harness) -> Iterator[Any]:
    """A claimed item is refused to others; it is answered once, by its holder."""
    queue = yield started(harness)
    ann, bob = Operator("ann"), Operator("bob")
    queue.add_operator(ann)
    queue.add_operator(bob)
    session = client("c1")
    queue.client_connected(session)
    item = yield queue.enqueue(session, "help")
    claimed = yield maybeDeferred(queue.claim, item.item_id, ann)
    assert claimed.state == "claimed"
    with pytest.raises(QueueError, match="claimed by ann"):
        yield maybeDeferred(queue.claim, item.item_id, bob)
    with pytest.raises(QueueError, match="claimed by ann"):
        yield maybeDeferred(queue.reply, item.item_id, bob, "me too")
    answer = yield queue.reply(item.item_id, ann, "here you go")
    assert answer["item"]["state"] == "answered"
    assert answer["delivered"] == 1
    with pytest.raises(QueueError):
        yield maybeDeferred(queue.reply, item.item_id, ann, "again")
    yield deferLater(reactor, 0.1, lambda: None)
    assert session.sent == ["here you go"]
    assert queue.open_items() == []


@pytest_twisted.inlineCallbacks
def test_an_expired_lease_returns_the_item(harness: Harness) -> Iterator[Any]:
    """After the lease, the item is queued again and another operator may take it."""
    queue = yield started(harness)
    ann, bob = Operator("ann"), Operator("bob")
    item = yield queue.enqueue(client("c1"), "help")
    yield maybeDeferred(queue.claim, item.item_id, ann)
    yield harness.advance(SETTINGS.lease - 1, queue)
    with pytest.raises(QueueError, match="claimed by ann"):
        yield maybeDeferred(queue.claim, item.item_id, bob)
    yield harness.advance(2, queue)
    yield harness.settle(lambda: [i.state for i in queue.open_items()] == ["queued"])
    claimed = yield maybeDeferred(queue.claim, item.item_id, bob)
    assert claimed.record.operator == "bob"


@pytest_twisted.inlineCallbacks
def test_fallback_is_sent_once_on_time(harness: Harness) -> Iterator[Any]:
    """No answer within fallback_after: the client gets the fallback, once."""
    queue = yield started(harness)
    session = client("c1")
    queue.client_connected(session)
    yield queue.enqueue(session, "anyone?")
    yield harness.advance(SETTINGS.fallback_after - 5, queue)
    yield deferLater(reactor, 0.05, lambda: None)
    assert session.sent == []
    yield harness.advance(10, queue)
    yield harness.settle(lambda: session.sent == [SETTINGS.fallback_message])
    yield harness.advance(SETTINGS.fallback_after * 2, queue)
    yield deferLater(reactor, 0.1, lambda: None)
    assert session.sent == [SETTINGS.fallback_message]
    # kept answerable after the fallback (keep_after_fallback defaults to yes)
    assert [i.record.fallback_sent for i in queue.open_items()] == [True]


@pytest_twisted.inlineCallbacks
def test_fallback_at_once_when_no_operator_is_online(harness: Harness) -> Iterator[Any]:
    """With fallback_when_offline and nobody online, the fallback comes right away."""
    queue = yield started(harness, replace(SETTINGS, fallback_when_offline=True))
    session = client("c1")
    queue.client_connected(session)
    yield queue.enqueue(session, "hello?")
    yield harness.settle(lambda: session.sent == [SETTINGS.fallback_message])


@pytest_twisted.inlineCallbacks
def test_a_reply_waits_for_an_offline_client(harness: Harness) -> Iterator[Any]:
    """Answered while away: delivered once when the client reconnects."""
    queue = yield started(harness)
    ann = Operator("ann")
    first = client("c1")
    queue.client_connected(first)
    item = yield queue.enqueue(first, "call me back")
    queue.client_disconnected(first)
    answer = yield queue.reply(item.item_id, ann, "calling back")
    assert answer["delivered"] == 0
    again = client("c1")
    count = yield queue.client_connected(again)
    assert count == 1
    assert again.sent == ["calling back"]
    third = client("c1")
    count = yield queue.client_connected(third)
    assert count == 0 and third.sent == []


@pytest_twisted.inlineCallbacks
def test_a_push_says_whether_it_was_kept(harness: Harness) -> Iterator[Any]:
    """A push that reached no connection says it was kept for the client (it
    arrives on the client's next connection), also when the client's only
    connection was closing; one that reached the client says it was not."""
    queue = yield started(harness)
    alice = Operator("alice")
    queue.add_operator(alice)
    answer = yield queue.push("c1", "while away", alice)
    assert answer == {"delivered": 0, "kept": 1}
    session = client("c1")
    queue.client_connected(session)
    yield harness.settle(lambda: session.sent == ["while away"])
    answer = yield queue.push("c1", "now", alice)
    assert answer == {"delivered": 1, "kept": 0}
    session.close()
    answer = yield queue.push("c1", "as it closes", alice)
    assert answer == {"delivered": 0, "kept": 1}
    queue.client_disconnected(session)
    # A reconnect takes a few reactor turns: the write's outcome is settled.
    harness.clock.advance(0)
    yield deferLater(reactor, 0.2, lambda: None)
    again = client("c1")
    queue.client_connected(again)
    yield harness.settle(lambda: again.sent == ["as it closes"])
    assert session.sent == ["while away", "now"]


@pytest_twisted.inlineCallbacks
def test_the_transcript_holds_both_sides(harness: Harness) -> Iterator[Any]:
    """The conversation is kept: the client's message and the operator's reply."""
    queue = yield started(harness)
    ann = Operator("ann")
    session = client("c1")
    queue.client_connected(session)
    item = yield queue.enqueue(session, "question")
    yield queue.reply(item.item_id, ann, "answer")
    records: list[Any] = []

    @inlineCallbacks
    def read() -> Iterator[Any]:
        records[:] = yield queue.transcript("c1")

    def delivered() -> bool:
        read()
        return len(records) == 2 and records[1].delivered is True

    yield harness.settle(delivered)
    assert [(r.direction, r.sender, r.body) for r in records] == [
        ("in", "client", "question"), ("out", "ann", "answer")]


@pytest.mark.parametrize("harness", ["sqlite", "redis"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_open_items_survive_a_restart(harness: Harness) -> Iterator[Any]:
    """A new queue on the same store (a restarted daemon) has the open items."""
    queue = yield started(harness)
    item = yield queue.enqueue(client("c1"), "still there?")
    yield harness.stop(queue)
    again = yield started(harness)
    assert [i.item_id for i in again.open_items()] == [item.item_id]


# -- two daemons on one Redis ---------------------------------------------------


@pytest.mark.parametrize("harness", ["redis"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_two_daemons_racing_answer_an_item_once(harness: Harness) -> Iterator[Any]:
    """Operators on two daemons answer the same item at the same instant: one wins."""
    a = yield started(harness)
    b = yield started(harness)
    session = client("c1")
    a.client_connected(session)
    item = yield a.enqueue(session, "who answers?")
    yield harness.settle(lambda: [i.item_id for i in b.open_items()] == [item.item_id])
    results = yield DeferredList([
        maybeDeferred(a.reply, item.item_id, Operator("ann"), "from ann"),
        maybeDeferred(b.reply, item.item_id, Operator("bob"), "from bob"),
    ], consumeErrors=True)
    outcomes = sorted(ok for ok, _ in results)
    assert outcomes == [False, True]
    loser = next(value for ok, value in results if not ok)
    assert loser.check(QueueError)
    yield harness.settle(lambda: len(session.sent) == 1)
    yield deferLater(reactor, 0.2, lambda: None)
    harness.clock.advance(0)
    assert session.sent in (["from ann"], ["from bob"])
    assert a.open_items() == [] and b.open_items() == []


@pytest.mark.parametrize("harness", ["redis"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_a_claim_follows_the_operator_to_another_daemon(harness: Harness) -> Iterator[Any]:
    """Claimed on A, the same operator answers on B; others stay refused."""
    a = yield started(harness)
    b = yield started(harness)
    item = yield a.enqueue(client("c1"), "help")
    on_a = Operator("ann")
    a.add_operator(on_a)
    yield maybeDeferred(a.claim, item.item_id, on_a)
    a.remove_operator(on_a)  # ann's connection drops; the lease holds
    yield harness.settle(lambda: [i.state for i in b.open_items()] == ["claimed"])
    with pytest.raises(QueueError, match="claimed by ann"):
        yield maybeDeferred(b.claim, item.item_id, Operator("bob"))
    answer = yield b.reply(item.item_id, Operator("ann"), "done")
    assert answer["item"]["state"] == "answered"


@pytest.mark.parametrize("harness", ["redis"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_a_dead_daemons_taken_messages_come_back(harness: Harness) -> Iterator[Any]:
    """
    A message taken by a daemon that died before writing it is given back by
    the sweep of a daemon connected long enough to have heard it were it
    alive (three heartbeats, plus what a reconnection can take).
    """
    queue = yield started(harness)
    first = client("c1")
    queue.client_connected(first)
    item = yield queue.enqueue(first, "hello?")
    queue.client_disconnected(first)
    yield queue.reply(item.item_id, Operator("ann"), "kept for you")
    # A daemon that is not alive (no heartbeat) takes it, then "dies".
    taken = yield queue.link.script("take", "ghost", harness.clock.seconds(), "c1", "*")
    assert taken[0:2] == ["c1", "2"]
    nothing = client("c1")
    count = yield queue.client_connected(nothing)
    assert count == 0 and nothing.sent == []
    queue.client_disconnected(nothing)
    s = queue.link.settings
    # The sweep gives the ghost's messages back.
    yield harness.advance(3 * s.heartbeat + RedisConnection.max_delay + s.timeout, queue)
    again = client("c1")
    count = yield queue.client_connected(again)
    assert (count, again.sent) == (1, ["kept for you"])


@pytest_twisted.inlineCallbacks
def test_caps_and_unsendable_replies(harness: Harness) -> Iterator[Any]:
    """Over the per-client, per-route, total and size caps a message is refused
    with QueueRefused and nothing stored; a reply too big for the client's
    route or holding a lone surrogate is refused before anything is stored,
    and the item stays answerable."""
    from wsdaemon.strategies.operator.errors import QueueRefused

    settings = replace(SETTINGS, max_open_per_client=2, max_open_per_route=3,
                       max_open_total=4, max_item_size=10)
    queue = yield started(harness, settings)
    queue.send_limits = {"/support": 20, "/sales": 1000, "": 1000}
    alice = Operator("alice")
    queue.add_operator(alice)

    def refused(session: Any, text: str) -> Any:
        d = maybeDeferred(queue.enqueue, session, text)
        d.addCallbacks(lambda _: None, lambda f: f.trap(QueueRefused) and f.value.why)
        return d

    a, b = client("a"), client("b")
    first = yield queue.enqueue(a, "a1")
    yield queue.enqueue(a, "a2")
    assert (yield refused(a, "a3")) == "client"
    assert (yield refused(b, "x" * 11)) == "too_long"
    yield queue.enqueue(b, "b1")
    assert (yield refused(client("c"), "c1")) == "route"
    sales = RecordingSession(session_id="s-d", route="/sales", client_id="d")
    yield queue.enqueue(sales, "d1")
    assert (yield refused(RecordingSession(session_id="s-e", route="/sales", client_id="e"),
                          "e1")) == "total"
    yield harness.settle(lambda: len(queue.open_items()) == 4)

    for text, why in (("y" * 21, "accepts messages of at most 20 bytes"),
                      ("bad \ud800", "lone surrogate")):
        with pytest.raises(QueueError, match=why):
            yield maybeDeferred(queue.reply, first.item_id, alice, text)
    answer = yield queue.reply(first.item_id, alice, "fits")
    assert answer["item"]["state"] == "answered"
    yield harness.settle(lambda: len(queue.open_items()) == 3)
    yield queue.enqueue(a, "a3")


@pytest_twisted.inlineCallbacks
def test_transcript_pages_and_whole_texts(harness: Harness) -> Iterator[Any]:
    """A transcript comes a page at a time (the newest lines before a seq); an
    item's whole text and a line's whole body can be read back."""
    queue = yield started(harness)
    session = client("c1")
    queue.client_connected(session)
    long = "é" * 3000
    item = yield queue.enqueue(session, long)
    alice = Operator("alice")
    queue.add_operator(alice)
    for n in range(5):
        yield queue.push("c1", f"push {n}", alice)
    page = yield queue.transcript("c1", None, 2)
    assert [m.body for m in page] == ["push 3", "push 4"]
    older = yield queue.transcript("c1", page[0].seq, 10)
    assert [m.body for m in older] == [long, "push 0", "push 1", "push 2"]
    assert (yield queue.full_text(item.item_id, None)) == long
    assert (yield queue.full_text(None, older[1].seq)) == "push 0"
    assert queue.count_open() == 1
    assert [i.item_id for i in queue.iter_open("c1")] == [item.item_id]
    assert list(queue.iter_open("nobody")) == []
