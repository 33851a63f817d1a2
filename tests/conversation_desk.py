"""
A test bench for the conversation core: an L{Inbox} driven event by event,
each transition committed as a driver would once its store writes land,
with the effects of the last step at hand.
"""

from __future__ import annotations

from typing import Any, TypeVar

from wsdaemon.conversations import (
    Availability,
    Conversation,
    ConversationSettings,
    Effect,
    Event,
    Inbox,
    OperatorAvailability,
    Transition,
    conversation_id_for,
)

E = TypeVar("E")

ROUTE = "/support"


def cid(visitor: str, route: str = ROUTE) -> str:
    return conversation_id_for(route, visitor)


class Desk:
    """
    @ivar now: the time the next step happens at (set it, or pass C{at}).
    @ivar last: the last step's transition.
    """

    def __init__(self, settings: ConversationSettings | None = None, **changes: Any) -> None:
        self.settings = settings or ConversationSettings(**changes)
        self.inbox = Inbox(self.settings)
        self.now = 0.0
        self.last: Transition | None = None

    def step(self, event: Event, at: float | None = None) -> Transition:
        if at is not None:
            self.now = at
        transition = self.inbox.decide(event, self.now)
        self.inbox.commit(transition)
        self.last = transition
        return transition

    def online(self, *names: str) -> None:
        for name in names:
            self.step(OperatorAvailability(name, Availability.ONLINE))

    def conversation(self, visitor: str, route: str = ROUTE) -> Conversation:
        found = self.inbox.conversation(cid(visitor, route))
        assert found is not None, f"no conversation for {visitor}"
        return found

    def effects(self, kind: type[E]) -> list[E]:
        assert self.last is not None
        return [effect for effect in self.last.effects if isinstance(effect, kind)]

    @property
    def all_effects(self) -> tuple[Effect, ...]:
        assert self.last is not None
        return self.last.effects
