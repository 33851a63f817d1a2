"""
The requests of operator protocol v2 (docs/conversations.md, section 8),
apart from the WebSocket: what each asks, checked; the event it submits to
the conversation driver; the answer, bounded.

Every request that names a conversation takes its id, its alias or a unique
prefix of either (L{OperatorHub.resolve}); C{reply} and every other change
without a conversation is refused: nothing answers "the oldest" any more.
A move the conversation's state does not allow (L{InvalidMove}), too many
events waiting (L{LaneFull}), a driver not running and a store that failed
are answered as errors saying so; nothing changed then.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred

from wsdaemon.conversations.aliases import AmbiguousReference, UnknownReference
from wsdaemon.conversations.errors import InvalidMove
from wsdaemon.conversations.events import (
    AddNote,
    Assign,
    Event,
    OperatorAvailability,
    OperatorCapacity,
    OperatorRead,
    OperatorReply,
    OperatorTyping,
    Reopen,
    Resolve,
    SetLabels,
    Snooze,
    Transfer,
)
from wsdaemon.conversations.model import Availability, Conversation, Message, Note, Status
from wsdaemon.conversations.transition import Transition
from wsdaemon.support.canned import CannedReplies
from wsdaemon.support.driver import ConversationDriver, DriverStopped
from wsdaemon.support.hub import OperatorHub, OperatorLink
from wsdaemon.support.lanes import LaneFull
from wsdaemon.support.summaries import message_entry, note_entry, page, sort_key, team_entries

__all__ = ["ChannelLimits", "OperatorRequests", "RequestError", "REQUESTS"]

#: The request types, for the error that names them.
REQUESTS = ("conversations", "open", "close", "history", "reply", "note", "assign", "transfer",
            "resolve", "reopen", "snooze", "labels", "read", "typing", "availability",
            "capacity", "team", "canned")


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


def _optional(request: dict[str, Any], key: str, kind: type | tuple[type, ...],
              what: str) -> Any:
    value = request.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise RequestError(f"{key!r} must be {what} (or absent)")
    return value


def _text(request: dict[str, Any], key: str, limit: int) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{key!r} must be a non-empty string")
    if len(value) > limit:
        raise RequestError(f"{key!r} is {len(value)} characters long; at most {limit}")
    return value


def _names(request: dict[str, Any], key: str) -> tuple[str, ...]:
    value = request.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) \
            or len(value) > 64:
        raise RequestError(f"{key!r} must be a list of at most 64 labels")
    return tuple(value)


class OperatorRequests:
    """
    @param driver: the conversation driver (events go to C{submit}; lists
        are read from C{driver.inbox}, threads from C{driver.store}).
    @param hub: names and summaries (L{OperatorHub}).
    @param canned: the team's canned replies.
    """

    def __init__(self, driver: ConversationDriver, hub: OperatorHub, canned: CannedReplies,
                 limits: ChannelLimits) -> None:
        self.driver = driver
        self.hub = hub
        self.canned = canned
        self.limits = limits

    def handle(self, link: OperatorLink, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """
        @return: a Deferred firing with the answer's fields, or failing with
            L{RequestError} (the answer's error) or anything unexpected.
        """
        kind = request.get("type")
        handler = getattr(self, f"_do_{kind}", None) if kind in REQUESTS else None
        if handler is None:
            shown = repr(kind)[:40]
            raise RequestError(f"unknown type {shown}; expected one of: " + ", ".join(REQUESTS))
        d: Deferred[dict[str, Any]] = maybeDeferred(handler, link, request)
        return d.addErrback(self._explain)

    @staticmethod
    def _explain(failure: Any) -> Any:
        if failure.check(InvalidMove, LaneFull):
            raise RequestError(str(failure.value))
        if failure.check(DriverStopped):
            raise RequestError("conversations are not running (the daemon is starting or "
                               "stopping): try again")
        if failure.check(AmbiguousReference):
            found = failure.value
            raise RequestError(str(found), candidates=[
                {"id": key, "alias": alias} for key, alias in found.candidates], more=found.more)
        if failure.check(UnknownReference):
            raise RequestError(str(failure.value))
        return failure

    def _limit(self, request: dict[str, Any]) -> int:
        top = self.limits.max_limit
        limit = _optional(request, "limit", int, f"a number of entries from 1 to {top}")
        if limit is None:
            return self.limits.page_size
        if not 1 <= limit <= top:
            raise RequestError(f"'limit' must be from 1 to {top}, got {limit}")
        return int(limit)

    def _conversation_id(self, request: dict[str, Any]) -> str:
        reference = request.get("conversation")
        if not isinstance(reference, str) or not reference.strip():
            raise RequestError("'conversation' must name one: its id, its alias or a unique "
                               "prefix of either")
        return self.hub.resolve(reference[:100])

    async def _conversation(self, conversation_id: str) -> Conversation:
        found = self.driver.inbox.conversation(conversation_id)
        if found is None:
            found = await self.driver.store.load(conversation_id)
        if found is None:
            raise RequestError(f"no conversation {conversation_id!r}")
        return found

    # -- lists -----------------------------------------------------------------

    def listing(self, operator: str, request: dict[str, Any]) -> dict[str, Any]:
        """A page of conversations, most waiting first (also the greeting's)."""
        view = _optional(request, "view", str, "'mine', 'unassigned' or 'all'") or "all"
        status = _optional(request, "status", str, "'open' or 'snoozed'")
        label = _optional(request, "label", str, "a label")
        search = _optional(request, "search", str, "a text to look for")
        after = request.get("after")
        if view not in ("mine", "unassigned", "all"):
            raise RequestError("'view' must be 'mine', 'unassigned' or 'all' (or absent)")
        if status not in (None, "open", "snoozed"):
            raise RequestError("'status' must be 'open' or 'snoozed' (or absent): resolved "
                               "conversations are found by name")
        start = self._after(after)
        limit = self._limit(request)
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
            return any(needle in field.casefold() for field in (
                c.preview, c.visitor, c.conversation_id, alias, c.contact or "", *c.labels))

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

    def _do_conversations(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        return self.listing(link.operator, request)

    def _do_team(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        return {"team": team_entries(self.driver.inbox.team, self.hub.display_names)}

    def _do_canned(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        after = _optional(request, "after", str, "the 'next' of the previous page")
        replies = [r for r in self.canned.replies if after is None or r.shortcut > after]
        entries, more = page(replies, lambda r: r.to_json(), self._limit(request))
        return {"canned": entries, "total": len(self.canned), "more": more,
                "next": entries[-1]["shortcut"] if more and entries else None}

    # -- threads ---------------------------------------------------------------

    async def _thread(self, conversation_id: str, before: int | None, before_note: int | None,
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

    async def _do_open(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        conversation_id = self._conversation_id(request)
        limit = self._limit(request)
        conversation = await self._conversation(conversation_id)
        thread = await self._thread(conversation_id, None, None, limit)
        self.hub.view(link, conversation_id)
        return {"conversation": self.hub.summary(conversation, link.operator), **thread}

    def _do_close(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        self.hub.view(link, None)
        return {}

    async def _do_history(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        conversation_id = self._conversation_id(request)
        before = _optional(request, "before", int, "the 'before' of the previous page")
        before_note = _optional(request, "before_note", int,
                                "the 'before_note' of the previous page")
        limit = self._limit(request)
        conversation = await self._conversation(conversation_id)
        return {"conversation": self.hub.summary(conversation, link.operator),
                **await self._thread(conversation_id, before, before_note, limit)}

    # -- changes ---------------------------------------------------------------

    async def _submit(self, link: OperatorLink, event: Event,
                      conversation_id: str) -> tuple[Transition, dict[str, Any]]:
        transition = await self.driver.submit(event)
        for conversation in transition.conversations:
            if conversation.conversation_id == conversation_id:
                return transition, self.hub.summary(conversation, link.operator)
        return transition, self.hub.summary(await self._conversation(conversation_id),
                                            link.operator)

    async def _change(self, link: OperatorLink, request: dict[str, Any],
                      make: Callable[[str], Event]) -> dict[str, Any]:
        conversation_id = self._conversation_id(request)
        _, shown = await self._submit(link, make(conversation_id), conversation_id)
        return {"conversation": shown}

    async def _do_reply(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("conversation") is None:
            raise RequestError("'reply' needs a 'conversation' (its id, alias or a unique "
                               "prefix): nothing answers the oldest any more")
        text = _text(request, "text", self.limits.max_text)
        conversation_id = self._conversation_id(request)
        event = OperatorReply(conversation_id, link.operator, text,
                              self.hub.display_name(link.operator))
        transition, shown = await self._submit(link, event, conversation_id)
        stored = [m for m in (transition.commit.messages if transition.commit else ())
                  if m.operator == link.operator and m.body == text]
        return {"conversation": shown,
                "message": message_entry(stored[-1], self.limits.text_chars) if stored
                else None}

    async def _do_note(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        text = _text(request, "text", self.limits.max_text)
        conversation_id = self._conversation_id(request)
        transition, shown = await self._submit(
            link, AddNote(conversation_id, link.operator, text), conversation_id)
        notes = transition.commit.notes if transition.commit else ()
        return {"conversation": shown,
                "note": note_entry(notes[-1], self.limits.text_chars) if notes else None}

    def _do_assign(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        if "operator" not in request:
            raise RequestError("'assign' needs 'operator': a name, or null to unassign")
        to = _optional(request, "operator", str, "an operator's name, or null to unassign")
        return self._change(link, request, lambda c: Assign(c, to, link.operator))

    def _do_transfer(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        to = _text(request, "to", 100)
        return self._change(link, request, lambda c: Transfer(c, to, link.operator))

    def _do_resolve(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        return self._change(link, request, lambda c: Resolve(c, link.operator))

    def _do_reopen(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        return self._change(link, request, lambda c: Reopen(c, link.operator))

    def _do_snooze(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        until = _optional(request, "until", (int, float),
                          "a time (Unix seconds), or null for the visitor's next message")
        if until is not None and not math.isfinite(until):
            raise RequestError("'until' must be a finite time")
        return self._change(link, request, lambda c: Snooze(c, link.operator, until))

    def _do_labels(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        add, remove = _names(request, "add"), _names(request, "remove")
        return self._change(link, request, lambda c: SetLabels(c, link.operator, add, remove))

    async def _do_read(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        upto = _optional(request, "upto", int, "a message's seq")
        conversation_id = self._conversation_id(request)
        if upto is None:
            upto = (await self._conversation(conversation_id)).last_seq
        _, shown = await self._submit(link, OperatorRead(conversation_id, link.operator, upto),
                                      conversation_id)
        return {"conversation": shown}

    def _do_typing(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        on = request.get("on")
        if not isinstance(on, bool):
            raise RequestError("'on' must be true or false")
        name = self.hub.display_name(link.operator)
        return self._change(link, request,
                            lambda c: OperatorTyping(c, link.operator, on, name))

    async def _team(self, event: Event) -> dict[str, Any]:
        await self.driver.submit(event)
        return {"team": team_entries(self.driver.inbox.team, self.hub.display_names)}

    def _do_availability(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        value = request.get("availability")
        if not isinstance(value, str):
            value = None
        try:
            availability = Availability(str(value))
        except ValueError:
            raise RequestError("'availability' must be 'online', 'away' or 'offline'") from None
        return self._team(OperatorAvailability(link.operator, availability))

    def _do_capacity(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        n = request.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 10_000:
            raise RequestError("'n' must be a number of conversations from 0 (no cap) "
                               "to 10000")
        return self._team(OperatorCapacity(link.operator, n))
