"""
The conversation tables, and writing one row of each (the store and the
migration both do).
"""

from __future__ import annotations

import sqlite3

from wsdaemon.conversations.codec import (
    CONVERSATION_COLUMNS,
    MESSAGE_COLUMNS,
    NOTE_COLUMNS,
    conversation_row,
    message_row,
    note_row,
)
from wsdaemon.conversations.model import Conversation, Message, Note

__all__ = ["SCHEMA", "SELECT_CONVERSATION", "UPDATE_CONVERSATION", "add_missing_columns",
           "insert_conversation", "insert_message", "insert_note"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    visitor TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'snoozed', 'resolved')),
    assignee TEXT,
    version INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    created_at REAL NOT NULL,
    opened_at REAL NOT NULL,
    last_activity_at REAL NOT NULL,
    first_response_at REAL,
    resolved_at REAL,
    waiting_since REAL,
    snoozed_until REAL,
    assigned_at REAL,
    unanswered INTEGER NOT NULL,
    delivered_upto INTEGER NOT NULL,
    visitor_read_upto INTEGER NOT NULL,
    unread_floor INTEGER NOT NULL,
    note_count INTEGER NOT NULL,
    notices INTEGER NOT NULL,       -- acknowledgement 1, offline notice 2, fallback 4
    state TEXT NOT NULL,            -- JSON: labels, read marks, recent ids, newest notes
    contact TEXT,
    preview TEXT NOT NULL,
    profile TEXT,                   -- JSON: the visitor's name, email, attributes, source
    UNIQUE (route, visitor)
);
CREATE INDEX IF NOT EXISTS conversations_live ON conversations (opened_at, conversation_id)
    WHERE status != 'resolved';
-- The inbox's lists by state ("Resolved": most recent activity first) read
-- a page and the count from this index, not from the whole table.
CREATE INDEX IF NOT EXISTS conversations_by_status
    ON conversations (status, last_activity_at DESC, conversation_id);
CREATE TABLE IF NOT EXISTS conversation_messages (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    author TEXT NOT NULL CHECK (author IN ('visitor', 'operator', 'system', 'bot')),
    operator TEXT,
    display_name TEXT,
    body TEXT NOT NULL,
    at REAL NOT NULL,
    client_message_id TEXT,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conversation_notes (
    conversation_id TEXT NOT NULL,
    note_id INTEGER NOT NULL,
    operator TEXT NOT NULL,
    body TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (conversation_id, note_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wsdaemon_migrations (
    name TEXT PRIMARY KEY,
    done_at REAL NOT NULL
);
"""


#: Columns added to C{conversations} since its first release, with their
#: type: a file made before them gets them (NULL in existing rows) on open.
_ADDED_COLUMNS = (("profile", "TEXT"),)


def add_missing_columns(db: sqlite3.Connection) -> list[str]:
    """
    Bring a C{conversations} table made by an older release up to L{SCHEMA}.

    @return: the columns added.
    """
    present = {row[1] for row in db.execute("PRAGMA table_info(conversations)")}
    added = []
    for column, kind in _ADDED_COLUMNS:
        if column not in present:
            db.execute(f"ALTER TABLE conversations ADD COLUMN {column} {kind}")
            added.append(column)
    return added


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})")


_INSERT_CONVERSATION = _insert("conversations", CONVERSATION_COLUMNS)
UPDATE_CONVERSATION = (
    "UPDATE conversations SET "
    + ", ".join(f"{c} = ?" for c in CONVERSATION_COLUMNS[1:])
    + " WHERE conversation_id = ? AND version = ?")
_INSERT_MESSAGE = _insert("conversation_messages", MESSAGE_COLUMNS)
_INSERT_NOTE = _insert("conversation_notes", NOTE_COLUMNS)
SELECT_CONVERSATION = f"SELECT {', '.join(CONVERSATION_COLUMNS)} FROM conversations"


def insert_conversation(db: sqlite3.Connection, conversation: Conversation) -> None:
    row = conversation_row(conversation)
    db.execute(_INSERT_CONVERSATION, [row[c] for c in CONVERSATION_COLUMNS])


def insert_message(db: sqlite3.Connection, message: Message) -> None:
    row = message_row(message)
    db.execute(_INSERT_MESSAGE, [row[c] for c in MESSAGE_COLUMNS])


def insert_note(db: sqlite3.Connection, note: Note) -> None:
    row = note_row(note)
    db.execute(_INSERT_NOTE, [row[c] for c in NOTE_COLUMNS])
