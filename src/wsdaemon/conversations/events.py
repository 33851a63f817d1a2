"""
What can happen to conversations: the events the core decides on.

Visitor events name the visitor and its route (the conversation's id follows
from them, L{conversation_id_for}); operator events name the conversation.
Timers come back as L{TimerFired} with the L{Timer} an effect set. Time is
never in an event: the core is given C{now} beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wsdaemon.conversations.model import Availability
from wsdaemon.conversations.profile import Profile

__all__ = ["AddNote", "Assign", "BotPending", "BotReply", "Event", "Handoff", "Identify",
           "LeaveContact", "OperatorAvailability", "OperatorCapacity", "OperatorRead",
           "OperatorReply", "OperatorTyping", "Reopen", "Resolve", "RosterChanged", "SetLabels",
           "Snooze", "Timer", "TimerFired", "TimerKind", "Transfer", "VisitorDelivered",
           "VisitorMessage", "VisitorMissed", "VisitorRead", "VisitorTyping"]


@dataclass(frozen=True)
class VisitorMessage:
    """
    The visitor wrote. Opens the conversation, wakes a snoozed one, reopens
    a resolved one.

    @ivar client_message_id: the visitor's own id for it (structured
        protocol): a resend with the same id is confirmed, not stored again.
    @ivar bot: the route lets a bot answer first: a message that opens an
        episode gives it to the bot (L{BotReply}, L{Handoff}), not to the
        operators' queue.
    @ivar profile: who the connection proved the visitor is (its token, an
        C{identify}), kept on the conversation as L{Identify} does: the
        first message of a visitor who identified before writing brings it.
    """

    route: str
    visitor: str
    text: str
    client_message_id: str | None = None
    bot: bool = False
    profile: Profile | None = None


@dataclass(frozen=True)
class BotReply:
    """
    The route's bot answers the visitor (only while the episode is the
    bot's: once handed over, or taken by an operator, it is refused).

    @ivar name: the name the visitor is shown (None: none).
    @ivar settles: the last of what the bot owed (L{BotPending}): it owes
        nothing more (a backend's answer came).
    """

    route: str
    visitor: str
    text: str
    name: str | None = None
    settles: bool = False


@dataclass(frozen=True)
class BotPending:
    """
    The bot owes the episode more until C{until}: messages waiting for
    their delay, and a handoff after them (C{handoff}, its reason). Stored,
    so that when whatever was to send them is gone by then (the daemon
    stopped or crashed, a reload replaced the bot) the conversation is
    handed over (L{TimerKind.BOT}) rather than left with the bot. Nothing
    happens if it is not the bot's (any more).

    @ivar until: None: the bot owes nothing any more (its backend answered
        with no message).
    """

    route: str
    visitor: str
    until: float | None
    handoff: str | None = None


@dataclass(frozen=True)
class Handoff:
    """
    The bot hands the conversation to the operators (a rule said so, or
    the visitor asked for a person): it joins the queue as a conversation
    opening does, with the notices and routing of one. Nothing happens if
    it is not the bot's (any more).

    @ivar reason: why, shown to operators (bounded by the core).
    """

    route: str
    visitor: str
    reason: str = ""


@dataclass(frozen=True)
class VisitorDelivered:
    """Messages to the visitor up to C{upto} reached one of its connections."""

    route: str
    visitor: str
    upto: int


@dataclass(frozen=True)
class VisitorMissed:
    """
    Message C{seq} was recorded delivered before it was written (daemons
    sharing a store record a plain connection's message first) but could
    not be written: the visitor's connection had closed meanwhile. Unless
    another connection confirmed it (C{delivered_confirmed}), it and what
    follows count as not delivered again, so that the visitor's next
    connection, through any daemon, gets them.
    """

    route: str
    visitor: str
    seq: int


@dataclass(frozen=True)
class VisitorRead:
    """The visitor has read up to C{upto} (implies delivered)."""

    route: str
    visitor: str
    upto: int


@dataclass(frozen=True)
class VisitorTyping:
    """The visitor started (C{on}) or stopped typing."""

    route: str
    visitor: str
    on: bool


@dataclass(frozen=True)
class LeaveContact:
    """The visitor left an email address for the answer (nobody was online)."""

    route: str
    visitor: str
    email: str


@dataclass(frozen=True)
class Identify:
    """
    The visitor proved who it is (its token's claims at connect, or an
    C{identify} with the HMAC of its id): kept on its conversation, merged
    with what it had (L{wsdaemon.conversations.profile.merged}). Nothing
    happens when it has no conversation yet: its next message brings the
    profile (L{VisitorMessage.profile}).
    """

    route: str
    visitor: str
    profile: Profile


@dataclass(frozen=True)
class OperatorReply:
    """
    An operator answers the visitor. An unassigned conversation becomes the
    replier's.

    @ivar display_name: the name the visitor is shown (the operator's name
        when None).
    """

    conversation_id: str
    operator: str
    text: str
    display_name: str | None = None


@dataclass(frozen=True)
class AddNote:
    """A private note, for operators only."""

    conversation_id: str
    operator: str
    text: str


@dataclass(frozen=True)
class Assign:
    """
    C{by} assigns the conversation to C{operator}, or unassigns it (None):
    with automatic routing an unassigned conversation goes to the next
    operator with room other than the one it had.
    """

    conversation_id: str
    operator: str | None
    by: str


@dataclass(frozen=True)
class Transfer:
    """C{by} hands an assigned conversation over to C{to}."""

    conversation_id: str
    to: str
    by: str


@dataclass(frozen=True)
class Resolve:
    conversation_id: str
    by: str


@dataclass(frozen=True)
class Reopen:
    """An operator reopens a resolved conversation, or wakes a snoozed one."""

    conversation_id: str
    by: str


@dataclass(frozen=True)
class Snooze:
    """
    Snooze an open conversation until C{until} (a time after now) or, with
    None, until the visitor's next message (which wakes it either way).
    """

    conversation_id: str
    by: str
    until: float | None = None


@dataclass(frozen=True)
class OperatorRead:
    """C{operator} has read the conversation up to C{upto}."""

    conversation_id: str
    operator: str
    upto: int


@dataclass(frozen=True)
class OperatorTyping:
    conversation_id: str
    operator: str
    on: bool
    display_name: str | None = None


@dataclass(frozen=True)
class SetLabels:
    """Add and remove labels (added ones are trimmed and lower-cased)."""

    conversation_id: str
    by: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class OperatorAvailability:
    """An operator is now online, away or offline (an unknown name joins the team)."""

    operator: str
    availability: Availability


@dataclass(frozen=True)
class OperatorCapacity:
    """How many open conversations C{operator} takes at once (0: no cap)."""

    operator: str
    capacity: int


@dataclass(frozen=True)
class RosterChanged:
    """
    The configured operators changed (a reload): C{joined} become members
    at once (offline, the default capacity), so that they can be assigned
    before they first connect; each of C{left} leaves the team if it is
    offline and holds no open conversation (else it stays, and is asked
    to leave again later).
    """

    joined: tuple[str, ...] = ()
    left: tuple[str, ...] = ()


class TimerKind(StrEnum):
    """
    C{wake}: a snooze ends; C{fallback}: the visitor waited C{fallback_after};
    C{silence}: the assignee has not answered for C{reassign_after};
    C{typing}: someone's typing indicator runs out; C{route}: more
    conversations to route or reassign than one transition takes;
    C{bot}: what the bot owed (L{BotPending}) is overdue.
    """

    WAKE = "wake"
    FALLBACK = "fallback"
    SILENCE = "silence"
    TYPING = "typing"
    ROUTE = "route"
    BOT = "bot"


@dataclass(frozen=True)
class Timer:
    """
    A timer's identity: setting one with the same identity replaces it.

    @ivar who: for C{typing}: the operator, or C{""} for the visitor.
    """

    kind: TimerKind
    conversation_id: str = ""
    who: str = ""


@dataclass(frozen=True)
class TimerFired:
    """
    A timer came due. A timer that is no longer due (the conversation moved
    since, or it fired late) changes nothing: timers may be stale.
    """

    timer: Timer


Event = (VisitorMessage | VisitorDelivered | VisitorMissed | VisitorRead | VisitorTyping
         | LeaveContact | Identify
         | BotReply | BotPending | Handoff | OperatorReply | AddNote | Assign | Transfer | Resolve
         | Reopen | Snooze
         | OperatorRead | OperatorTyping | SetLabels | OperatorAvailability | OperatorCapacity
         | RosterChanged
         | TimerFired)
