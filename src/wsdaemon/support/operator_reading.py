"""
Reading conversations for operator protocol v2: the list (most waiting
first, filtered, paged), a thread (messages and notes interleaved by time,
paged back), a whole text in chunks, a search over every conversation
(L{wsdaemon.support.search}); every answer bounded (L{ChannelLimits},
L{PAGE_BYTES}). And what every request shares: naming a conversation (id,
alias or unique prefix), checking fields, L{RequestError}.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wsdaemon.conversations.model import (
    Conversation,
    Message,
    Note,
    Status,
    conversation_id_for,
)
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.hub import OperatorHub
from wsdaemon.support.ports import IConversationSearch
from wsdaemon.support.search import SearchError, SearchQuery, SearchResult, live_search
from wsdaemon.support.summaries import PAGE_BYTES, message_entry, note_entry, page, sort_key

__all__ = ["MAX_PREVIOUS", "PAGE_BYTES", "TEXT_CHUNK", "ChannelLimits", "ConversationReader",
           "RequestError", "episodes_entry", "optional"]

#: Characters of a message's or note's text per C{text} answer (at most 6
#: JSON bytes each: well under a page).
TEXT_CHUNK = 32 * 1024
#: A visitor's conversations on other routes an C{open} answer lists, at most
#: (one per route: the routes looked at, in name order, are bounded too).
MAX_PREVIOUS = 10


@dataclass(frozen=True)
class ChannelLimits:
    """
    What one answer may hold.

    @ivar page_size: entries of a list or a thread page when not asked.
    @ivar max_limit: the most entries one request may ask for.
    @ivar text_chars: characters of one message or note shown (the rest
        is cut, with its length).
    @ivar max_text: characters an operator's reply or note may have.
    """

    page_size: int = 50
    max_limit: int = 500
    text_chars: int = 32 * 1024
    max_text: int = 16 * 1024


class RequestError(Exception):
    """A request the channel does not take; its text is the answer's C{error}."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


def optional(request: dict[str, Any], key: str, kind: type | tuple[type, ...],
              what: str) -> Any:
    value = request.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise RequestError(f"{key!r} must be {what} (or absent)")
    return value


class ConversationReader:
    """
    @param driver: lists are read from C{driver.inbox}, threads from
        C{driver.store}.
    @param hub: names, summaries, the list's order.
    """

    def __init__(self, driver: ConversationDriver, hub: OperatorHub,
                 limits: ChannelLimits) -> None:
        self.driver = driver
        self.hub = hub
        self.limits = limits

    def limit(self, request: dict[str, Any]) -> int:
        top = self.limits.max_limit
        limit = optional(request, "limit", int, f"a number of entries from 1 to {top}")
        if limit is None:
            return self.limits.page_size
        if not 1 <= limit <= top:
            raise RequestError(f"'limit' must be from 1 to {top}, got {limit}")
        return int(limit)

    def conversation_id(self, request: dict[str, Any]) -> str:
        reference = request.get("conversation")
        if not isinstance(reference, str) or not reference.strip():
            raise RequestError("'conversation' must name one: its id, its alias or a unique "
                               "prefix of either")
        return self.hub.resolve(reference[:100])

    async def conversation(self, conversation_id: str) -> Conversation:
        found = self.driver.inbox.conversation(conversation_id)
        if found is None:
            found = await self.driver.store.load(conversation_id)
        if found is None:
            raise RequestError(f"no conversation {conversation_id!r}")
        return found

    # -- lists -----------------------------------------------------------------

    def listing(self, operator: str, request: dict[str, Any]) -> dict[str, Any]:
        """A page of conversations, most waiting first (also the greeting's)."""
        view = optional(request, "view", str, "'mine', 'unassigned' or 'all'") or "all"
        status = optional(request, "status", str, "'open' or 'snoozed'")
        label = optional(request, "label", str, "a label")
        search = optional(request, "search", str, "a text to look for")
        after = request.get("after")
        if view not in ("mine", "unassigned", "all"):
            raise RequestError("'view' must be 'mine', 'unassigned' or 'all' (or absent)")
        if status not in (None, "open", "snoozed"):
            raise RequestError("'status' must be 'open' or 'snoozed' (or absent): resolved "
                               "conversations are found by name")
        start = self._after(after)
        limit = self.limit(request)
        inbox = self.driver.inbox
        needle = search.casefold()[:200] if search else None
        wanted_label = label.strip().lower() if label else None
        if view == "all" and status is None and wanted_label is None and needle is None:
            # The greeting's list: in order already, a few heap steps.
            self.hub.sync()
            first = self.hub.order.first(limit + 1, start)
            return self._listed(operator, first, limit, inbox.open_count())
        pool: Iterable[Conversation]
        if view == "mine" and status == "open":
            pool = inbox.open_assigned_to(operator, inbox.load_of(operator))
        elif view == "mine":
            pool = (c for c in inbox.conversations() if c.assignee == operator)
        elif view == "unassigned":
            pool = inbox.waiting(len(inbox))
        else:
            pool = inbox.conversations()

        def wanted(c: Conversation) -> bool:
            if c.status is Status.RESOLVED or (status is not None and c.status != status):
                return False
            if wanted_label is not None and wanted_label not in c.labels:
                return False
            if needle is None:
                return True
            alias = self.hub.alias(c)
            profile = c.profile
            known = (profile.name or "", profile.email or "") if profile is not None else ()
            return any(needle in field.casefold() for field in (
                c.preview, c.visitor, c.conversation_id, alias, c.contact or "", *c.labels,
                *known))

        matching = [c for c in pool if wanted(c)]
        total = len(matching)
        if start is not None:
            matching = [c for c in matching if sort_key(c) > start]
        first = heapq.nsmallest(limit + 1, matching, key=sort_key)
        return self._listed(operator, first, limit, total)

    def _listed(self, operator: str, first: list[Conversation], limit: int,
                total: int) -> dict[str, Any]:
        entries, cut = page(first[:limit], lambda c: self.hub.summary(c, operator), limit)
        more = cut or len(first) > limit
        last = first[len(entries) - 1] if entries else None
        return {"conversations": entries, "total": total,
                "more": more, "next": list(sort_key(last)) if more and last else None}

    @staticmethod
    def _after(value: Any) -> tuple[int, float, str] | None:
        if value is None:
            return None
        if (isinstance(value, list) and len(value) == 3 and value[0] in (0, 1)
                and isinstance(value[1], int | float) and not isinstance(value[1], bool)
                and math.isfinite(value[1]) and isinstance(value[2], str)):
            return (int(value[0]), float(value[1]), value[2])
        raise RequestError("'after' must be the 'next' of the previous page")

    async def search(self, operator: str, request: dict[str, Any]) -> dict[str, Any]:
        """
        Conversations, resolved ones too, whose messages (notes if asked) or
        visitor details hold every word: most recent activity first, each
        with its newest hits (seq or note, and a plain-text snippet).
        """
        try:
            query = SearchQuery.from_request(request)
        except SearchError as e:
            raise RequestError(str(e)) from None
        store = self.driver.store
        inbox = self.driver.inbox
        result: SearchResult
        if IConversationSearch.providedBy(store):
            result = await store.search(query)
        else:
            result = live_search(inbox.conversations(), query, self.hub.alias)

        def describe(found: Any) -> dict[str, Any]:
            key = found.conversation.conversation_id
            # The summary also makes its alias one the operator can name it by.
            shown = self.hub.summary(inbox.conversation(key) or found.conversation, operator)
            return {"conversation": shown, "hits": [hit.to_json() for hit in found.hits]}

        entries, cut = page(result.found, describe, query.limit)
        more = cut or result.more
        last = result.found[len(entries) - 1].conversation if entries else None
        return {"results": entries, "total": result.total, "more": more,
                "partial": result.partial, "scope": result.scope,
                "next": [last.last_activity_at, last.conversation_id] if more and last else None}

    async def previous(self, conversation: Conversation, operator: str) -> list[dict[str, Any]]:
        """
        The visitor's conversations on the other routes served here (a
        visitor has one per route, its id made from both: each is one read,
        no index), most recent activity first, at most L{MAX_PREVIOUS}.
        """
        routes = sorted(self.driver.routes - {conversation.route})[:MAX_PREVIOUS]
        found: list[Conversation] = []
        for route in routes:
            key = conversation_id_for(route, conversation.visitor)
            other = self.driver.inbox.conversation(key) or await self.driver.store.load(key)
            if other is not None:
                found.append(other)
        found.sort(key=lambda c: (-c.last_activity_at, c.conversation_id))
        return [self.hub.summary(other, operator) for other in found]

    async def thread(self, conversation_id: str, before: int | None, before_note: int | None,
                      limit: int) -> dict[str, Any]:
        store = self.driver.store
        messages: list[Message] = await store.history(conversation_id, before, limit + 1)
        notes: list[Note] = await store.notes(conversation_id, before_note, limit + 1)
        merged = sorted([*((m.at, 0, m.seq, m) for m in messages),
                         *((n.at, 1, n.note_id, n) for n in notes)],
                        key=lambda entry: entry[:3])
        newest = merged[-limit:]
        more = len(merged) > limit
        chars = self.limits.text_chars

        def describe(entry: tuple[float, int, int, Message | Note]) -> dict[str, Any]:
            item = entry[3]
            return message_entry(item, chars) if isinstance(item, Message) \
                else note_entry(item, chars)

        # Newest first, so that a page cut for size keeps the newest entries.
        shown, cut = page(reversed(newest), describe, limit)
        shown.reverse()
        seqs = [e["seq"] for e in shown if e["kind"] == "message"]
        note_ids = [e["note_id"] for e in shown if e["kind"] == "note"]
        return {"entries": shown, "more": more or cut,
                "before": min(seqs) if seqs else before,
                "before_note": min(note_ids) if note_ids else before_note}

    async def text(self, request: dict[str, Any]) -> dict[str, Any]:
        """A message's or note's whole text, a chunk at a time (entries show a cut one)."""
        conversation_id = self.conversation_id(request)
        seq = optional(request, "seq", int, "a message's seq")
        note = optional(request, "note", int, "a note's note_id")
        offset = optional(request, "offset", int, "a character offset") or 0
        if (seq is None) == (note is None) or offset < 0:
            raise RequestError("give 'seq' (a message) or 'note' (a note), and an 'offset' of "
                               "0 or more")
        store = self.driver.store
        body: str | None = None
        if seq is not None:
            found = await store.history(conversation_id, seq + 1, 1) if seq > 0 else []
            body = found[0].body if found and found[0].seq == seq else None
        else:
            notes = await store.notes(conversation_id, note + 1, 1) if note > 0 else []
            body = notes[0].body if notes and notes[0].note_id == note else None
        if body is None:
            what = f"message {seq}" if seq is not None else f"note {note}"
            raise RequestError(f"conversation {conversation_id} has no {what}")
        part = body[offset:offset + TEXT_CHUNK]
        return {"conversation": conversation_id, "seq": seq, "note": note, "text": part,
                "offset": offset, "length": len(body), "more": offset + len(part) < len(body)}


def episodes_entry(conversation: Conversation) -> list[dict[str, Any]]:
    """
    The conversation's episodes, oldest first, the current one last: where
    each began (C{from_seq}: its first message), when it opened and was
    resolved (None: not yet).
    """
    ended = [{"from_seq": after + 1, "opened_at": opened, "resolved_at": resolved,
              "current": False} for after, opened, resolved in conversation.episodes]
    return [*ended, {"from_seq": conversation.unread_floor + 1,
                     "opened_at": conversation.opened_at,
                     "resolved_at": conversation.resolved_at, "current": True}]
