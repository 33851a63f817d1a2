"""
How the driver's view takes records it did not decide: read from the store
(a conversation dropped from memory, a stale commit's), or committed by
another daemon sharing Redis (L{wsdaemon.support.redis_feed}), with what
that daemon did for connections carried out here.

A record is taken only if it is newer than the one held; a resolved
conversation dropped from memory keeps its version (the last
L{FORGOTTEN_KEPT}), so that another daemon's older commit read late does
not bring it back. Another daemon's commit this view already holds at its
version or newer (read from the store before its event came) is not
carried out: its deliveries would reach the visitor after newer messages
(it gets them on resume).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from twisted.logger import Logger

from wsdaemon.conversations.effects import CancelTimer, Commit, Effect, Measure, SetTimer
from wsdaemon.conversations.inbox import Inbox
from wsdaemon.conversations.model import Conversation, Status
from wsdaemon.conversations.settings import ConversationSettings
from wsdaemon.support.peers import Adopted, adopted_team
from wsdaemon.support.timers import DueTimers

__all__ = ["FORGOTTEN_KEPT", "Adoption", "Driving"]

#: Versions of resolved conversations remembered once dropped from memory.
FORGOTTEN_KEPT = 10_000

log = Logger(namespace="wsdaemon.support.driver")


class Driving(Protocol):
    """What adoption needs of the driver (L{wsdaemon.support.driver.ConversationDriver})."""

    inbox: Inbox
    timers: DueTimers
    settings: ConversationSettings

    def carry_out_effect(self, effect: Effect) -> None: ...

    def waiting(self, conversation_id: str | None) -> int: ...


class Adoption:
    """@param driver: whose view, timers and ports (its effects) these are."""

    def __init__(self, driver: Driving) -> None:
        self._driver = driver
        self._forgotten: OrderedDict[str, int] = OrderedDict()

    def take_stored(self, found: Conversation) -> bool:
        """
        Take a record read from the store (or committed by another daemon)
        unless the view has it at that version or later; the team's loads
        move with it. Only while nothing else commits (alone), as the
        team's changes are.

        @return: whether the view took it.
        """
        before = self._driver.inbox.conversation(found.conversation_id)
        if before is not None and before.version >= found.version:
            return False
        if before is None and self._forgotten.get(found.conversation_id, 0) > found.version:
            return False  # older than the one dropped: never brought back
        self._driver.inbox.team = self._driver.inbox.team.accounted(before, found)
        self._driver.inbox.load([found])
        return True

    def known_version(self, conversation_id: str) -> int:
        """
        The version of a conversation the view holds, or held before it
        was dropped (resolved, among the last L{FORGOTTEN_KEPT}); 0 if none.
        """
        held = self._driver.inbox.conversation(conversation_id)
        if held is not None:
            return held.version
        return self._forgotten.get(conversation_id, 0)

    def forget(self, conversation_id: str) -> None:
        """Drop a resolved conversation from the view, remembering its version."""
        held = self._driver.inbox.conversation(conversation_id)
        if held is None or held.status is not Status.RESOLVED:
            return
        self._driver.inbox.forget(conversation_id)
        self._forgotten[conversation_id] = held.version
        self._forgotten.move_to_end(conversation_id)
        while len(self._forgotten) > FORGOTTEN_KEPT:
            self._forgotten.popitem(last=False)

    def overtaken(self, adopted: Adopted) -> bool:
        """Whether the view holds every record of a committed transition at its version or newer."""
        if not adopted.durable or not adopted.conversations:
            return False
        return all(self.known_version(c.conversation_id) >= c.version
                   for c in adopted.conversations)

    def take_adopted(self, adopted: Adopted) -> None:
        """
        The driver's C{adopt}'s work, now: only in a turn that runs alone
        (the stale path's catching up, L{wsdaemon.support.peers.Peers.catch_up})
        or that leaves the team as it is.
        """
        if self.overtaken(adopted):
            return
        team = adopted_team(self._driver.inbox, adopted)
        taken = [c for c in adopted.conversations if self.take_stored(c)]
        self._driver.inbox.team = team
        for effect in adopted.effects:
            if isinstance(effect, Commit | SetTimer | CancelTimer | Measure):
                continue
            try:
                self._driver.carry_out_effect(effect)
            except Exception:
                log.failure("conversations: carrying out {effect_type} failed",
                            effect_type=type(effect).__name__)
        for conversation in taken:
            self._driver.timers.derive(conversation, self._driver.settings)
            key = conversation.conversation_id
            if conversation.status is Status.RESOLVED and self._driver.waiting(key) <= 1:
                self.forget(key)
