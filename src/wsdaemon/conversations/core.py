"""
The conversation core: C{decide(view, event, now, settings)} returns the
L{Transition} an event makes, the changed records and the effects, and does
nothing itself: no I/O, no reactor, no clock (time comes in as C{now}).

A move the state does not allow raises L{InvalidMove} naming the
conversation, its state and the action; nothing changed then. Events that
cannot be wrong in any state (typing where nobody looks, a stale timer, a
read receipt already known) change nothing instead.

With automatic routing, every event ends by rebalancing: a gone operator's
open conversations go elsewhere and the queue goes to operators with room.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wsdaemon.conversations import bot_events as bots
from wsdaemon.conversations import operator_events as operators
from wsdaemon.conversations import profile_events as profiles
from wsdaemon.conversations import team_events as team
from wsdaemon.conversations import visitor_events as visitors
from wsdaemon.conversations.events import (
    AddNote,
    Assign,
    BotPending,
    BotReply,
    Event,
    Handoff,
    Identify,
    LeaveContact,
    OperatorAvailability,
    OperatorCapacity,
    OperatorRead,
    OperatorReply,
    OperatorTyping,
    Reopen,
    Resolve,
    RosterChanged,
    SetLabels,
    Snooze,
    TimerFired,
    Transfer,
    VisitorDelivered,
    VisitorMessage,
    VisitorMissed,
    VisitorRead,
    VisitorTyping,
)
from wsdaemon.conversations.moves import rebalance
from wsdaemon.conversations.settings import ConversationSettings, Routing
from wsdaemon.conversations.transition import Draft, InboxView, Transition

__all__ = ["decide"]

_HANDLERS: dict[type[Any], Callable[[Draft, Any], None]] = {
    VisitorMessage: visitors.visitor_message,
    VisitorDelivered: visitors.visitor_delivered,
    VisitorMissed: visitors.visitor_missed,
    VisitorRead: visitors.visitor_read,
    VisitorTyping: visitors.visitor_typing,
    LeaveContact: visitors.leave_contact,
    Identify: profiles.identify,
    BotReply: bots.bot_reply,
    BotPending: bots.bot_pending,
    Handoff: bots.handoff,
    OperatorReply: operators.operator_reply,
    AddNote: operators.add_note,
    Assign: operators.assign,
    Transfer: operators.transfer,
    Resolve: operators.resolve,
    Reopen: operators.reopen,
    Snooze: operators.snooze,
    OperatorRead: operators.operator_read,
    OperatorTyping: operators.operator_typing,
    SetLabels: operators.set_labels,
    OperatorAvailability: team.operator_availability,
    OperatorCapacity: team.operator_capacity,
    RosterChanged: team.roster_changed,
    TimerFired: team.timer_fired,
}


def decide(view: InboxView, event: Event, now: float,
           settings: ConversationSettings) -> Transition:
    """
    @return: what C{event} at C{now} makes of the conversations in C{view}.
    @raise InvalidMove: the move is not allowed; nothing changed.
    """
    draft = Draft(view, now, settings)
    _HANDLERS[type(event)](draft, event)
    if settings.routing is Routing.AUTO:
        rebalance(draft)
    return draft.finish()
