"""
What the core is told by the config: routing, notices, caps and bounds, as
one immutable value (the C{[operator]} section will build it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from wsdaemon.conversations.model import Bounds

__all__ = ["ConversationSettings", "Routing"]


class Routing(StrEnum):
    """
    C{manual}: operators take conversations themselves (by assigning or
    replying). C{auto}: a new or reopened conversation goes to the next
    online operator with room, round robin; it waits in the queue when
    nobody has room, and goes elsewhere when its assignee goes offline or
    stays silent for C{reassign_after}.
    """

    MANUAL = "manual"
    AUTO = "auto"


@dataclass(frozen=True)
class ConversationSettings:
    """
    @ivar default_capacity: open conversations an operator takes at once
        when it has not said (0: no cap). Capacity limits automatic routing
        only: an operator may take more by hand, and a woken or reopened
        conversation goes back to its online assignee whatever its load.
    @ivar reassign_after: seconds a visitor waits on an assigned operator
        before automatic routing gives the conversation to another one with
        room (once per wait); 0: never.
    @ivar fallback_after: seconds a visitor waits without an answer before
        it gets C{fallback_message}; 0: never.
    @ivar ack_message: sent when a visitor's message opens an episode
        (empty: none).
    @ivar offline_message: sent instead of C{ack_message} when a visitor's
        message opens an episode and no operator is online (empty: none, the
        acknowledgement is sent). The daemon sends no email: the defaults
        promise only that the team sees the thread and an address left.
    @ivar contact_message: sent when the visitor leaves an email address;
        C{{email}} is replaced by it.
    @ivar notices_once: the acknowledgement, the offline notice and the
        fallback are sent once per episode (C{True}), or as before
        conversations, after every message (the offline notice, the
        acknowledgement) and every unanswered wait (the fallback).
    @ivar max_unanswered: visitor messages that may wait unanswered in one
        conversation; more are refused until an operator answers (0: no cap).
    @ivar max_open_per_route: open or snoozed conversations on one route.
    @ivar max_open_total: open or snoozed conversations in all.
    @ivar typing_timeout: seconds a typing indicator lasts unless renewed.
    """

    routing: Routing = Routing.MANUAL
    default_capacity: int = 0
    reassign_after: float = 0.0
    fallback_after: float = 300.0
    ack_message: str = "Thanks! An operator will answer here soon."
    fallback_message: str = (
        "Sorry, no operator could answer yet. We will reply here as soon as one does."
    )
    offline_message: str = (
        "Thanks! Nobody is available right now. Your message is kept and the team will "
        "answer here when they are back."
    )
    contact_message: str = (
        "Got it: the team will see your email address ({email}) and may write to you there."
    )
    notices_once: bool = True
    max_unanswered: int = 20
    max_open_per_route: int = 50_000
    max_open_total: int = 100_000
    typing_timeout: float = 6.0
    bounds: Bounds = field(default_factory=Bounds)
