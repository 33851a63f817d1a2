"""
Conversations, messages and notes as flat rows of plain values (str, int,
float, None), for stores: the SQLite columns, the fields of a Redis hash.
Lists a conversation holds (labels, read marks, recent ids, the newest
notes) go into one JSON column, C{state}; ephemeral fields (typing) are not
stored and come back empty. The visitor's profile is its own column
(C{profile}, JSON; None in rows older than profiles).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from wsdaemon.conversations.model import Author, Conversation, Message, Note, Status
from wsdaemon.conversations.profile import profile_from_json, profile_json

__all__ = ["CONVERSATION_COLUMNS", "MESSAGE_COLUMNS", "NOTE_COLUMNS", "conversation_from_row",
           "conversation_row", "message_from_row", "message_row", "note_from_row", "note_row"]

CONVERSATION_COLUMNS = (
    "conversation_id", "route", "visitor", "status", "assignee", "version", "last_seq",
    "created_at", "opened_at", "last_activity_at", "first_response_at", "resolved_at",
    "waiting_since", "snoozed_until", "assigned_at", "unanswered", "delivered_upto",
    "visitor_read_upto", "unread_floor", "note_count", "notices", "state", "contact", "preview",
    "profile",
)
MESSAGE_COLUMNS = ("conversation_id", "seq", "author", "operator", "display_name", "body", "at",
                   "client_message_id")
NOTE_COLUMNS = ("conversation_id", "note_id", "operator", "body", "at")

_ACK, _OFFLINE, _FALLBACK = 1, 2, 4


def conversation_row(conversation: Conversation) -> dict[str, Any]:
    c = conversation
    state = {
        "labels": list(c.labels),
        "read_marks": [list(mark) for mark in c.read_marks],
        "recent_visitor_seqs": list(c.recent_visitor_seqs),
        "recent_client_ids": [list(pair) for pair in c.recent_client_ids],
        "notes": [[n.note_id, n.operator, n.body, n.at] for n in c.notes],
    }
    if c.with_bot:
        state["bot"] = True
    if c.bot_due is not None:
        state["bot_due"] = c.bot_due
    if c.bot_handoff is not None:
        state["bot_handoff"] = c.bot_handoff
    if c.episodes:
        state["episodes"] = [list(episode) for episode in c.episodes]
    if c.delivered_confirmed:
        state["delivered_confirmed"] = True
    notices = (_ACK if c.ack_sent else 0) | (_OFFLINE if c.offline_sent else 0) | \
        (_FALLBACK if c.fallback_sent else 0)
    return {
        "conversation_id": c.conversation_id, "route": c.route, "visitor": c.visitor,
        "status": str(c.status), "assignee": c.assignee, "version": c.version,
        "last_seq": c.last_seq, "created_at": c.created_at, "opened_at": c.opened_at,
        "last_activity_at": c.last_activity_at, "first_response_at": c.first_response_at,
        "resolved_at": c.resolved_at, "waiting_since": c.waiting_since,
        "snoozed_until": c.snoozed_until, "assigned_at": c.assigned_at,
        "unanswered": c.unanswered, "delivered_upto": c.delivered_upto,
        "visitor_read_upto": c.visitor_read_upto, "unread_floor": c.unread_floor,
        "note_count": c.note_count, "notices": notices,
        "state": json.dumps(state, separators=(",", ":"), ensure_ascii=False),
        "contact": c.contact, "preview": c.preview, "profile": profile_json(c.profile),
    }


def conversation_from_row(row: Mapping[str, Any]) -> Conversation:
    state = json.loads(row["state"])
    key = row["conversation_id"]
    notices = int(row["notices"])
    return Conversation(
        conversation_id=key, route=row["route"], visitor=row["visitor"],
        status=Status(row["status"]), assignee=row["assignee"], version=int(row["version"]),
        last_seq=int(row["last_seq"]), created_at=row["created_at"],
        opened_at=row["opened_at"], last_activity_at=row["last_activity_at"],
        first_response_at=row["first_response_at"], resolved_at=row["resolved_at"],
        waiting_since=row["waiting_since"], snoozed_until=row["snoozed_until"],
        assigned_at=row["assigned_at"], unanswered=int(row["unanswered"]),
        delivered_upto=int(row["delivered_upto"]),
        delivered_confirmed=bool(state.get("delivered_confirmed", False)),
        visitor_read_upto=int(row["visitor_read_upto"]),
        unread_floor=int(row["unread_floor"]), note_count=int(row["note_count"]),
        ack_sent=bool(notices & _ACK), offline_sent=bool(notices & _OFFLINE),
        fallback_sent=bool(notices & _FALLBACK), contact=row["contact"], preview=row["preview"],
        labels=tuple(state["labels"]),
        read_marks=tuple((name, int(seq)) for name, seq in state["read_marks"]),
        recent_visitor_seqs=tuple(int(seq) for seq in state["recent_visitor_seqs"]),
        recent_client_ids=tuple((cid, int(seq)) for cid, seq in state["recent_client_ids"]),
        notes=tuple(Note(key, int(n), operator, body, at)
                    for n, operator, body, at in state["notes"]),
        with_bot=bool(state.get("bot", False)),
        bot_due=state.get("bot_due"), bot_handoff=state.get("bot_handoff"),
        episodes=tuple((int(after), float(opened), None if resolved is None else float(resolved))
                       for after, opened, resolved in state.get("episodes", ())),
        profile=profile_from_json(row.get("profile")),
    )


def message_row(message: Message) -> dict[str, Any]:
    m = message
    return {"conversation_id": m.conversation_id, "seq": m.seq, "author": str(m.author),
            "operator": m.operator, "display_name": m.display_name, "body": m.body, "at": m.at,
            "client_message_id": m.client_message_id}


def message_from_row(row: Mapping[str, Any]) -> Message:
    return Message(row["conversation_id"], int(row["seq"]), Author(row["author"]), row["body"],
                   row["at"], operator=row["operator"], display_name=row["display_name"],
                   client_message_id=row["client_message_id"])


def note_row(note: Note) -> dict[str, Any]:
    return {"conversation_id": note.conversation_id, "note_id": note.note_id,
            "operator": note.operator, "body": note.body, "at": note.at}


def note_from_row(row: Mapping[str, Any]) -> Note:
    return Note(row["conversation_id"], int(row["note_id"]), row["operator"], row["body"],
                row["at"])
