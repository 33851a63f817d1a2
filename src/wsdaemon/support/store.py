"""
Conversations in SQLite: the embedded L{IConversationStore}.

Three tables beside the operator queue's (same file, L{schema},
docs/conversations.md section 5): C{conversations} (one row each; what the core keeps in memory),
C{conversation_messages} and C{conversation_notes} (keyed by conversation
and number: a page is a primary-key range). A commit is one savepoint of a
group commit: every conversation written only over the version it was
decided on, every message and note number new, or nothing. The same
savepoint keeps the search index (L{search_index}) in step; searches read
it on a connection and thread of their own, not the writer's.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from wsdaemon.conversations.codec import (
    CONVERSATION_COLUMNS,
    MESSAGE_COLUMNS,
    NOTE_COLUMNS,
    conversation_from_row,
    conversation_row,
    message_from_row,
    note_from_row,
)
from wsdaemon.conversations.effects import Commit
from wsdaemon.conversations.errors import StaleConversation
from wsdaemon.conversations.model import Bounds, Conversation, Message, Note
from wsdaemon.sqlite_writer import SQLiteWriter
from wsdaemon.support.migration import take_over_queue
from wsdaemon.support.ports import IConversationSearch, IConversationStore
from wsdaemon.support.schema import (
    SCHEMA,
    SELECT_CONVERSATION,
    UPDATE_CONVERSATION,
    add_missing_columns,
    insert_conversation,
    insert_message,
    insert_note,
)
from wsdaemon.support.search import SearchQuery, SearchResult
from wsdaemon.support.search_index import SEARCH_SCHEMA, SQLiteSearch, build_index, index_commit

__all__ = ["SQLiteConversationStore"]

_log = Logger()

def _write(db: sqlite3.Connection, commit: Commit) -> None:
    """One commit, inside its savepoint: raising undoes all of it."""
    stale: list[str] = []
    for conversation in commit.conversations:
        key = conversation.conversation_id
        if conversation.version == 1:
            try:
                insert_conversation(db, conversation)
            except sqlite3.IntegrityError:
                stale.append(key)
            continue
        row = conversation_row(conversation)
        cursor = db.execute(UPDATE_CONVERSATION, [
            *(row[c] for c in CONVERSATION_COLUMNS[1:]), key, conversation.version - 1])
        if cursor.rowcount != 1:
            stale.append(key)
    if stale:
        raise StaleConversation(tuple(stale))
    for message in commit.messages:
        try:
            insert_message(db, message)
        except sqlite3.IntegrityError:
            raise StaleConversation((message.conversation_id,)) from None
    for note in commit.notes:
        try:
            insert_note(db, note)
        except sqlite3.IntegrityError:
            raise StaleConversation((note.conversation_id,)) from None
    index_commit(db, commit)


def _conversation(row: tuple[Any, ...]) -> Conversation:
    return conversation_from_row(dict(zip(CONVERSATION_COLUMNS, row, strict=True)))


@implementer(IConversationStore, IConversationSearch)
class SQLiteConversationStore:
    """
    @param path: the SQLite file (the C{[operator] store}).
    @param reactor: for handing results back to the reactor thread, and
        the time the queue's items and messages were taken over.
    @param bounds: what a conversation taken over from the queue may hold.
    @param timer: the clock the store's threads time their own work by (a
        search's time bound, the index's build), read in those threads
        where the reactor's clock is not theirs to read: monotonic seconds.
    """

    def __init__(self, path: Path, reactor: Any, bounds: Bounds | None = None,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._reactor = reactor
        self._bounds = bounds or Bounds()
        self._writer = SQLiteWriter(path, reactor, "wsdaemon-conversations")
        self._timer = timer
        self._search = SQLiteSearch(path, reactor, timer)

    def open(self) -> Deferred[None]:
        now = float(self._reactor.seconds())
        built: list[tuple[dict[str, int], float]] = []
        made: list[int] = []

        def prepare(db: sqlite3.Connection) -> None:
            db.executescript(SCHEMA)
            db.executescript(SEARCH_SCHEMA)
            with db:
                db.execute("BEGIN IMMEDIATE")
                add_missing_columns(db)
                made.append(take_over_queue(db, self._bounds, now))
            started = self._timer()
            counts = build_index(db, now)
            if counts is not None:
                built.append((counts, self._timer() - started))

        def report(result: None) -> None:
            if any(made):
                _log.info("conversations: {count} made from the operator queue's tables in "
                          "{path}", count=sum(made), path=str(self.path))
            for counts, seconds in built:
                _log.info("search index of {path} built: {conversations} conversations, "
                          "{messages} messages, {notes} notes in {seconds:.1f} s",
                          path=str(self.path), seconds=seconds, **counts)

        return self._writer.open(prepare).addCallback(report)

    def close(self) -> Deferred[None]:
        return self._search.close().addBoth(lambda _: self._writer.close())

    def search(self, query: SearchQuery) -> Deferred[SearchResult]:
        return self._search.search(query)

    def commit(self, commit: Commit) -> Deferred[None]:
        return self._writer.run(lambda db: _write(db, commit))

    def load_live(self) -> Deferred[list[Conversation]]:
        def work(db: sqlite3.Connection) -> list[Conversation]:
            rows = db.execute(f"{SELECT_CONVERSATION} WHERE status != 'resolved' "
                              "ORDER BY opened_at, conversation_id").fetchall()
            return [_conversation(row) for row in rows]

        return self._writer.run(work)

    def load(self, conversation_id: str) -> Deferred[Conversation | None]:
        def work(db: sqlite3.Connection) -> Conversation | None:
            row = db.execute(f"{SELECT_CONVERSATION} WHERE conversation_id = ?",
                             (conversation_id,)).fetchone()
            return None if row is None else _conversation(row)

        return self._writer.run(work)

    def messages(self, conversation_id: str, after: int = 0,
                 limit: int = 100) -> Deferred[list[Message]]:
        def work(db: sqlite3.Connection) -> list[Message]:
            rows = db.execute(
                f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM conversation_messages "
                "WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (conversation_id, after, limit)).fetchall()
            return [message_from_row(dict(zip(MESSAGE_COLUMNS, r, strict=True))) for r in rows]

        return self._writer.run(work)

    def history(self, conversation_id: str, before: int | None = None,
                limit: int = 100) -> Deferred[list[Message]]:
        def work(db: sqlite3.Connection) -> list[Message]:
            rows = db.execute(
                f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM conversation_messages "
                "WHERE conversation_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                (conversation_id, _upper(before), limit)).fetchall()
            rows.reverse()
            return [message_from_row(dict(zip(MESSAGE_COLUMNS, r, strict=True))) for r in rows]

        return self._writer.run(work)

    def notes(self, conversation_id: str, before: int | None = None,
              limit: int = 100) -> Deferred[list[Note]]:
        def work(db: sqlite3.Connection) -> list[Note]:
            rows = db.execute(
                f"SELECT {', '.join(NOTE_COLUMNS)} FROM conversation_notes "
                "WHERE conversation_id = ? AND note_id < ? ORDER BY note_id DESC LIMIT ?",
                (conversation_id, _upper(before), limit)).fetchall()
            rows.reverse()
            return [note_from_row(dict(zip(NOTE_COLUMNS, r, strict=True))) for r in rows]

        return self._writer.run(work)


def _upper(before: int | None) -> int:
    return 2**62 if before is None else before
