"""
The SQLite store's search index (L{wsdaemon.support.search}): one FTS5
table, C{conversation_search}, with a row per message (visitor, operator
and bot: not the daemon's own notices), per note (its own column, searched
only when asked) and per conversation's visitor details (replaced when they
change; C{conversation_search_about} says which row holds them now).

Written by L{index_commit} inside the savepoint of the commit that stores
the messages, so the index never holds what the store does not, nor misses
what it does. A file made before the index gets it at open
(L{build_index}): conversation by conversation, least recent activity
first (the index's row order is then newest activity last, which is the
order a search walks back from), in transactions of L{BUILD_BATCH}
conversations; a build cut short is started again at the next open.

Searches (L{SQLiteSearch}) run on a connection and a thread of their own,
never the writer's (WAL: they read the last commit while the writer
goes on), walking the matches newest first up to L{SCAN_ROWS} rows and
L{SEARCH_SECONDS}; past either bound the answer says C{partial}.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from wsdaemon.conversations.codec import CONVERSATION_COLUMNS, conversation_from_row
from wsdaemon.conversations.effects import Commit
from wsdaemon.conversations.model import Author, Conversation
from wsdaemon.sqlite_writer import StoreThreadPool
from wsdaemon.support.schema import SELECT_CONVERSATION
from wsdaemon.support.search import (
    HITS_PER_CONVERSATION,
    MARK_END,
    MARK_START,
    Found,
    Hit,
    SearchQuery,
    SearchResult,
    about_text,
    after_key,
    fts_expression,
    indexed,
    marked,
)

__all__ = ["BROWSE_AFTER", "BROWSE_COUNT", "BROWSE_FIRST",
           "BUILD_BATCH", "SCAN_ROWS", "SEARCH_SCHEMA", "SEARCH_SECONDS", "SQLiteSearch",
           "build_index", "index_commit"]

#: The migration's name in C{wsdaemon_migrations} once the index is whole
#: (2: Han and kana indexed a character a word; a file indexed by 1 is
#: indexed again at open).
MIGRATION = "search-index-2"
#: Conversations indexed per transaction when a file's index is built.
BUILD_BATCH = 1000
#: Matching rows a search reads at most (newest first).
SCAN_ROWS = 5000
#: Seconds a search may take, about: past it, what it found so far.
SEARCH_SECONDS = 0.5
#: Words of context on each side of a match in a snippet, about.
SNIPPET_WORDS = 16

_MESSAGE, _NOTE, _ABOUT = "m", "n", "v"
_KINDS = {_MESSAGE: "message", _NOTE: "note", _ABOUT: "visitor"}
#: A row of the index: text, note, conversation, kind, number.
_Row = tuple[str | None, str | None, str, str, int | None]
#: A match before its snippet is made: its row, kind and number.
_Match = tuple[int, str, int | None]
_INDEXED_AUTHORS = frozenset((Author.VISITOR, Author.OPERATOR, Author.BOT))

#: A list by state (no words): the count, the first page, a later page;
#: each read from the C{conversations_by_status} index (schema.py).
BROWSE_COUNT = "SELECT COUNT(*) FROM conversations WHERE status = ?"
BROWSE_FIRST = ("SELECT conversation_id FROM conversations WHERE status = ? "
                "ORDER BY last_activity_at DESC, conversation_id LIMIT ?")
BROWSE_AFTER = ("SELECT conversation_id FROM conversations WHERE status = ? AND "
                "(last_activity_at < ? OR (last_activity_at = ? AND conversation_id > ?)) "
                "ORDER BY last_activity_at DESC, conversation_id LIMIT ?")

SEARCH_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS conversation_search USING fts5(
    text, note, conversation_id UNINDEXED, kind UNINDEXED, number UNINDEXED,
    tokenize = 'porter unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS conversation_search_about (
    conversation_id TEXT PRIMARY KEY,
    doc INTEGER NOT NULL,
    text TEXT NOT NULL
) WITHOUT ROWID;
"""
_SEARCH_TABLES = ("conversation_search", "conversation_search_about")
_INSERT = ("INSERT INTO conversation_search (text, note, conversation_id, kind, number) "
           "VALUES (?, ?, ?, ?, ?)")


def _index_about(db: sqlite3.Connection, conversation: Conversation) -> None:
    key = conversation.conversation_id
    text = about_text(conversation)
    row = db.execute("SELECT doc, text FROM conversation_search_about WHERE conversation_id = ?",
                     (key,)).fetchone()
    if row is not None and row[1] == text:
        return
    if row is not None:
        db.execute("DELETE FROM conversation_search WHERE rowid = ?", (row[0],))
    doc = db.execute(_INSERT, (text, None, key, _ABOUT, None)).lastrowid
    db.execute("INSERT OR REPLACE INTO conversation_search_about (conversation_id, doc, text) "
               "VALUES (?, ?, ?)", (key, doc, text))


def index_commit(db: sqlite3.Connection, commit: Commit) -> None:
    """Index what a commit stores, in its transaction (the store's writer calls it)."""
    rows: list[_Row] = [(indexed(m.body), None, m.conversation_id, _MESSAGE, m.seq)
            for m in commit.messages if m.author in _INDEXED_AUTHORS]
    rows += [(None, indexed(n.body), n.conversation_id, _NOTE, n.note_id) for n in commit.notes]
    if rows:
        db.executemany(_INSERT, rows)
    for conversation in commit.conversations:
        _index_about(db, conversation)


def _conversation(row: tuple[Any, ...]) -> Conversation:
    return conversation_from_row(dict(zip(CONVERSATION_COLUMNS, row, strict=True)))


_AUTHORS = tuple(sorted(str(a) for a in _INDEXED_AUTHORS))
_STORED_MESSAGES = ("SELECT seq, body FROM conversation_messages WHERE conversation_id = ? "
                    f"AND author IN ({', '.join('?' * len(_AUTHORS))}) ORDER BY seq")
_STORED_NOTES = ("SELECT note_id, body FROM conversation_notes WHERE conversation_id = ? "
                 "ORDER BY note_id")


def _index_stored(db: sqlite3.Connection, key: str) -> tuple[int, int]:
    """Index one stored conversation; @return: its messages and notes indexed."""
    rows: list[_Row] = [(indexed(body), None, key, _MESSAGE, seq)
                        for seq, body in db.execute(_STORED_MESSAGES, (key, *_AUTHORS))]
    messages = len(rows)
    rows += [(None, indexed(body), key, _NOTE, note_id)
             for note_id, body in db.execute(_STORED_NOTES, (key,))]
    db.executemany(_INSERT, rows)
    found = db.execute(f"{SELECT_CONVERSATION} WHERE conversation_id = ?", (key,)).fetchone()
    _index_about(db, _conversation(found))
    return messages, len(rows) - messages


def build_index(db: sqlite3.Connection, now: float,
                batch: int = BUILD_BATCH) -> dict[str, int] | None:
    """
    Build the index of a file made before it (or whose build was cut
    short), at open, before anything else writes.

    @return: what was indexed (C{conversations}, C{messages}, C{notes}),
        or None when the index was whole already.
    """
    done = db.execute("SELECT 1 FROM wsdaemon_migrations WHERE name = ?", (MIGRATION,))
    if done.fetchone() is not None:
        return None
    with db:
        db.execute("BEGIN IMMEDIATE")
        for table in _SEARCH_TABLES:
            db.execute(f"DROP TABLE IF EXISTS {table}")
    db.executescript(SEARCH_SCHEMA)
    keys = [r[0] for r in db.execute(
        "SELECT conversation_id FROM conversations ORDER BY last_activity_at, conversation_id")]
    counts = {"conversations": len(keys), "messages": 0, "notes": 0}
    for start in range(0, len(keys), batch):
        with db:
            db.execute("BEGIN IMMEDIATE")
            for key in keys[start:start + batch]:
                messages, notes = _index_stored(db, key)
                counts["messages"] += messages
                counts["notes"] += notes
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO conversation_search (conversation_search) VALUES ('optimize')")
        db.execute("INSERT OR REPLACE INTO wsdaemon_migrations (name, done_at) "
                   "VALUES (?, ?)", (MIGRATION, now))
    return counts


class SQLiteSearch:
    """
    Searches of a conversation store's file, on a reading connection and
    a thread of their own.

    @param clock: seconds, for the search's time bound (a monotonic clock).
    """

    def __init__(self, path: Path, reactor: Any, clock: Callable[[], float], *,
                 scan_rows: int = SCAN_ROWS, seconds: float = SEARCH_SECONDS) -> None:
        self.path = path
        self._reactor = reactor
        self._clock = clock
        self.scan_rows = scan_rows
        self.seconds = seconds
        #: SQLite steps between two looks at the clock during one statement.
        self.progress_ops = 10_000
        self._pool = StoreThreadPool(minthreads=0, maxthreads=1, name="wsdaemon-search")
        self._db: sqlite3.Connection | None = None
        self._started = False

    def search(self, query: SearchQuery) -> Deferred[SearchResult]:
        """@return: a Deferred firing with the page of what C{query} finds."""
        if not self._started:
            self._pool.start()
            self._started = True
        return deferToThreadPool(self._reactor, self._pool, self._search, query)

    def close(self) -> Deferred[None]:
        if not self._started:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d

        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        def stop(result: Any) -> Any:
            self._pool.stop()
            self._started = False
            return result

        return deferToThreadPool(self._reactor, self._pool, disconnect).addBoth(stop)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA query_only = 1")
            db.execute("PRAGMA busy_timeout = 5000")
            self._db = db
        return self._db

    def _search(self, query: SearchQuery) -> SearchResult:
        db = self._connection()
        deadline = self._clock() + self.seconds
        db.execute("BEGIN")  # one snapshot for the matches, their rows and snippets
        db.set_progress_handler(lambda: int(self._clock() > deadline), self.progress_ops)
        try:
            if not query.terms:
                return self._browse(db, query)
            expression = fts_expression(query.terms, query.notes)
            matches, partial = self._matches(db, expression, deadline)
            db.set_progress_handler(None, 0)
            # Ordered by their keys alone; only the page's rows are read whole.
            keys = sorted(self._activity(db, list(matches), query.status))
            start = after_key(query.after)
            rest = [k for k in keys if start is None or k > start]
            shown = self._conversations(db, [key for _, key in rest[:query.limit]])
            return SearchResult(
                tuple(Found(c, self._snippets(db, expression, matches[c.conversation_id]))
                      for c in shown),
                len(keys), len(rest) > query.limit, partial, "all")
        finally:
            db.set_progress_handler(None, 0)
            if db.in_transaction:  # (an interrupted statement may have ended it)
                db.execute("ROLLBACK")

    def _browse(self, db: sqlite3.Connection, query: SearchQuery) -> SearchResult:
        """
        Every conversation in C{query.status}, most recent activity first: one
        page read whole, the count and the page's keys from the conversations'
        index by state (cut at the search's time limit: then partial).
        """
        start = query.after
        try:
            total = db.execute(BROWSE_COUNT, (query.status,)).fetchone()[0]
            if start is None:
                rows = db.execute(BROWSE_FIRST, (query.status, query.limit + 1)).fetchall()
            else:
                rows = db.execute(BROWSE_AFTER, (query.status, start[0], start[0], start[1],
                                                 query.limit + 1)).fetchall()
        except sqlite3.OperationalError as e:
            if "interrupt" not in str(e):
                raise
            return SearchResult((), 0, False, True, "all")
        keys = [key for (key,) in rows]
        shown = self._conversations(db, keys[:query.limit])
        return SearchResult(tuple(Found(c, ()) for c in shown), total,
                            len(keys) > query.limit, False, "all")

    def _matches(self, db: sqlite3.Connection, expression: str,
                 deadline: float) -> tuple[dict[str, list[_Match]], bool]:
        """The newest matches of each conversation, and whether the walk was cut short."""
        matches: dict[str, list[_Match]] = {}
        scanned = 0
        try:
            cursor = db.execute(
                "SELECT rowid, conversation_id, kind, number FROM conversation_search "
                "WHERE conversation_search MATCH ? ORDER BY rowid DESC LIMIT ?",
                (expression, self.scan_rows + 1))
            while rows := cursor.fetchmany(256):
                for rowid, key, kind, number in rows:
                    scanned += 1
                    if scanned > self.scan_rows:
                        return matches, True
                    found = matches.setdefault(key, [])
                    if len(found) < HITS_PER_CONVERSATION:
                        found.append((rowid, kind, number))
                if self._clock() > deadline:
                    return matches, True
        except sqlite3.OperationalError as e:
            if "interrupt" not in str(e):
                raise
            return matches, True
        return matches, False

    @staticmethod
    def _activity(db: sqlite3.Connection, keys: list[str],
                  status: str | None) -> list[tuple[float, str]]:
        """
        (minus last activity, id) of each conversation (in C{status}, if
        given): most recent first when sorted.
        """
        found: list[tuple[float, str]] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            found += [(-at, key) for key, at, state in db.execute(
                "SELECT conversation_id, last_activity_at, status FROM conversations WHERE "
                f"conversation_id IN ({', '.join('?' * len(chunk))})", chunk)
                if status is None or state == status]
        return found

    @staticmethod
    def _conversations(db: sqlite3.Connection, keys: list[str]) -> list[Conversation]:
        """The conversations named, whole, in that order."""
        rows = db.execute(f"{SELECT_CONVERSATION} WHERE conversation_id IN "
                          f"({', '.join('?' * len(keys))})", keys).fetchall()
        by_key = {c.conversation_id: c for c in map(_conversation, rows)}
        return [by_key[key] for key in keys if key in by_key]

    @staticmethod
    def _snippets(db: sqlite3.Connection, expression: str,
                  matches: list[_Match]) -> tuple[Hit, ...]:
        made = []
        for rowid, kind, number in matches:
            row = db.execute(
                "SELECT snippet(conversation_search, -1, ?, ?, '…', ?) FROM conversation_search "
                "WHERE conversation_search MATCH ? AND rowid = ?",
                (MARK_START, MARK_END, SNIPPET_WORDS, expression, rowid)).fetchone()
            text, marks = marked(row[0] if row is not None and row[0] else "")
            made.append(Hit(_KINDS[kind], number, text, marks))
        return tuple(made)
