"""
The store contract, run against every store: the embedded SQLite store (on a
real file) and the in-memory one.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from wsdaemon.records import ItemRecord, MessageRecord
from wsdaemon.strategies.operator.memory import MemoryStore
from wsdaemon.strategies.operator.ports import IQueueStore
from wsdaemon.strategies.operator.store import SQLiteStore


@pytest.fixture(params=["sqlite", "memory"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    def make() -> IQueueStore:
        if request.param == "memory":
            if not hasattr(request, "_memory"):
                request._memory = MemoryStore()  # type: ignore[attr-defined]
            return request._memory  # type: ignore[attr-defined,no-any-return]
        from twisted.internet import reactor

        return SQLiteStore(tmp_path / "state" / "queue.sqlite3", reactor)

    return make


def item(item_id: str, at: float, **changes: Any) -> ItemRecord:
    fields: dict[str, Any] = {"text": f"question {item_id}", **changes}
    return ItemRecord(item_id=item_id, route="/support", client_id=f"client-{item_id}",
                      created_at=at, **fields)


def incoming(record: ItemRecord) -> MessageRecord:
    return MessageRecord(client_id=record.client_id, route=record.route, direction="in",
                         sender="client", body=record.text, at=record.created_at,
                         item_id=record.item_id)


def test_provides_interface(make_store: Any) -> None:
    """Provides interface."""
    assert verifyObject(IQueueStore, make_store())


@pytest_twisted.inlineCallbacks
def test_items_survive_reopening(make_store: Any) -> Generator[Any, Any, None]:
    """Open items come back after close and reopen, oldest first; answered ones do not."""
    store = make_store()
    yield store.open()
    for record in (item("b", 2.0), item("a", 1.0), item("c", 3.0)):
        yield store.add_item(record, incoming(record))
    yield store.update_item(item("b", 2.0, state="claimed", operator="alice"))
    reply = MessageRecord(client_id="client-c", route="/support", direction="out",
                          sender="bob", body="answer", at=4.0, item_id="c")
    seq = yield store.answer_item(item("c", 3.0, state="answered", operator="bob",
                                       answered_at=4.0), reply)
    assert isinstance(seq, int)
    yield store.close()

    store = make_store()
    yield store.open()
    loaded = yield store.load_open_items()
    open_items = [record for record, _ in loaded]
    assert [(i.item_id, i.state, i.operator) for i in open_items] == [
        ("a", "queued", None), ("b", "claimed", "alice")]
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_outbox_and_transcript(make_store: Any) -> Generator[Any, Any, None]:
    """Outbox and transcript."""
    store = make_store()
    yield store.open()
    record = item("x", 1.0)
    yield store.add_item(record, incoming(record))
    seqs = []
    for n, body in enumerate(["one", "two"]):
        seq = yield store.add_message(MessageRecord(
            client_id="client-x", route="/support", direction="out", sender="alice",
            body=body, at=2.0 + n))
        seqs.append(seq)
    assert seqs[0] < seqs[1]
    waiting = yield store.undelivered("client-x")
    assert [m.body for m in waiting] == ["one", "two"]
    assert (yield store.undelivered("someone-else")) == []
    yield store.mark_delivered([seqs[0]])
    waiting = yield store.undelivered("client-x")
    assert [m.body for m in waiting] == ["two"]
    transcript = yield store.transcript("client-x")
    assert [(m.direction, m.sender, m.body, m.delivered) for m in transcript] == [
        ("in", "client", "question x", False), ("out", "alice", "one", True),
        ("out", "alice", "two", False)]
    everyone = yield store.transcript(None)
    assert len(everyone) == 3
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_previews_whole_texts_and_pages(make_store: Any) -> Generator[Any, Any, None]:
    """Open items load with a preview of their text and its whole length; the
    whole text and a message's whole body are read on request; a transcript
    comes in pages of the newest lines before a sequence number; a failed
    message is no longer waiting and shows as failed."""
    store = make_store()
    yield store.open()
    long = item("long", 1.0, text="é" * 5000)
    yield store.add_item(long, incoming(long))
    loaded = yield store.load_open_items(preview=10)
    assert [(r.text, n) for r, n in loaded] == [("é" * 10, 5000)]
    assert (yield store.item_text("long")) == "é" * 5000
    assert (yield store.item_text("nope")) is None
    seqs = []
    for n in range(5):
        seq = yield store.add_message(MessageRecord(
            client_id="client-long", route="/support", direction="out", sender="alice",
            body=f"line {n}", at=2.0 + n))
        seqs.append(seq)
    assert (yield store.message_body(seqs[2])) == "line 2"
    page = yield store.transcript("client-long", None, 2)
    assert [m.body for m in page] == ["line 3", "line 4"]
    page = yield store.transcript("client-long", page[0].seq, 2)
    assert [m.body for m in page] == ["line 1", "line 2"]
    page = yield store.transcript("client-long", page[0].seq, 10)
    assert [m.body for m in page] == ["é" * 5000, "line 0"]
    yield store.mark_failed([seqs[0]])
    waiting = yield store.undelivered("client-long")
    assert [m.body for m in waiting] == [f"line {n}" for n in range(1, 5)]
    everything = yield store.transcript("client-long")
    assert [m.failed for m in everything] == [False, True, False, False, False, False]
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_updating_an_unknown_item_fails(make_store: Any) -> Generator[Any, Any, None]:
    """Updating an unknown item fails."""
    store = make_store()
    yield store.open()
    with pytest.raises(LookupError):
        yield store.update_item(item("ghost", 1.0, state="claimed"))
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_sqlite_uses_wal(tmp_path: Path) -> Generator[Any, Any, None]:
    """SQLite uses WAL."""
    import sqlite3

    from twisted.internet import reactor

    store = SQLiteStore(tmp_path / "q.sqlite3", reactor)
    yield store.open()
    yield store.close()
    mode = sqlite3.connect(tmp_path / "q.sqlite3").execute("PRAGMA journal_mode").fetchone()
    assert mode == ("wal",)


@pytest_twisted.inlineCallbacks
def test_sqlite_group_commit_keeps_order_and_isolates_failures(
    tmp_path: Path,
) -> Generator[Any, Any, None]:
    """Operations asked for together share a transaction, in order; one that
    fails is rolled back alone and only its Deferred fails."""
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredList

    store = SQLiteStore(tmp_path / "q.sqlite3", reactor)
    yield store.open()
    records = [item(f"i{n}", float(n)) for n in range(50)]
    ds = [store.add_item(r, incoming(r)) for r in records]
    ds.append(store.update_item(item("ghost", 0.0, state="claimed")))
    ds.append(store.update_item(item("i3", 3.0, state="claimed", operator="a")))
    results = yield DeferredList(ds, consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 50 + [False, True]
    assert results[50][1].check(LookupError)
    loaded = yield store.load_open_items()
    open_items = [record for record, _ in loaded]
    assert [i.item_id for i in open_items] == [f"i{n}" for n in range(50)]
    assert open_items[3].state == "claimed"
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_sqlite_store_rewrites_legacy_client_ids(tmp_path: Path) -> Generator[Any, Any, None]:
    """A store that kept anonymous clients' credentials as their ids (before
    public ids) is rewritten on open: items and messages of such a client
    move to its public id, so its kept replies still reach it; other ids
    stay as they are."""
    from dataclasses import replace

    from twisted.internet import reactor

    from wsdaemon.client_ids import public_id
    from wsdaemon.connections.identity import issue

    credential = issue(b"s" * 32)
    path = tmp_path / "state" / "queue.sqlite3"
    records = [replace(item("a", 1.0), client_id=credential), item("b", 2.0)]
    store = SQLiteStore(path, reactor)
    yield store.open()
    try:
        for record in records:
            yield store.add_item(record, incoming(record))
        yield store.add_message(MessageRecord(client_id=credential, route="/support",
                                              direction="out", sender="op", body="PIN 4321",
                                              at=3.0))
    finally:
        yield store.close()

    store = SQLiteStore(path, reactor)
    yield store.open()
    try:
        items = yield store.load_open_items()
        assert sorted(record.client_id for record, _ in items) == sorted(
            [public_id(credential), "client-b"])
        kept = yield store.undelivered(public_id(credential))
        assert [m.body for m in kept] == ["PIN 4321"]
        assert (yield store.undelivered(credential)) == []
        everything = yield store.transcript(None, None, 100)
        assert credential not in {m.client_id for m in everything}
    finally:
        yield store.close()
