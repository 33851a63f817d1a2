"""
What operators are shown of conversations (operator protocol v2), as JSON
values, bounded: a conversation's summary (each operator's copy with its
own unread count), thread entries (messages and notes), the team, and
pages that stop at L{PAGE_BYTES} whatever they hold.

The texts here came from the network: they are sent as JSON strings
(escaped by the encoder) and a console escapes them again where it shows
them (L{wsdaemon.escaping.visible}).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from wsdaemon.conversations.model import Conversation, Message, Note, Status
from wsdaemon.conversations.routing import Team

__all__ = ["DEFAULT_TEXT_CHARS", "PAGE_BYTES", "encode", "message_entry", "note_entry",
           "page", "profile_entry", "sort_key", "summary", "team_entries", "text_field"]

#: A page (a list, a thread) stops growing past this many bytes of JSON.
PAGE_BYTES = 512 * 1024
#: Characters of one message or note sent to an operator; a longer one is
#: cut, saying so (C{length}, C{truncated}).
DEFAULT_TEXT_CHARS = 32 * 1024


def encode(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


def text_field(text: str, chars: int) -> dict[str, Any]:
    """C{text} cut to C{chars}, with its whole C{length} and whether it was C{truncated}."""
    shown = text[:chars] if chars and len(text) > chars else text
    return {"text": shown, "length": len(text), "truncated": len(shown) < len(text)}


def summary(conversation: Conversation, operator: str, now: float, *, alias: str,
            viewing: Iterable[str] = (), names: Mapping[str, str] | None = None,
            presence: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """
    A conversation as C{operator} sees it in a list.

    @param viewing: the operators who have it open now.
    @param names: operators' display names, by login name.
    @param presence: C{visitor_online} and C{visitor_last_seen}
        (L{wsdaemon.support.visitor_presence}); both None when unknown.
    """
    assignee = conversation.assignee
    profile = conversation.profile
    return {
        "id": conversation.conversation_id,
        "alias": alias,
        "route": conversation.route,
        "visitor": conversation.visitor,
        # Who the visitor proved it is (a token, an identify); the contact
        # it left when it gave no email.
        "name": profile.name if profile is not None else None,
        "email": profile.email if profile is not None and profile.email is not None
        else conversation.contact,
        "identified": str(profile.source) if profile is not None else None,
        "status": str(conversation.status),
        # A support route's bot answers this episode (not queued for operators).
        "with_bot": conversation.with_bot,
        "assignee": assignee,
        "assignee_name": (names or {}).get(assignee, assignee) if assignee else None,
        "labels": list(conversation.labels),
        "unread": conversation.unread_for(operator),
        "waiting_since": conversation.waiting_since,
        "waiting": round(conversation.waiting_time(now), 3),
        "preview": conversation.preview,
        "last_seq": conversation.last_seq,
        # What reached the visitor and what it read (the thread's ticks).
        "delivered_upto": conversation.delivered_upto,
        "visitor_read_upto": conversation.visitor_read_upto,
        "opened_at": conversation.opened_at,
        "last_activity_at": conversation.last_activity_at,
        "first_response_at": conversation.first_response_at,
        "snoozed_until": conversation.snoozed_until
        if conversation.status is Status.SNOOZED else None,
        "contact": conversation.contact,
        "typing": list(conversation.operators_typing())
        + (["visitor"] if conversation.visitor_typing_until is not None else []),
        "viewing": sorted(viewing),
        "visitor_online": (presence or {}).get("visitor_online"),
        "visitor_last_seen": (presence or {}).get("visitor_last_seen"),
    }


def profile_entry(conversation: Conversation) -> dict[str, Any] | None:
    """
    Who the visitor is, whole (an open conversation's answer; lists carry
    only name and email): bounded by the profile's own bounds (a few KiB).
    """
    profile = conversation.profile
    if profile is None:
        return None
    return {"name": profile.name, "email": profile.email,
            "attributes": dict(profile.attributes), "source": str(profile.source)}


def message_entry(message: Message, chars: int = DEFAULT_TEXT_CHARS) -> dict[str, Any]:
    """One message of the thread, for operators."""
    return {"kind": "message", "conversation": message.conversation_id, "seq": message.seq,
            "author": str(message.author), "operator": message.operator,
            "name": message.display_name, "at": message.at,
            **text_field(message.body, chars)}


def note_entry(note: Note, chars: int = DEFAULT_TEXT_CHARS) -> dict[str, Any]:
    """One private note, for operators (never sent to a visitor)."""
    return {"kind": "note", "conversation": note.conversation_id, "note_id": note.note_id,
            "operator": note.operator, "at": note.at, **text_field(note.body, chars)}


def team_entries(team: Team, names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The team (bounded by C{Bounds.max_operators}), in name order."""
    return [{"name": o.name, "display_name": names.get(o.name, o.name),
             "availability": str(o.availability), "capacity": o.capacity, "load": o.load}
            for o in team.operators]


def sort_key(conversation: Conversation) -> tuple[int, float, str]:
    """
    Most waiting first: those waiting for an answer by how long, then the
    others by most recent activity; the id breaks ties (and pages resume
    after a key).
    """
    if conversation.waiting_since is not None:
        return (0, conversation.waiting_since, conversation.conversation_id)
    return (1, -conversation.last_activity_at, conversation.conversation_id)


def page(entries: Iterable[Any], describe: Callable[[Any], dict[str, Any]],
         limit: int) -> tuple[list[dict[str, Any]], bool]:
    """
    @return: up to C{limit} described entries, stopping early once they
        pass L{PAGE_BYTES}, and whether more entries follow.
    """
    shown: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        if len(shown) >= limit or size >= PAGE_BYTES:
            return shown, True
        described = describe(entry)
        size += len(encode(described))
        shown.append(described)
    return shown, False
