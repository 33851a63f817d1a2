"""
What a decision asks the world to do: the effects, in the order they must be
done.

A transition's effects start with one L{Commit} whenever anything durable
changed: everything it holds is written in one transaction (SQLite) or one
script (Redis), and nothing after it (a delivery, a notification, a timer)
is done unless it succeeded. That is commit-before-move: a message reaches
the visitor or an operator only once it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wsdaemon.conversations.events import Timer
from wsdaemon.conversations.model import Conversation, Message, Note

__all__ = ["AnnounceAvailability", "CancelTimer", "Commit", "ConfirmVisitorMessage",
           "DeliverMessage", "Effect", "Measure", "Metric", "NotifyOperators", "NotifyTeam",
           "RefuseVisitor", "SetTimer", "SignalVisitor", "VISITOR_BOUND"]


@dataclass(frozen=True)
class Commit:
    """
    Store these at once, or none of them.

    @ivar conversations: the new records; each one's C{version} is the
        stored one plus one (a conversation stored for the first time has
        version 1).
    @ivar messages: new messages, to add.
    @ivar notes: new private notes, to add.
    """

    conversations: tuple[Conversation, ...]
    messages: tuple[Message, ...] = ()
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class DeliverMessage:
    """Write a committed message to the visitor's connections (or keep it for the next)."""

    route: str
    visitor: str
    message: Message


@dataclass(frozen=True)
class ConfirmVisitorMessage:
    """
    Tell the visitor its message is stored as C{seq} (structured protocol);
    C{duplicate}: it had been stored before (a resend).
    """

    route: str
    visitor: str
    client_message_id: str | None
    seq: int
    duplicate: bool = False


@dataclass(frozen=True)
class SignalVisitor:
    """
    Something the visitor is shown that is not a message: C{typing} (with
    C{on} and C{name}), C{read} (operators have read up to C{upto}),
    C{status} (C{resolved} or C{open} again).
    """

    route: str
    visitor: str
    signal: str
    on: bool = False
    name: str | None = None
    upto: int = 0
    status: str | None = None


@dataclass(frozen=True)
class AnnounceAvailability:
    """Tell every connected visitor whether an operator is available now."""

    available: bool


@dataclass(frozen=True)
class RefuseVisitor:
    """
    The visitor's message was not taken, because of C{reason}: C{unanswered}
    (C{limit} of its messages already wait), C{route_full} or C{inbox_full}
    (C{limit} open conversations). Nothing was stored.
    """

    route: str
    visitor: str
    reason: str
    limit: int


@dataclass(frozen=True)
class NotifyOperators:
    """
    Tell operators: C{kind} is C{conversation} (new), C{message}, C{note},
    C{updated} (status, assignee, labels, contact), C{typing}, C{read},
    C{delivered}. Each operator's copy carries its own unread count.

    @ivar operator: only this operator (else all).
    @ivar actor: the operator who did it, if one did.
    """

    kind: str
    conversation: Conversation
    message: Message | None = None
    note: Note | None = None
    operator: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class NotifyTeam:
    """
    An operator's availability or capacity changed: tell the operators.

    @ivar joined: it joined the team by the configuration (a reload):
        another daemon that knows it already keeps what it knows.
    @ivar left: it left the team (its name removed from the configuration).
    """

    operator: str
    availability: str
    capacity: int
    load: int
    joined: bool = False
    left: bool = False


@dataclass(frozen=True)
class SetTimer:
    """(Re)set C{timer} to fire at C{at} (replacing one with its identity)."""

    timer: Timer
    at: float


@dataclass(frozen=True)
class CancelTimer:
    timer: Timer


class Metric(StrEnum):
    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"
    #: The core handed a bot's conversation over, what the bot owed being
    #: overdue (L{wsdaemon.conversations.bot_events.overdue}); the seconds
    #: are how long after it was due.
    BOT_OVERDUE = "bot_overdue"


@dataclass(frozen=True)
class Measure:
    """One observation for a histogram: C{seconds} of C{metric} on C{route}."""

    metric: Metric
    route: str
    seconds: float


Effect = (Commit | DeliverMessage | ConfirmVisitorMessage | SignalVisitor | AnnounceAvailability
          | RefuseVisitor | NotifyOperators | NotifyTeam | SetTimer | CancelTimer | Measure)

#: Effects that reach a visitor.
VISITOR_BOUND = (DeliverMessage, ConfirmVisitorMessage, SignalVisitor, AnnounceAvailability,
                 RefuseVisitor)
