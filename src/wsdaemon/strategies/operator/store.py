"""
The embedded queue store: one SQLite file in WAL mode.

All SQLite calls run on one dedicated thread (a thread pool of size one),
so the reactor never blocks on disk and the connection is only ever used by
the thread that opened it. Operations are executed in the order they were
asked for; those that arrive while a commit is under way are grouped into
the next transaction (group commit: one fsync for many items), each inside
its own savepoint so that one failing operation does not undo the others.
Every Deferred fires only after its transaction is committed with
C{synchronous=FULL}: what the queue has been told is stored survives
C{kill -9} and power loss.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from wsdaemon.client_ids import public_id_of_legacy
from wsdaemon.records import ItemRecord, MessageRecord
from wsdaemon.sqlite_writer import SQLiteWriter
from wsdaemon.strategies.operator.ports import IQueueStore

__all__ = ["SQLiteStore"]


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
    -- out messages: 0 waiting, 1 delivered, 2 failed for good (not retried)
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
        sender=row[5], body=row[6], at=row[7], delivered=row[8] == 1, failed=row[8] == 2,
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
        self._writer = SQLiteWriter(path, reactor, name="wsdaemon-sqlite")
        self._run = self._writer.run

    def open(self) -> Deferred[None]:
        return self._writer.open(_prepare)

    def close(self) -> Deferred[None]:
        return self._writer.close()

    def load_open_items(self, preview: int = 0) -> Deferred[list[tuple[ItemRecord, int]]]:
        columns = _ITEM_COLUMNS if not preview else _ITEM_COLUMNS.replace(
            "text,", f"substr(text, 1, {int(preview)}),")

        def work(db: sqlite3.Connection) -> list[tuple[ItemRecord, int]]:
            rows = db.execute(
                f"SELECT {columns}, length(text) FROM items "
                "WHERE state IN ('queued', 'claimed') ORDER BY created_at, rowid"
            ).fetchall()
            return [(_item(row), row[-1]) for row in rows]

        return self._run(work)

    def item_text(self, item_id: str) -> Deferred[str | None]:
        def work(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT text FROM items WHERE item_id = ?", (item_id,)).fetchone()
            return None if row is None else str(row[0])

        return self._run(work)

    def message_body(self, seq: int) -> Deferred[str | None]:
        def work(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT body FROM messages WHERE seq = ?", (seq,)).fetchone()
            return None if row is None else str(row[0])

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

    def mark_failed(self, seqs: Iterable[int]) -> Deferred[None]:
        values = [(seq,) for seq in seqs]

        def work(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE messages SET delivered = 2 WHERE seq = ?", values)

        return self._run(work)

    def transcript(self, client_id: str | None, before: int | None = None,
                   limit: int | None = None) -> Deferred[list[MessageRecord]]:
        def work(db: sqlite3.Connection) -> list[MessageRecord]:
            where: list[str] = []
            args: list[Any] = []
            if client_id is not None:
                where.append("client_id = ?")
                args.append(client_id)
            if before is not None:
                where.append("seq < ?")
                args.append(before)
            sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages"
            if where:
                sql += " WHERE " + " AND ".join(where)
            if limit is None:
                rows = db.execute(sql + " ORDER BY seq", args).fetchall()
            else:
                # The newest page, given oldest first.
                rows = db.execute(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit]).fetchall()
                rows.reverse()
            return [_message(row) for row in rows]

        return self._run(work)


def _migrate_client_ids(db: sqlite3.Connection) -> None:
    """
    Stores written before public ids kept an anonymous client's credential
    as its client id: replace each by its public id (one transaction; a
    no-op once done), so a client that comes back finds what was kept.
    """
    legacy = "length(client_id) = 39 AND substr(client_id, 23, 1) = '.'"
    if db.execute(f"SELECT 1 FROM items WHERE {legacy} UNION ALL "
                  f"SELECT 1 FROM messages WHERE {legacy} LIMIT 1").fetchone() is None:
        return
    db.create_function("wsdaemon_public_id", 1, public_id_of_legacy, deterministic=True)
    with db:
        for table in ("items", "messages"):
            db.execute(f"UPDATE {table} SET client_id = wsdaemon_public_id(client_id) "
                       f"WHERE {legacy}")


def _prepare(db: sqlite3.Connection) -> None:
    """On the store's thread, once connected: the schema, then migrations."""
    db.executescript(_SCHEMA)
    _migrate_client_ids(db)


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
