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

import math
from collections.abc import Callable
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
from wsdaemon.conversations.model import Availability
from wsdaemon.conversations.transition import Transition
from wsdaemon.support.canned import CannedReplies
from wsdaemon.support.driver import ConversationDriver, DriverStopped
from wsdaemon.support.hub import OperatorHub, OperatorLink
from wsdaemon.support.lanes import LaneFull
from wsdaemon.support.operator_reading import (
    TEXT_CHUNK,
    ChannelLimits,
    ConversationReader,
    RequestError,
    episodes_entry,
    optional,
)
from wsdaemon.support.summaries import (
    message_entry,
    note_entry,
    page,
    profile_entry,
    team_entries,
)

__all__ = ["TEXT_CHUNK", "ChannelLimits", "OperatorRequests", "RequestError", "REQUESTS"]

#: The request types, for the error that names them.
REQUESTS = ("conversations", "search", "open", "close", "history", "text", "reply", "note",
            "assign", "transfer", "resolve", "reopen", "snooze", "labels", "read", "typing",
            "availability", "capacity", "team", "canned")


def _text(request: dict[str, Any], key: str, limit: int) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{key!r} must be a non-empty string")
    if len(value) > limit:
        raise RequestError(f"{key!r} is {len(value)} characters long; at most {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # JSON lets "\ud800" through; neither the store nor a visitor takes it.
        raise RequestError(f"{key!r} holds a lone surrogate: not text") from None
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
        self.reader = ConversationReader(driver, hub, limits)
        self.listing = self.reader.listing
        #: Each conversations route's max_message_size (0: no bound): a
        #: reply bigger than its visitor's route takes is refused, as a
        #: plain visitor could never be written it.
        self.route_limits: dict[str, int] = {}

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

    def _do_conversations(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        return self.reader.listing(link.operator, request)

    def _do_search(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        return self.reader.search(link.operator, request)

    def _do_text(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        return self.reader.text(request)

    def _do_team(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        return {"team": team_entries(self.driver.inbox.team, self.hub.display_names)}

    def _do_canned(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        after = optional(request, "after", str, "the 'next' of the previous page")
        replies = [r for r in self.canned.replies if after is None or r.shortcut > after]
        entries, more = page(replies, lambda r: r.to_json(), self.reader.limit(request))
        return {"canned": entries, "total": len(self.canned), "more": more,
                "next": entries[-1]["shortcut"] if more and entries else None}

    # -- threads ---------------------------------------------------------------

    async def _do_open(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        conversation_id = self.reader.conversation_id(request)
        limit = self.reader.limit(request)
        conversation = await self.reader.conversation(conversation_id)
        thread = await self.reader.thread(conversation_id, None, None, limit)
        self.hub.view(link, conversation_id)
        previous = await self.reader.previous(conversation, link.operator)
        return {"conversation": self.hub.summary(conversation, link.operator),
                "profile": profile_entry(conversation), "episodes": episodes_entry(conversation),
                "previous": previous, **thread}

    def _do_close(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        self.hub.view(link, None)
        return {}

    async def _do_history(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        conversation_id = self.reader.conversation_id(request)
        before = optional(request, "before", int, "the 'before' of the previous page")
        before_note = optional(request, "before_note", int,
                                "the 'before_note' of the previous page")
        limit = self.reader.limit(request)
        conversation = await self.reader.conversation(conversation_id)
        return {"conversation": self.hub.summary(conversation, link.operator),
                **await self.reader.thread(conversation_id, before, before_note, limit)}

    # -- changes ---------------------------------------------------------------

    async def _submit(self, link: OperatorLink, event: Event,
                      conversation_id: str) -> tuple[Transition, dict[str, Any]]:
        transition = await self.driver.submit(event)
        for conversation in transition.conversations:
            if conversation.conversation_id == conversation_id:
                return transition, self.hub.summary(conversation, link.operator)
        return transition, self.hub.summary(await self.reader.conversation(conversation_id),
                                            link.operator)

    async def _change(self, link: OperatorLink, request: dict[str, Any],
                      make: Callable[[str], Event]) -> dict[str, Any]:
        conversation_id = self.reader.conversation_id(request)
        _, shown = await self._submit(link, make(conversation_id), conversation_id)
        return {"conversation": shown}

    async def _do_reply(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("conversation") is None:
            raise RequestError("'reply' needs a 'conversation' (its id, alias or a unique "
                               "prefix): nothing answers the oldest any more")
        text = _text(request, "text", self.limits.max_text)
        conversation_id = self.reader.conversation_id(request)
        await self._fits_its_route(conversation_id, text)
        event = OperatorReply(conversation_id, link.operator, text,
                              self.hub.display_name(link.operator))
        transition, shown = await self._submit(link, event, conversation_id)
        stored = [m for m in (transition.commit.messages if transition.commit else ())
                  if m.operator == link.operator and m.body == text]
        return {"conversation": shown,
                "message": message_entry(stored[-1], self.limits.text_chars) if stored
                else None}

    async def _fits_its_route(self, conversation_id: str, text: str) -> None:
        """Refuse a reply bigger than its conversation's route takes."""
        bounded = [limit for limit in self.route_limits.values() if limit]
        if not bounded or len(text) * 4 <= min(bounded):  # 4: UTF-8's most per character
            return
        size = len(text.encode("utf-8"))
        route = (await self.reader.conversation(conversation_id)).route
        limit = self.route_limits.get(route, 0)
        if limit and size > limit:
            raise RequestError(f"the reply is {size} bytes; {route} takes at most {limit} "
                               "bytes (its max_message_size): nothing sent")

    async def _do_note(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        text = _text(request, "text", self.limits.max_text)
        conversation_id = self.reader.conversation_id(request)
        transition, shown = await self._submit(
            link, AddNote(conversation_id, link.operator, text), conversation_id)
        notes = transition.commit.notes if transition.commit else ()
        return {"conversation": shown,
                "note": note_entry(notes[-1], self.limits.text_chars) if notes else None}

    def _do_assign(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        if "operator" not in request:
            raise RequestError("'assign' needs 'operator': a name, or null to unassign")
        to = optional(request, "operator", str, "an operator's name, or null to unassign")
        return self._change(link, request, lambda c: Assign(c, to, link.operator))

    def _do_transfer(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        to = _text(request, "to", 100)
        return self._change(link, request, lambda c: Transfer(c, to, link.operator))

    def _do_resolve(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        return self._change(link, request, lambda c: Resolve(c, link.operator))

    def _do_reopen(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        return self._change(link, request, lambda c: Reopen(c, link.operator))

    def _do_snooze(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        until = optional(request, "until", (int, float),
                          "a time (Unix seconds), or null for the visitor's next message")
        if until is not None and not math.isfinite(until):
            raise RequestError("'until' must be a finite time")
        return self._change(link, request, lambda c: Snooze(c, link.operator, until))

    def _do_labels(self, link: OperatorLink, request: dict[str, Any]) -> Any:
        add, remove = _names(request, "add"), _names(request, "remove")
        return self._change(link, request, lambda c: SetLabels(c, link.operator, add, remove))

    async def _do_read(self, link: OperatorLink, request: dict[str, Any]) -> dict[str, Any]:
        upto = optional(request, "upto", int, "a message's seq")
        conversation_id = self.reader.conversation_id(request)
        if upto is None:
            upto = (await self.reader.conversation(conversation_id)).last_seq
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
