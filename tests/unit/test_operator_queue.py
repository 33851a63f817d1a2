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

from wsdaemon.operators.memory import MemoryStore
from wsdaemon.operators.queue import OperatorQueue, OperatorSettings, QueueError
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
    assert result(queue.push("c9", "news", alice)) == 0
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
