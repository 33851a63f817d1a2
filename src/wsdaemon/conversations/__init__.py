"""
Conversations: one visitor's thread on one route, its messages both ways,
private notes, assignment, snoozing and resolving, and the team that answers
(availability, capacity, routing).

The core is pure: L{decide} takes the conversations as they stand (an
L{InboxView}), an event and the time, and returns a L{Transition}: the
changed records and the effects to carry out, store writes first. It does
no I/O and holds no reactor; drivers (SQLite, Redis) carry the effects out.
See docs/conversations.md.

They serve every operator route (C{strategy = operator}); the older item
queue was retired, its store taken over on start.
"""

from wsdaemon.conversations.core import decide
from wsdaemon.conversations.effects import (
    VISITOR_BOUND,
    AnnounceAvailability,
    CancelTimer,
    Commit,
    ConfirmVisitorMessage,
    DeliverMessage,
    Effect,
    Measure,
    Metric,
    NotifyOperators,
    NotifyTeam,
    RefuseVisitor,
    SetTimer,
    SignalVisitor,
)
from wsdaemon.conversations.errors import InvalidMove, StaleConversation
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
    Timer,
    TimerFired,
    TimerKind,
    Transfer,
    VisitorDelivered,
    VisitorMessage,
    VisitorMissed,
    VisitorRead,
    VisitorTyping,
)
from wsdaemon.conversations.inbox import Inbox
from wsdaemon.conversations.model import (
    Author,
    Availability,
    Bounds,
    Conversation,
    Message,
    Note,
    Status,
    conversation_id_for,
    describe_state,
)
from wsdaemon.conversations.profile import Profile, ProfileError, ProfileSource
from wsdaemon.conversations.routing import OperatorState, Team
from wsdaemon.conversations.settings import ConversationSettings, Routing
from wsdaemon.conversations.transition import InboxView, Transition, due_times

__all__ = ["AddNote", "AnnounceAvailability", "Assign", "Author", "Availability", "BotPending",
           "BotReply", "Bounds", "CancelTimer", "Commit", "ConfirmVisitorMessage", "Conversation",
           "ConversationSettings", "DeliverMessage", "Effect", "Event", "Handoff", "Identify",
           "Inbox", "InboxView", "InvalidMove", "LeaveContact", "Measure", "Message", "Metric",
           "Note", "NotifyOperators", "NotifyTeam", "OperatorAvailability", "OperatorCapacity",
           "OperatorRead", "OperatorReply", "OperatorState", "OperatorTyping", "Profile",
           "ProfileError", "ProfileSource", "RefuseVisitor", "Reopen", "Resolve", "RosterChanged",
           "Routing", "SetLabels", "SetTimer", "SignalVisitor", "Snooze", "StaleConversation",
           "Status", "Team", "Timer", "TimerFired", "TimerKind", "Transfer", "Transition",
           "VISITOR_BOUND", "VisitorDelivered", "VisitorMessage", "VisitorMissed", "VisitorRead",
           "VisitorTyping",
           "conversation_id_for", "decide", "describe_state", "due_times"]
