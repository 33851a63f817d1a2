"""
What a daemon has read of the others' commits and not yet taken, for a
commit of its own that came back stale (L{wsdaemon.support.redis_feed}):
each conversation's newest version read from the stream, the changes
handed to the driver and waiting for their turn, and a wait for the
stream to bring a version the store already holds. Each operator's
raises counted (commits that raised its load: key L{TEAM} and its name)
are followed alike: a commit refused because the operator's room may be
full takes every change raising it up to the stored count.

Bounded: versions of at most L{MAX_SEEN} conversations are remembered
(least recently read dropped: a catch-up then waits L{CATCH_UP_WAIT} and
takes the stored record); the changes waiting are the driver's lanes'
(bounded there); the waits, one per stale commit in flight.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from wsdaemon.support.peers import Adopted
from wsdaemon.support.redis_news import Change
from wsdaemon.support.redis_scripts import TEAM

__all__ = ["CATCH_UP_WAIT", "MAX_SEEN", "Backlog", "Pending"]

#: Seconds a stale commit waits for the stream to bring what the store
#: holds (it is there already: the commit script appended it); past it,
#: the record is read from the store (its deliveries then come on resume).
CATCH_UP_WAIT = 1.0
#: Conversations whose newest version read from the stream is remembered.
MAX_SEEN = 100_000


class Pending:
    """A change handed to the driver, until its turn comes or a stale commit takes it."""

    def __init__(self, change: Change, backlog: Backlog) -> None:
        self.change = change
        keys = {c.conversation_id for c in change.conversations}
        keys.update(TEAM + operator for operator in change.team_raised or ())
        self.keys = tuple(keys)
        self._backlog = backlog
        pending = self._pending = backlog.waiting
        self.done = False
        for key in self.keys:
            pending.setdefault(key, deque()).append(self)

    def claim(self) -> bool:
        """@return: True the first time (it is to be taken now), then False."""
        if self.done:
            return False
        self.done = True
        for key in self.keys:
            waiting = self._pending.get(key)
            if waiting is not None:
                waiting.remove(self)
                if not waiting:
                    del self._pending[key]
        self._backlog.took(self.change)
        return True

    def reaches(self, key: str, version: int) -> bool:
        if key.startswith(TEAM):
            raised = self.change.team_raised or {}
            operator = key[len(TEAM):]
            return operator in raised and raised[operator] <= version
        return any(c.conversation_id == key and c.version <= version
                   for c in self.change.conversations)



class Backlog:
    """
    @param clock: the wait's bound.

    @ivar raised: each operator's raises counted that the driver's view
        holds: the newest of the changes taken (this daemon's own too).
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._team_seen: dict[str, int] = {}
        self.waiting: dict[str, deque[Pending]] = {}
        self._waiters: list[tuple[str, int, Deferred[None]]] = []
        self.raised: dict[str, int] = {}

    def pending(self, change: Change) -> Pending:
        """C{change} goes to the driver: waiting for its turn until claimed."""
        return Pending(change, self)

    def took(self, change: Change) -> None:
        """The driver took C{change} (or it was claimed to be read again, or it is its own)."""
        for operator, count in (change.team_raised or {}).items():
            self.raised[operator] = max(self.raised.get(operator, 0), count)

    def _version(self, key: str) -> int:
        if key.startswith(TEAM):
            return self._team_seen.get(key[len(TEAM):], 0)
        return self._seen.get(key, 0)

    def saw(self, change: Change) -> int:
        """
        C{change} was read (and, if it is to be taken, is pending already).

        @return: how many versions of its conversations the stream skipped
            (trimmed while this daemon was behind): their records are put
            right by this change, their deliveries come on resume.
        """
        skipped = 0
        for operator, count in (change.team_raised or {}).items():
            self._team_seen[operator] = max(self._team_seen.get(operator, 0), count)
        for conversation in change.conversations:
            key = conversation.conversation_id
            seen = self._seen.get(key)
            if seen is not None and conversation.version > seen + 1:
                skipped += conversation.version - seen - 1
            if (seen or 0) < conversation.version:
                self._seen[key] = conversation.version
            self._seen.move_to_end(key)
        while len(self._seen) > MAX_SEEN:
            self._seen.popitem(last=False)
        if self._waiters:
            waiting, self._waiters = self._waiters, []
            for key, version, d in waiting:
                if self._version(key) >= version:
                    d.callback(None)
                else:
                    self._waiters.append((key, version, d))
        return skipped

    def following(self, key: str) -> bool:
        """Whether the stream brought C{key} before (its newest version is remembered)."""
        return key[len(TEAM):] in self._team_seen if key.startswith(TEAM) else key in self._seen

    def read_up_to(self, key: str, version: int) -> Deferred[None]:
        """Fires once the stream brought C{key} at C{version}, or L{CATCH_UP_WAIT} later."""
        d: Deferred[None] = Deferred()
        if self._version(key) >= version:
            d.callback(None)
            return d
        entry = (key, version, d)
        self._waiters.append(entry)

        def late() -> None:
            if entry in self._waiters:
                self._waiters.remove(entry)
                d.callback(None)

        call = self._clock.callLater(CATCH_UP_WAIT, late)

        def settled(result: Any) -> Any:
            if call.active():
                call.cancel()
            return result

        d.addBoth(settled)
        return d

    def claim_up_to(self, key: str, version: int) -> list[Adopted]:
        """
        The changes waiting that bring C{key} up to C{version}, in order,
        claimed. (L{TEAM} and an operator: those that raised its load up to
        that count, each after the changes before it of its conversations.)
        """
        taken: list[Adopted] = []
        if key.startswith(TEAM):
            for pending in list(self.waiting.get(key, ())):
                if pending.reaches(key, version):
                    for conversation in pending.change.conversations:
                        taken += self.claim_up_to(conversation.conversation_id,
                                                  conversation.version)
            operator = key[len(TEAM):]
            self.raised[operator] = max(self.raised.get(operator, 0), version)
            return taken
        for pending in list(self.waiting.get(key, ())):
            if pending.reaches(key, version) and pending.claim():
                change = pending.change
                taken.append(Adopted(change.conversations, change.effects, change.last_chosen))
        return taken
