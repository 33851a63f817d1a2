"""
The operator queue's items and messages become conversations, once, the
first time the conversation store opens the file (docs/conversations.md,
section 5). The queue's tables are read, never changed.

Each (route, client) of the queue's messages becomes one conversation, its
messages renumbered 1, 2, 3... in their order: C{in} from the visitor,
C{out} from C{system} the daemon's, any other C{out} an operator's (its
name shown). It is open when the pair has unanswered items (waiting since
the oldest, as many unanswered, the acknowledgement counted as sent),
resolved at its last message otherwise. Messages to the visitor count as
delivered up to the first one that was not; one that could never be
written becomes a note saying so. No claim survives (none did a restart).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from itertools import groupby
from typing import Any

from wsdaemon.client_ids import public_id_of_legacy
from wsdaemon.conversations.model import (
    Author,
    Bounds,
    Conversation,
    Message,
    Note,
    Status,
    conversation_id_for,
)
from wsdaemon.support.schema import insert_conversation, insert_message, insert_note

__all__ = ["MIGRATION", "NOTE_AUTHOR", "conversation_from_queue", "take_over_queue"]

#: Its name in C{wsdaemon_migrations}.
MIGRATION = "conversations-from-queue"
#: Who the notes the migration writes are by.
NOTE_AUTHOR = "wsdaemon"

#: (route, client) -> (created_at, fallback_sent) of each unanswered item.
_OpenItems = dict[tuple[str, str], list[tuple[float, bool]]]


def take_over_queue(db: sqlite3.Connection, bounds: Bounds, now: float) -> int:
    """
    In the caller's transaction: make conversations of the queue's tables,
    unless done before. @return: how many were made.
    """
    if db.execute("SELECT 1 FROM wsdaemon_migrations WHERE name = ?",
                  (MIGRATION,)).fetchone() is not None:
        return 0
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    made = 0
    if {"items", "messages"} <= tables:
        # Stores older than public ids may still hold credentials as ids.
        db.create_function("wsdaemon_public_id", 1, public_id_of_legacy, deterministic=True)
        unanswered: _OpenItems = defaultdict(list)
        for route, client, created_at, fallback in db.execute(
                "SELECT route, wsdaemon_public_id(client_id), created_at, fallback_sent "
                "FROM items WHERE state IN ('queued', 'claimed') ORDER BY created_at"):
            unanswered[(route, client)].append((created_at, bool(fallback)))
        rows = db.execute("SELECT route, wsdaemon_public_id(client_id) AS client, direction, "
                          "sender, body, at, delivered FROM messages "
                          "ORDER BY client, route, seq")
        for (route, client), group in groupby(rows, key=lambda row: (row[0], row[1])):
            _take_over(db, route, client, list(group), unanswered.pop((route, client), []),
                       bounds)
            made += 1
        for (route, client), items in unanswered.items():  # items without messages
            texts = db.execute("SELECT 'in', 'client', text, created_at, 1 FROM items "
                               "WHERE route = ? AND wsdaemon_public_id(client_id) = ? AND "
                               "state IN ('queued', 'claimed') ORDER BY created_at",
                               (route, client)).fetchall()
            _take_over(db, route, client, [(route, client, *row) for row in texts], items,
                       bounds)
            made += 1
    db.execute("INSERT INTO wsdaemon_migrations (name, done_at) VALUES (?, ?)", (MIGRATION, now))
    return made


def _take_over(db: sqlite3.Connection, route: str, client: str, rows: list[tuple[Any, ...]],
               items: list[tuple[float, bool]], bounds: Bounds) -> None:
    conversation, messages, notes = conversation_from_queue(route, client, rows, items, bounds)
    insert_conversation(db, conversation)
    for message in messages:
        insert_message(db, message)
    for note in notes:
        insert_note(db, note)


def conversation_from_queue(route: str, client: str, rows: list[tuple[Any, ...]],
                            items: list[tuple[float, bool]], bounds: Bounds
                            ) -> tuple[Conversation, list[Message], list[Note]]:
    """
    The mapping itself, without a store (the SQLite and the Redis store
    both take over through it).

    @param rows: the pair's queue messages in their order, each
        C{(route, client, direction, sender, body, at, delivered)} with
        C{delivered} 0 (not yet), 1 (written) or 2 (never could be).
    @param items: C{(created_at, fallback_sent)} of each unanswered item.
    @return: the conversation (version 1), its messages and its notes.
    """
    key = conversation_id_for(route, client)
    messages: list[Message] = []
    notes: list[Note] = []
    delivered_upto: int | None = None
    for seq, (_, _, direction, sender, body, at, delivered) in enumerate(rows, start=1):
        if direction == "in":
            messages.append(Message(key, seq, Author.VISITOR, body, at))
            continue
        author = Author.SYSTEM if sender == "system" else Author.OPERATOR
        operator = None if author is Author.SYSTEM else sender
        messages.append(Message(key, seq, author, body, at, operator=operator,
                                display_name=operator))
        if delivered == 0 and delivered_upto is None:
            delivered_upto = seq - 1
        if delivered == 2:
            notes.append(Note(key, len(notes) + 1, NOTE_AUTHOR,
                              f"Message {seq} could never be written to the visitor "
                              "(too big for its route).", at))
    conversation = _conversation(key, route, client, messages, notes, items, bounds,
                                 len(messages) if delivered_upto is None else delivered_upto)
    return conversation, messages, notes


def _conversation(key: str, route: str, client: str, messages: list[Message],
                  notes: list[Note], items: list[tuple[float, bool]], bounds: Bounds,
                  delivered_upto: int) -> Conversation:
    first, last = messages[0], messages[-1]
    # Answered by an operator: the queue's own notices (its fallback) are
    # no answer, so a question followed only by one stays unread.
    answered = [m.seq for m in messages if m.author is Author.OPERATOR]
    opened = min(at for at, _ in items) if items else first.at
    # The episode's first reply: the open one began at its oldest unanswered item.
    first_response = next((m.at for m in messages
                           if m.author is Author.OPERATOR and m.at >= opened), None)
    if items:
        waiting_since = opened
        floor = max(answered, default=0)
        episode: dict[str, Any] = dict(
            status=Status.OPEN, opened_at=waiting_since, waiting_since=waiting_since,
            unanswered=len(items), ack_sent=True, fallback_sent=any(f for _, f in items))
    else:
        floor = last.seq
        episode = dict(status=Status.RESOLVED, opened_at=first.at, resolved_at=last.at)
    shown = [m for m in messages if m.author is not Author.SYSTEM]
    return Conversation(
        key, route, client, created_at=first.at, last_activity_at=last.at, version=1,
        last_seq=last.seq, delivered_upto=delivered_upto, unread_floor=floor,
        first_response_at=first_response,
        recent_visitor_seqs=_newest(
            (m.seq for m in messages if m.author is Author.VISITOR and m.seq > floor),
            bounds.max_unread),
        notes=tuple(notes[-bounds.max_notes_kept:]) if bounds.max_notes_kept else (),
        note_count=len(notes),
        preview=shown[-1].body[:bounds.preview_chars] if shown else "",
        **episode)


def _newest(seqs: Iterable[int], keep: int) -> tuple[int, ...]:
    kept = tuple(seqs)
    return kept[-keep:] if keep else ()
