"""
The configured operators as team members, kept as the configuration
changes (a reload): names added join the team at once (offline, the
default capacity), on this daemon and, through the team's news, on the
others sharing Redis, so every inbox can assign them before they first
connect; names removed leave the team once they are offline and hold no
open conversation (their conversations keep an assignee the team knows
until then; a removed name's connections are closed by the channel, so
it goes offline at once unless another daemon still admits its token).

Why not at once: an operator removed while it holds open conversations
would leave them assigned to someone the team does not list, and with
automatic routing nothing would move them (routing moves a *member*'s
conversations when it goes offline). So it stays, offline, until its
last one is resolved or moved; then it leaves.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.conversations.events import RosterChanged
from wsdaemon.conversations.model import Availability
from wsdaemon.conversations.transition import Transition
from wsdaemon.support.driver import ConversationDriver

__all__ = ["Roster"]

_log = Logger(namespace="wsdaemon.conversations")


class Roster:
    """
    @param driver: whose team the names join and leave (its C{roster}, the
        names it enrolled when built, is the start).

    @ivar leaving: names removed from the configuration that are still
        members (online, or holding open conversations): at most the
        team's bound (C{Bounds.max_operators}).
    """

    def __init__(self, driver: ConversationDriver) -> None:
        self._driver = driver
        self.names = frozenset(driver.roster)
        self.leaving: set[str] = set()
        #: Those of them whose leaving is submitted and not yet decided.
        self._asked: set[str] = set()
        driver.inbox.configured = self.names

    def update(self, names: Iterable[str]) -> Deferred[Transition] | None:
        """
        The configuration names C{names} now: the added join, the removed
        leave (now, or once free: L{check}).

        @return: the Deferred of the event submitted (None: nothing changed).
        """
        now = frozenset(names)
        joined = now - self.names
        team = self._driver.inbox.team
        # Only members can leave (at most the team's bound).
        self.leaving = {name for name in (self.leaving | (self.names - now)) - now
                        if team.get(name) is not None}
        self.names = now
        self._driver.roster = tuple(sorted(now))
        self._driver.inbox.configured = now
        if not self._driver.running:
            # Nothing decides yet (the store opens): enrolled directly, as
            # the driver enrols its roster when built.
            self._driver.inbox.enrol(joined)
            return None
        if not joined and not self.leaving:
            return None
        return self._submit(RosterChanged(tuple(sorted(joined)), tuple(sorted(self.leaving))))

    def check(self, operator: str | None = None) -> None:
        """
        Something changed for C{operator} (None: anyone): removed names
        now offline and free leave. Costs nothing while nobody is leaving.
        """
        if not self.leaving or (operator is not None and operator not in self.leaving):
            return
        inbox = self._driver.inbox
        free = []
        # Those still holding a conversation first (a look-up each), the
        # team's entries only for the others.
        for name in sorted(n for n in self.leaving if not inbox.load_of(n)):
            member = inbox.team.get(name)
            if member is None:
                self.leaving.discard(name)  # it left
            elif member.availability is Availability.OFFLINE and not member.load \
                    and name not in self._asked:
                free.append(name)
        if free:
            # Asked once; if it is busy again by its turn, the next change asks again.
            self._asked.update(free)
            d = self._submit(RosterChanged(left=tuple(free)))
            if d is None:
                self._asked.difference_update(free)
            else:
                d.addBoth(lambda _: self._asked.difference_update(free))

    def _submit(self, event: RosterChanged) -> Deferred[Transition] | None:
        if not self._driver.running:
            return None  # checked again on the next change
        d = self._driver.submit(event)
        d.addErrback(self._failed)
        return d

    def _failed(self, failure: Failure) -> None:
        _log.warn("conversations: the team's roster not changed: {why}",
                  why=failure.getErrorMessage())
