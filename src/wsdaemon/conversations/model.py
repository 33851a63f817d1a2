"""
The conversation records: what a conversation, its messages and its private
notes are, as immutable values.

A conversation is one visitor's thread on one route, for good: resolving it
ends an I{episode} (the span from opening to resolving, which first-response
and resolution times measure), and the visitor's next message opens the next
episode of the same conversation. Messages are numbered in the conversation
(C{seq} 1, 2, 3...), so a visitor resumes with "everything after 41" and
delivery and read receipts are watermarks, not flags on each message.

Only what the operators' list needs is held in memory: counters, marks, a
preview of the last message and the newest notes; every list has a bound
(L{Bounds}). Whole texts live in the store.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, TypeVar

from wsdaemon.conversations.profile import Profile

__all__ = ["BOT_GRACE", "EPISODES_KEPT", "Author", "Availability", "Bounds", "Conversation",
           "Message", "Note", "Status", "conversation_id_for", "describe_state", "evolve"]

#: Seconds past a bot's C{bot_due} before the core hands over what it owed
#: (the bot itself acts at C{bot_due}: its commits are given this long).
BOT_GRACE = 5.0


class Status(StrEnum):
    """
    Where a conversation stands. C{open} is "unassigned" or "assigned" by its
    C{assignee}; C{snoozed} waits for a time or the visitor's next message;
    C{resolved} waits for the visitor's next message, which reopens it.
    """

    OPEN = "open"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


class Author(StrEnum):
    """
    Who wrote a message: the visitor, an operator, the daemon itself (the
    acknowledgement, the fallback, the offline notice), or a bot.
    """

    VISITOR = "visitor"
    OPERATOR = "operator"
    SYSTEM = "system"
    BOT = "bot"


class Availability(StrEnum):
    """
    An operator's availability: C{online} takes new conversations, C{away}
    keeps its own but takes no new ones, C{offline} is gone (with automatic
    routing its open conversations go to others).
    """

    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Bounds:
    """
    What one conversation (and one transition) may hold in memory, at most.
    Everything past a bound is in the store, never lost.

    @ivar max_labels: labels on one conversation (more are refused).
    @ivar max_label_length: characters in one label.
    @ivar max_notes_kept: the newest private notes kept in memory (for the
        list); older ones are only in the store.
    @ivar max_typing: operators shown as typing in one conversation at once
        (the longest typing is dropped first).
    @ivar max_read_marks: operators whose read position one conversation
        remembers; the least recent is forgotten first, and a forgotten
        operator counts as having read up to the episode's start.
    @ivar max_unread: unread messages are counted up to this (a console
        shows "99+").
    @ivar max_recent_client_ids: the visitor's own message ids remembered to
        recognise a resend (each resend within them is confirmed again,
        never stored twice).
    @ivar preview_chars: characters of the last message kept as its preview.
    @ivar max_batch: conversations one transition routes or reassigns at
        most; the rest follow at once in the next transition (a C{route}
        timer due now).
    @ivar max_operators: operators the team knows.
    """

    max_labels: int = 16
    max_label_length: int = 64
    max_notes_kept: int = 5
    max_typing: int = 8
    max_read_marks: int = 32
    max_unread: int = 99
    max_recent_client_ids: int = 32
    preview_chars: int = 200
    max_batch: int = 100
    max_operators: int = 1000


@dataclass(frozen=True)
class Message:
    """
    One message of a conversation, either way.

    @ivar seq: its number in the conversation, from 1, without gaps.
    @ivar operator: the operator who wrote it (their login name), for
        operator messages.
    @ivar display_name: the name the visitor is shown with it.
    @ivar client_message_id: the visitor's own id for a message it sent
        (structured protocol), to recognise a resend.
    """

    conversation_id: str
    seq: int
    author: Author
    body: str
    at: float
    operator: str | None = None
    display_name: str | None = None
    client_message_id: str | None = None

    @property
    def to_visitor(self) -> bool:
        return self.author is not Author.VISITOR


@dataclass(frozen=True)
class Note:
    """
    A private note: operators see it in the thread, the visitor never does.

    @ivar note_id: its number in the conversation, from 1.
    """

    conversation_id: str
    note_id: int
    operator: str
    body: str
    at: float


#: Past episodes a conversation remembers (where each began), the newest.
EPISODES_KEPT = 20


@dataclass(frozen=True)
class Conversation:
    """
    One visitor's conversation on one route, as it stands.

    Durable fields are committed before the conversation moves; C{version}
    counts committed changes (the store refuses a commit whose version is
    not the stored one plus one). The typing fields are ephemeral: changed
    without a commit, never stored.

    @ivar assignee: the operator it is assigned to (kept while snoozed and
        after resolving, as who handled it last), or None.
    @ivar last_seq: the number of the last message.
    @ivar opened_at: when the current episode opened.
    @ivar first_response_at: the episode's first operator reply, or None.
    @ivar resolved_at: when the episode was resolved (resolved only).
    @ivar waiting_since: when the oldest visitor message no operator has
        answered arrived (None when nothing waits; always None resolved).
    @ivar snoozed_until: when a snoozed conversation wakes (None: at the
        visitor's next message only; a visitor message wakes it either way).
    @ivar assigned_at: when its assignee was assigned.
    @ivar unanswered: visitor messages since the last operator reply (capped
        by the settings' C{max_unanswered}).
    @ivar delivered_upto: messages to the visitor up to this seq reached one
        of its connections.
    @ivar delivered_confirmed: a second record (another connection, maybe
        through another daemon) said the same C{delivered_upto}: a daemon
        whose own connection closed before it could write may then not take
        it back (L{wsdaemon.conversations.events.VisitorMissed}).
    @ivar visitor_read_upto: the visitor has read up to this seq.
    @ivar read_marks: (operator, seq read up to), least recent first.
    @ivar unread_floor: the seq the current episode started after: nothing
        before counts as unread.
    @ivar recent_visitor_seqs: the seqs of the newest visitor messages, for
        unread counts (at most C{max_unread}).
    @ivar notes: the newest private notes (at most C{max_notes_kept}).
    @ivar note_count: notes ever written (the last C{note_id}).
    @ivar ack_sent, offline_sent, fallback_sent: which notices the visitor
        had in this episode.
    @ivar recent_client_ids: (the visitor's message id, its seq), newest last.
    @ivar contact: an email address the visitor left for the answer.
    @ivar preview: the start of the last message from the visitor or an
        operator (the daemon's notices leave it).
    @ivar profile: who the visitor is, as proven (a token's claims, or an
        C{identify} with its HMAC), or None.
    @ivar with_bot: a bot answers this episode (the route lets a bot answer
        first): not in the operators' queue, no notices, no timers, until
        it hands over (or an operator replies, assigns or snoozes).
    @ivar bot_due: the bot owes this episode more (an answer to the
        visitor's message, messages waiting for their delay, a handoff after
        them, a backend's answer) until then; past it (and
        L{BOT_GRACE}) the core hands the conversation over, as what was to
        do it is gone (a daemon stopped or crashed, a reload replaced the
        bot). None: it owes nothing.
    @ivar bot_handoff: the reason of the handoff the bot owes after them.
    @ivar episodes: the past episodes (resolved, then reopened), oldest
        first, at most L{EPISODES_KEPT}: (the seq each started after, when
        it opened, when it was resolved). The current one is C{unread_floor},
        C{opened_at}.
    @ivar visitor_typing_until: the visitor is typing, until then (ephemeral).
    @ivar typing: (operator, typing until), oldest first (ephemeral).
    """

    conversation_id: str
    route: str
    visitor: str
    created_at: float
    opened_at: float
    last_activity_at: float
    status: Status = Status.OPEN
    assignee: str | None = None
    version: int = 0
    last_seq: int = 0
    first_response_at: float | None = None
    resolved_at: float | None = None
    waiting_since: float | None = None
    snoozed_until: float | None = None
    assigned_at: float | None = None
    unanswered: int = 0
    delivered_upto: int = 0
    delivered_confirmed: bool = False
    visitor_read_upto: int = 0
    read_marks: tuple[tuple[str, int], ...] = ()
    unread_floor: int = 0
    recent_visitor_seqs: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()
    notes: tuple[Note, ...] = ()
    note_count: int = 0
    ack_sent: bool = False
    offline_sent: bool = False
    fallback_sent: bool = False
    recent_client_ids: tuple[tuple[str, int], ...] = ()
    contact: str | None = None
    preview: str = ""
    with_bot: bool = False
    bot_due: float | None = None
    bot_handoff: str | None = None
    profile: Profile | None = None
    episodes: tuple[tuple[int, float, float | None], ...] = ()
    visitor_typing_until: float | None = None
    typing: tuple[tuple[str, float], ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status is Status.OPEN

    @property
    def holds_assignee_load(self) -> bool:
        """
        Whether it takes up a slot of its assignee's capacity: open ones do,
        but for a bot's episode (the assignee kept from an earlier episode
        gets it back at the handoff).
        """
        return self.status is Status.OPEN and self.assignee is not None and not self.with_bot

    @property
    def awaits_operator(self) -> bool:
        """Open, unassigned and not the bot's: in the queue for an operator."""
        return self.status is Status.OPEN and self.assignee is None and not self.with_bot

    def read_mark(self, operator: str) -> int:
        """The seq C{operator} has read up to, in this episode."""
        for name, seq in self.read_marks:
            if name == operator:
                return max(seq, self.unread_floor)
        return self.unread_floor

    def unread_for(self, operator: str) -> int:
        """Visitor messages C{operator} has not read (at most C{max_unread})."""
        mark = self.read_mark(operator)
        return sum(1 for seq in self.recent_visitor_seqs if seq > mark)

    def waiting_time(self, now: float) -> float:
        """Seconds the oldest unanswered visitor message has waited (0: none)."""
        return 0.0 if self.waiting_since is None else max(0.0, now - self.waiting_since)

    @property
    def first_response_time(self) -> float | None:
        if self.first_response_at is None:
            return None
        return self.first_response_at - self.opened_at

    @property
    def resolution_time(self) -> float | None:
        if self.resolved_at is None:
            return None
        return self.resolved_at - self.opened_at

    def operators_typing(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.typing)


_R = TypeVar("_R")
_FIELDS: dict[type, frozenset[str]] = {}


def evolve(record: _R, **changes: Any) -> _R:
    """
    C{dataclasses.replace} for the core's frozen records, about seven times
    faster (a conversation has 40 fields; the core makes a dozen copies per
    event): the copy's fields are the record's with C{changes} applied,
    without running C{__init__} again. Only for dataclasses without
    C{__post_init__} or C{init=False} fields (the core's records; another
    raises C{TypeError}); an unknown field name raises C{TypeError}, as
    C{replace} does.
    """
    kind = type(record)
    names = _FIELDS.get(kind)
    if names is None:
        found = fields(record)  # type: ignore[arg-type]
        if hasattr(kind, "__post_init__") or not all(f.init for f in found):
            raise TypeError(f"{kind.__name__} needs dataclasses.replace, not evolve")
        names = _FIELDS[kind] = frozenset(f.name for f in found)
    if not changes.keys() <= names:
        unknown = ", ".join(sorted(changes.keys() - names))
        raise TypeError(f"{kind.__name__} has no field {unknown}")
    copy = object.__new__(kind)
    state = copy.__dict__
    state.update(record.__dict__)
    state.update(changes)
    return copy


def conversation_id_for(route: str, visitor: str) -> str:
    """
    The id of C{visitor}'s conversation on C{route}: the same on every
    daemon, with nothing to coordinate (20 characters, base32 of 100 bits of
    a SHA-256). Not a credential: it names, it proves nothing.
    """
    digest = hashlib.sha256(
        b"wsdaemon conversation\0" + route.encode("utf-8") + b"\0" + visitor.encode("utf-8")
    ).digest()
    return base64.b32encode(digest[:15]).decode("ascii").lower()[:20]


def describe_state(conversation: Conversation) -> str:
    """
    Where a conversation stands, in words: C{open (unassigned)}, C{open
    (assigned to alice)}, C{open (the bot answers)}, C{snoozed}, C{resolved}.
    """
    if conversation.status is Status.OPEN:
        if conversation.with_bot:
            return "open (the bot answers)"
        if conversation.assignee is None:
            return "open (unassigned)"
        return f"open (assigned to {conversation.assignee})"
    return str(conversation.status)
