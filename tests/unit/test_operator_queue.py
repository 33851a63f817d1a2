"""
The operator queue on a task.Clock with the in-memory store: queueing,
claims and leases, answering exactly once, fallback, offline delivery,
restarts.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from wsdaemon.strategies.operator.memory import MemoryStore
from wsdaemon.strategies.operator.queue import OperatorQueue, OperatorSettings, QueueError
from wsdaemon.testing import RecordingSession

SETTINGS = OperatorSettings(store_path=Path("unused"), lease=60, fallback_after=300,
                            fallback_when_offline=False)


class Operator:
    """An operator link that records what the queue tells it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []

    def notify(self, event: dict[str, Any]) -> None:
        self.events.append(event)


def result(d: Any) -> Any:
    """The result of an already-fired Deferred (the memory store fires at once)."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "Deferred has not fired"
    if hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


def make(store: MemoryStore | None = None, settings: OperatorSettings = SETTINGS,
         clock: Clock | None = None) -> tuple[OperatorQueue, MemoryStore, Clock]:
    store = store or MemoryStore()
    clock = clock or Clock()
    counter = itertools.count(1)
    queue = OperatorQueue(settings, store, clock, new_id=lambda: f"item{next(counter)}")
    result(queue.start())
    return queue, store, clock


def client(client_id: str, route: str = "/support") -> RecordingSession:
    return RecordingSession(session_id=f"s-{client_id}", route=route, client_id=client_id)


def test_enqueue_notifies_operators_and_counts_positions() -> None:
    """Enqueue notifies operators and counts positions."""
    queue, store, _ = make()
    alice = Operator("alice")
    queue.add_operator(alice)
    first, second = client("c1"), client("c2")
    item1 = result(queue.enqueue(first, "help"))
    item2 = result(queue.enqueue(second, "me too"))
    assert (queue.position(item1), queue.position(item2)) == (1, 2)
    assert [e["item"]["text"] for e in alice.events if e["type"] == "item"] == ["help", "me too"]
    assert store.items["item1"].state == "queued"
    assert [m.body for m in store.messages] == ["help", "me too"]


def test_claim_is_exclusive_and_leased() -> None:
    """Claim is exclusive and leased."""
    queue, store, clock = make()
    alice, bob = Operator("alice"), Operator("bob")
    queue.add_operator(alice)
    queue.add_operator(bob)
    item = result(queue.enqueue(client("c1"), "q"))
    queue.claim(item.item_id, alice)
    with pytest.raises(QueueError, match="claimed by alice"):
        queue.claim(item.item_id, bob)
    with pytest.raises(QueueError, match="claimed by alice"):
        queue.reply(item.item_id, bob, "mine!")
    clock.advance(59)
    assert item.state == "claimed"
    queue.claim(item.item_id, alice)  # renews the lease
    clock.advance(59)
    assert item.state == "claimed"
    clock.advance(1)
    assert item.state == "queued" and store.items[item.item_id].state == "queued"
    queue.claim(item.item_id, bob)
    assert store.items[item.item_id].operator == "bob"


def test_operator_leaving_releases_its_items() -> None:
    """Operator leaving releases its items."""
    queue, _, _ = make()
    alice, bob = Operator("alice"), Operator("bob")
    queue.add_operator(alice)
    queue.add_operator(bob)
    mine = result(queue.enqueue(client("c1"), "a"))
    theirs = result(queue.enqueue(client("c2"), "b"))
    queue.claim(mine.item_id, alice)
    queue.claim(theirs.item_id, bob)
    queue.remove_operator(alice)
    assert (mine.state, theirs.state) == ("queued", "claimed")
    assert any(e["type"] == "updated" and e["item"]["state"] == "queued" for e in bob.events)


def test_reply_exactly_once_and_delivered() -> None:
    """Reply exactly once and delivered."""
    queue, store, _ = make()
    alice, bob = Operator("alice"), Operator("bob")
    queue.add_operator(alice)
    queue.add_operator(bob)
    session = client("c1")
    result(queue.client_connected(session))
    item = result(queue.enqueue(session, "q"))
    answer = result(queue.reply(None, alice, "the answer"))
    assert answer["delivered"] == 1 and answer["item"]["state"] == "answered"
    assert session.sent == ["the answer"]
    with pytest.raises(QueueError, match="no open item"):
        queue.reply(item.item_id, bob, "again")
    assert session.sent == ["the answer"]
    assert store.items[item.item_id].state == "answered"
    assert store.messages[-1].delivered


def test_reply_to_oldest_unclaimed() -> None:
    """Reply to oldest unclaimed."""
    queue, _, clock = make()
    alice = Operator("alice")
    queue.add_operator(alice)
    old = result(queue.enqueue(client("c1"), "old"))
    clock.advance(1)
    new = result(queue.enqueue(client("c2"), "new"))
    queue.claim(old.item_id, Operator("bob"))
    answer = result(queue.reply(None, alice, "hi"))
    assert answer["item"]["item_id"] == new.item_id


def test_empty_queue_and_unknown_items() -> None:
    """Empty queue and unknown items."""
    queue, _, _ = make()
    alice = Operator("alice")
    with pytest.raises(QueueError, match="the queue is empty"):
        queue.reply(None, alice, "x")
    with pytest.raises(QueueError, match="no open item 'nope'"):
        queue.claim("nope", alice)
    with pytest.raises(QueueError, match="not claimed by you"):
        item = result(queue.enqueue(client("c"), "q"))
        queue.release(item.item_id, alice)


def test_id_prefix() -> None:
    """Id prefix."""
    queue, _, _ = make()
    result(queue.enqueue(client("c"), "q"))
    assert queue.find("item").item_id == "item1"
    result(queue.enqueue(client("d"), "q"))
    with pytest.raises(QueueError, match="ambiguous"):
        queue.find("item")


def test_offline_client_gets_reply_on_reconnect() -> None:
    """Offline client gets reply on reconnect."""
    queue, store, _ = make()
    alice = Operator("alice")
    queue.add_operator(alice)
    first = client("c1")
    result(queue.client_connected(first))
    result(queue.enqueue(first, "q"))
    queue.client_disconnected(first)
    answer = result(queue.reply(None, alice, "while you were away"))
    assert answer["delivered"] == 0 and first.sent == []
    again = client("c1")
    assert result(queue.client_connected(again)) == 1
    assert again.sent == ["while you were away"]
    third = client("c1")
    assert result(queue.client_connected(third)) == 0  # delivered once, not again
    assert third.sent == []


def test_push_to_offline_client_is_kept() -> None:
    """Push to offline client is kept."""
    queue, _, _ = make()
    alice = Operator("alice")
    assert result(queue.push("c9", "news", alice)) == {"delivered": 0, "kept": 1}
    session = client("c9")
    result(queue.client_connected(session))
    assert session.sent == ["news"]


def test_broadcast_reaches_route_only() -> None:
    """Broadcast reaches route only."""
    queue, _, _ = make()
    here, there = client("a", "/support"), client("b", "/sales")
    for session in (here, there):
        result(queue.client_connected(session))
    assert result(queue.broadcast("/support", "closing soon", Operator("alice"))) == 1
    assert (here.sent, there.sent) == (["closing soon"], [])


def test_fallback_after_timeout_keeps_item_answerable() -> None:
    """Fallback after timeout keeps item answerable."""
    queue, _, clock = make()
    alice = Operator("alice")
    queue.add_operator(alice)
    session = client("c1")
    result(queue.client_connected(session))
    item = result(queue.enqueue(session, "q"))
    clock.advance(299)
    assert session.sent == []
    clock.advance(1)
    assert session.sent == [SETTINGS.fallback_message]
    assert item.state == "queued" and item.record.fallback_sent
    clock.advance(1000)
    assert session.sent == [SETTINGS.fallback_message]  # sent once
    result(queue.reply(item.item_id, alice, "late answer"))
    assert session.sent[-1] == "late answer"


def test_fallback_can_close_the_item() -> None:
    """Fallback can close the item."""
    queue, store, clock = make(settings=replace(SETTINGS, keep_after_fallback=False))
    alice = Operator("alice")
    queue.add_operator(alice)
    item = result(queue.enqueue(client("c1"), "q"))
    clock.advance(300)
    assert item.state == "expired" and store.items[item.item_id].state == "expired"
    with pytest.raises(QueueError, match="no open item"):
        queue.reply(item.item_id, alice, "too late")
    assert clock.getDelayedCalls() == []


def test_fallback_at_once_when_no_operator_online() -> None:
    """Fallback at once when no operator online."""
    queue, _, _ = make(settings=replace(SETTINGS, fallback_when_offline=True))
    session = client("c1")
    result(queue.client_connected(session))
    result(queue.enqueue(session, "anyone?"))
    assert session.sent == [SETTINGS.fallback_message]


def test_restart_restores_open_items_and_fallback_timers() -> None:
    """Restart restores open items and fallback timers."""
    store, clock = MemoryStore(), Clock()
    queue, _, _ = make(store, clock=clock)
    alice = Operator("alice")
    queue.add_operator(alice)
    kept = result(queue.enqueue(client("c1"), "kept"))
    done = result(queue.enqueue(client("c2"), "done"))
    queue.claim(kept.item_id, alice)
    result(queue.reply(done.item_id, alice, "ok"))
    result(queue.stop())
    assert clock.getDelayedCalls() == []

    clock.advance(100)
    restarted, _, _ = make(store, clock=clock)
    items = restarted.open_items()
    assert [(i.item_id, i.state) for i in items] == [(kept.item_id, "queued")]
    session = client("c1")
    result(restarted.client_connected(session))
    clock.advance(200)  # 300 s after it was queued, not after the restart
    assert session.sent == [SETTINGS.fallback_message]


def test_stop_cancels_timers() -> None:
    """Stop cancels timers."""
    queue, _, clock = make()
    alice = Operator("alice")
    queue.add_operator(alice)
    item = result(queue.enqueue(client("c1"), "q"))
    queue.claim(item.item_id, alice)
    assert clock.getDelayedCalls()
    result(queue.stop())
    assert clock.getDelayedCalls() == []


class FailingStore(MemoryStore):
    """A memory store whose writes fail while C{failing} is set (a locked
    database, a full disk)."""

    failing = False

    def _check(self) -> None:
        if self.failing:
            raise OSError("database is locked")

    def update_item(self, item: Any) -> Any:
        self._check()
        return super().update_item(item)

    def answer_item(self, item: Any, reply: Any) -> Any:
        self._check()
        return super().answer_item(item, reply)


def test_a_failed_commit_changes_nothing() -> None:
    """Claim, release and reply are stored before the item moves: when the
    store fails the item stays where it was, open and answerable, and the
    operator is told why."""
    store = FailingStore()
    queue, _, _ = make(store)
    alice, bob = Operator("alice"), Operator("bob")
    queue.add_operator(alice)
    session = client("c1")
    queue.client_connected(session)
    item = result(queue.enqueue(session, "help"))
    store.failing = True
    with pytest.raises(QueueError, match="could not store the claim .*database is locked"):
        result(queue.claim(item.item_id, alice))
    assert item.state == "queued" and not item.busy
    with pytest.raises(QueueError, match="could not store the reply .*unchanged"):
        result(queue.reply(item.item_id, alice, "answer"))
    assert queue.find(item.item_id) is item and item.state == "queued"
    assert session.sent == []
    store.failing = False
    result(queue.claim(item.item_id, alice))
    store.failing = True
    with pytest.raises(QueueError, match="could not store the release"):
        result(queue.release(item.item_id, alice))
    assert item.state == "claimed" and item.holder is alice
    with pytest.raises(QueueError, match="is claimed by alice"):
        queue.reply(item.item_id, bob, "mine")
    store.failing = False
    assert result(queue.reply(item.item_id, alice, "answer"))["delivered"] == 1
    assert session.sent == ["answer"]


def test_a_failed_fallback_or_release_is_tried_again() -> None:
    """A fallback or a release after a disconnect whose commit fails is tried
    again RETRY_AFTER seconds later, and then lands once."""
    from wsdaemon.strategies.operator.queue import RETRY_AFTER

    store = FailingStore()
    settings = replace(SETTINGS, fallback_after=10)
    queue, _, clock = make(store, settings)
    alice = Operator("alice")
    queue.add_operator(alice)
    session = client("c1")
    queue.client_connected(session)
    item = result(queue.enqueue(session, "help"))
    result(queue.claim(item.item_id, alice))
    store.failing = True
    queue.remove_operator(alice)
    assert item.state == "claimed"
    clock.advance(10)
    assert session.sent == [] and not item.record.fallback_sent
    store.failing = False
    clock.advance(RETRY_AFTER)
    assert item.state == "queued"
    assert session.sent == [settings.fallback_message] and item.record.fallback_sent
    clock.advance(RETRY_AFTER * 3)
    assert session.sent == [settings.fallback_message]


def test_caps_refuse_before_storing() -> None:
    """Over a cap enqueue fails with QueueRefused and stores nothing; messages
    being stored count already; a closed item frees room."""
    from twisted.internet.defer import Deferred

    from wsdaemon.strategies.operator.queue import QueueRefused

    settings = replace(SETTINGS, max_open_per_client=2, max_open_per_route=3,
                       max_open_total=0, max_item_size=8)
    queue, store, _ = make(settings=settings)
    a, b, c = client("a"), client("b"), client("c")
    first = result(queue.enqueue(a, "1"))
    # A slow store: the second message is still being stored.
    slow: Deferred[None] = Deferred()
    store.add_item = lambda item, message: slow  # type: ignore[method-assign]
    queue.enqueue(a, "2")

    def refused(session: Any, text: str) -> str:
        with pytest.raises(QueueRefused) as info:
            result(queue.enqueue(session, text))
        return info.value.why

    assert refused(a, "3") == "client"
    assert refused(b, "123456789") == "too_long"
    del store.add_item
    result(queue.enqueue(b, "é" * 4))  # 8 bytes
    assert refused(c, "x") == "route"
    slow.callback(None)
    assert queue.count_open() == 3
    result(queue.reply(first.item_id, Operator("alice"), "ok"))
    assert result(queue.enqueue(c, "now")).item_id
