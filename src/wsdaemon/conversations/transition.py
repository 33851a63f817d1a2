"""
A decision in the making (L{Draft}) and made (L{Transition}).

A handler reads conversations through the draft (its own changes first,
then the view), puts changed records back and emits effects; the draft keeps
the team's loads right on every put. L{Draft.finish} then orders the
effects: the one L{Commit} of everything durable first, then the timers the
changes call for, then deliveries, notifications and measures. Nothing is
applied anywhere: the caller commits the store writes, and only then moves
its state to the transition's records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from wsdaemon.conversations.effects import (
    CancelTimer,
    Commit,
    DeliverMessage,
    Effect,
    NotifyOperators,
    SetTimer,
)
from wsdaemon.conversations.errors import InvalidMove
from wsdaemon.conversations.events import Timer, TimerKind
from wsdaemon.conversations.model import (
    BOT_GRACE,
    Author,
    Conversation,
    Message,
    Note,
    Status,
    evolve,
)
from wsdaemon.conversations.routing import OperatorState, Team
from wsdaemon.conversations.settings import ConversationSettings, Routing

__all__ = ["Draft", "InboxView", "Transition", "due_times"]


class InboxView(Protocol):
    """
    What the core reads of the conversations as they stand (committed).
    The caller makes sure the conversation an event names is loaded, when
    it exists at all (resolved ones may have to be read from the store
    first).
    """

    @property
    def team(self) -> Team: ...

    def conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None when there is none."""

    def open_count(self, route: str | None = None) -> int:
        """Open or snoozed conversations (on C{route}, or in all)."""

    def waiting(self, limit: int) -> Sequence[Conversation]:
        """Up to C{limit} open unassigned conversations, longest queued first."""

    def open_assigned_to(self, operator: str, limit: int) -> Sequence[Conversation]:
        """Up to C{limit} of C{operator}'s open conversations."""

    def load_of(self, operator: str) -> int:
        """How many open conversations C{operator} has."""


@dataclass(frozen=True)
class Transition:
    """
    @ivar conversations: every conversation that changed, as it is after.
    @ivar team: the team after.
    @ivar effects: what to do, in order; a L{Commit} first if anything
        durable changed.
    """

    conversations: tuple[Conversation, ...]
    team: Team
    effects: tuple[Effect, ...]

    @property
    def commit(self) -> Commit | None:
        first = self.effects[0] if self.effects else None
        return first if isinstance(first, Commit) else None


def due_times(conversation: Conversation | None, settings: ConversationSettings
              ) -> dict[TimerKind, float | None]:
    """
    When each of a conversation's own timers is due, from its state alone
    (None: not set). The core sets and cancels timers by comparing these
    before and after a change, and a timer that fires checks them again.
    """
    due: dict[TimerKind, float | None] = {
        TimerKind.WAKE: None, TimerKind.FALLBACK: None, TimerKind.SILENCE: None,
        TimerKind.BOT: None}
    if conversation is None:
        return due
    if conversation.status is Status.OPEN and conversation.with_bot and \
            conversation.bot_due is not None:
        due[TimerKind.BOT] = conversation.bot_due + BOT_GRACE
    if conversation.status is Status.SNOOZED:
        due[TimerKind.WAKE] = conversation.snoozed_until
    waiting = conversation.waiting_since
    if conversation.status is Status.OPEN and waiting is not None and \
            not conversation.with_bot:
        if settings.fallback_after > 0 and not conversation.fallback_sent:
            due[TimerKind.FALLBACK] = waiting + settings.fallback_after
        if (settings.routing is Routing.AUTO and settings.reassign_after > 0
                and conversation.assignee is not None and conversation.assigned_at is not None):
            due[TimerKind.SILENCE] = max(waiting, conversation.assigned_at) + \
                settings.reassign_after
    return due


class Draft:
    """
    One decision's working state over a view: what changed so far, and the
    effects to order.
    """

    def __init__(self, view: InboxView, now: float, settings: ConversationSettings) -> None:
        self.view = view
        self.now = now
        self.settings = settings
        self.bounds = settings.bounds
        self.team = view.team
        self._base: dict[str, Conversation | None] = {}
        self._current: dict[str, Conversation] = {}
        self._durable: set[str] = set()
        self._messages: list[Message] = []
        self._notes: list[Note] = []
        self._after: list[Effect] = []

    # -- reading -------------------------------------------------------------

    def get(self, conversation_id: str) -> Conversation | None:
        found = self._current.get(conversation_id)
        return found if found is not None else self.view.conversation(conversation_id)

    def require(self, conversation_id: str, action: str) -> Conversation:
        found = self.get(conversation_id)
        if found is None:
            raise InvalidMove(conversation_id, "unknown", action, "no such conversation")
        return found

    def touched(self, conversation_id: str) -> bool:
        return conversation_id in self._current

    @property
    def touched_count(self) -> int:
        return len(self._current)

    # -- changing ------------------------------------------------------------

    def put(self, conversation: Conversation, *, durable: bool = True) -> None:
        """The conversation is now this (committed with the rest unless ephemeral)."""
        key = conversation.conversation_id
        before = self.get(key)
        if key not in self._base:
            self._base[key] = self.view.conversation(key)
        self.team = self.team.accounted(before, conversation)
        self._current[key] = conversation
        if durable:
            self._durable.add(key)

    def member(self, name: str, action: str) -> OperatorState:
        """The operator, joining the team (with its current load) if new."""
        found = self.team.get(name)
        if found is not None:
            return found
        if len(self.team.operators) >= self.bounds.max_operators:
            raise InvalidMove("", f"full ({self.bounds.max_operators} operators)", action,
                              f"operator {name} cannot join")
        joined = OperatorState(name, capacity=self.settings.default_capacity,
                               load=self.view.load_of(name))
        self.team = self.team.with_operator(joined)
        return joined

    def append(self, conversation: Conversation, author: Author, body: str, *,
               operator: str | None = None, display_name: str | None = None,
               client_message_id: str | None = None) -> tuple[Conversation, Message]:
        """A new message at the end of the conversation (put it back afterwards)."""
        seq = conversation.last_seq + 1
        message = Message(conversation.conversation_id, seq, author, body, self.now,
                          operator=operator, display_name=display_name,
                          client_message_id=client_message_id)
        self._messages.append(message)
        # The daemon's own notices are not what the thread is about.
        preview = conversation.preview if author is Author.SYSTEM else \
            body[:self.bounds.preview_chars]
        return evolve(conversation, last_seq=seq, last_activity_at=self.now,
                       preview=preview), message

    def add_note(self, note: Note) -> None:
        self._notes.append(note)

    def emit(self, effect: Effect) -> None:
        self._after.append(effect)

    def deliver(self, conversation: Conversation, message: Message) -> None:
        self.emit(DeliverMessage(conversation.route, conversation.visitor, message))

    def notify(self, kind: str, conversation: Conversation, *, message: Message | None = None,
               note: Note | None = None, operator: str | None = None,
               actor: str | None = None) -> None:
        self.emit(NotifyOperators(kind, conversation, message=message, note=note,
                                  operator=operator, actor=actor))

    # -- finishing -----------------------------------------------------------

    def finish(self) -> Transition:
        final: dict[str, Conversation] = {}
        for key, conversation in self._current.items():
            if key in self._durable:
                base = self._base[key]
                conversation = evolve(conversation, version=(0 if base is None
                                                              else base.version) + 1)
            final[key] = conversation
        effects: list[Effect] = []
        if self._durable or self._messages or self._notes:
            effects.append(Commit(
                tuple(final[key] for key in final if key in self._durable),
                tuple(self._messages), tuple(self._notes)))
        for key, conversation in final.items():
            effects.extend(self._timers(self._base[key], conversation))
        for effect in self._after:
            if isinstance(effect, NotifyOperators):
                effect = evolve(effect, conversation=final.get(
                    effect.conversation.conversation_id, effect.conversation))
            effects.append(effect)
        for key, conversation in final.items():
            base = self._base[key]
            if conversation.assignee is not None and (
                    base is None or base.assignee != conversation.assignee):
                effects.append(NotifyOperators("assigned", conversation,
                                               operator=conversation.assignee))
        return Transition(tuple(final.values()), self.team, tuple(effects))

    def _timers(self, before: Conversation | None, after: Conversation) -> list[Effect]:
        was = due_times(before, self.settings)
        now = due_times(after, self.settings)
        changes: list[Effect] = []
        for kind, at in now.items():
            if at == was[kind]:
                continue
            timer = Timer(kind, after.conversation_id)
            changes.append(CancelTimer(timer) if at is None else SetTimer(timer, at))
        return changes
