"""
The embedded queue store: one SQLite file in WAL mode.

All SQLite calls run on one dedicated thread (a thread pool of size one),
so the reactor never blocks on disk and the connection is only ever used by
the thread that opened it. Each write is its own transaction, committed
with C{synchronous=FULL} before the Deferred fires: what the queue has been
told is stored survives C{kill -9} and power loss.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from wsdaemon.interfaces import IQueueStore
from wsdaemon.operators.records import ItemRecord, MessageRecord

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    client_id TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    operator TEXT,
    answered_at REAL,
    fallback_sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_open ON items (state, created_at);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL,
    route TEXT NOT NULL,
    item_id TEXT,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    at REAL NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_client ON messages (client_id, seq);
CREATE INDEX IF NOT EXISTS messages_undelivered ON messages (client_id, delivered, direction);
"""

_ITEM_COLUMNS = ("item_id, route, client_id, text, created_at, state, operator, answered_at, "
                 "fallback_sent")
_MESSAGE_COLUMNS = "seq, client_id, route, item_id, direction, sender, body, at, delivered"


def _item(row: tuple[Any, ...]) -> ItemRecord:
    return ItemRecord(
        item_id=row[0], route=row[1], client_id=row[2], text=row[3], created_at=row[4],
        state=row[5], operator=row[6], answered_at=row[7], fallback_sent=bool(row[8]),
    )


def _message(row: tuple[Any, ...]) -> MessageRecord:
    return MessageRecord(
        seq=row[0], client_id=row[1], route=row[2], item_id=row[3], direction=row[4],
        sender=row[5], body=row[6], at=row[7], delivered=bool(row[8]),
    )


def _item_values(item: ItemRecord) -> tuple[Any, ...]:
    return (item.item_id, item.route, item.client_id, item.text, item.created_at, item.state,
            item.operator, item.answered_at, int(item.fallback_sent))


@implementer(IQueueStore)
class SQLiteStore:
    """
    @param path: the database file (created with its directory if missing).
    @param reactor: for handing results back to the reactor thread.
    """

    def __init__(self, path: Path, reactor: Any) -> None:
        self.path = path
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="wsdaemon-sqlite")
        self._db: sqlite3.Connection | None = None

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        def in_thread() -> T:
            assert self._db is not None, "store is not open"
            with self._db:  # one transaction: commit, or roll back on error
                return work(self._db)

        return deferToThreadPool(self._reactor, self._pool, in_thread)

    def open(self) -> Deferred[None]:
        self._pool.start()

        def connect() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            db.isolation_level = "DEFERRED"  # back to transactions managed by `with db`
            self._db = db

        return deferToThreadPool(self._reactor, self._pool, connect)

    def close(self) -> Deferred[None]:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        def stop_pool(result: Any) -> Any:
            self._pool.stop()
            return result

        d: Deferred[Any] = deferToThreadPool(self._reactor, self._pool, disconnect)
        d.addBoth(stop_pool)
        return d

    def load_open_items(self) -> Deferred[list[ItemRecord]]:
        def work(db: sqlite3.Connection) -> list[ItemRecord]:
            rows = db.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE state IN ('queued', 'claimed') "
                "ORDER BY created_at, rowid"
            ).fetchall()
            return [_item(row) for row in rows]

        return self._run(work)

    def add_item(self, item: ItemRecord, message: MessageRecord) -> Deferred[None]:
        def work(db: sqlite3.Connection) -> None:
            db.execute(f"INSERT INTO items ({_ITEM_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                       _item_values(item))
            _insert_message(db, message)

        return self._run(work)

    def update_item(self, item: ItemRecord) -> Deferred[None]:
        def work(db: sqlite3.Connection) -> None:
            _update_item(db, item)

        return self._run(work)

    def answer_item(self, item: ItemRecord, reply: MessageRecord) -> Deferred[int]:
        def work(db: sqlite3.Connection) -> int:
            _update_item(db, item)
            return _insert_message(db, reply)

        return self._run(work)

    def add_message(self, message: MessageRecord) -> Deferred[int]:
        return self._run(lambda db: _insert_message(db, message))

    def undelivered(self, client_id: str) -> Deferred[list[MessageRecord]]:
        def work(db: sqlite3.Connection) -> list[MessageRecord]:
            rows = db.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE client_id = ? AND "
                "direction = 'out' AND delivered = 0 ORDER BY seq", (client_id,)
            ).fetchall()
            return [_message(row) for row in rows]

        return self._run(work)

    def mark_delivered(self, seqs: Iterable[int]) -> Deferred[None]:
        values = [(seq,) for seq in seqs]

        def work(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE messages SET delivered = 1 WHERE seq = ?", values)

        return self._run(work)

    def transcript(self, client_id: str | None) -> Deferred[list[MessageRecord]]:
        def work(db: sqlite3.Connection) -> list[MessageRecord]:
            if client_id is None:
                rows = db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages ORDER BY seq")
            else:
                rows = db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE client_id = ? "
                                  "ORDER BY seq", (client_id,))
            return [_message(row) for row in rows.fetchall()]

        return self._run(work)


def _update_item(db: sqlite3.Connection, item: ItemRecord) -> None:
    cursor = db.execute(
        "UPDATE items SET state = ?, operator = ?, answered_at = ?, fallback_sent = ? "
        "WHERE item_id = ?",
        (item.state, item.operator, item.answered_at, int(item.fallback_sent), item.item_id),
    )
    if cursor.rowcount != 1:
        raise LookupError(f"no stored item {item.item_id}")


def _insert_message(db: sqlite3.Connection, message: MessageRecord) -> int:
    cursor = db.execute(
        "INSERT INTO messages (client_id, route, item_id, direction, sender, body, at, "
        "delivered) VALUES (?,?,?,?,?,?,?,?)",
        (message.client_id, message.route, message.item_id, message.direction, message.sender,
         message.body, message.at, int(message.delivered)),
    )
    seq = cursor.lastrowid
    assert seq is not None
    return seq
