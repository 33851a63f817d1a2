"""
Several daemons, one inbox: what each commit tells the other daemons
sharing Redis, and how each daemon follows the others' commits.

A commit's event in the stream (appended by the commit script itself, so
it exists exactly when the commit does) carries, besides which records
changed: the daemon and the commit's number, the changed conversations'
records, and the transition's effects for connections (deliveries,
visitor signals, operator notifications, the team's changes; not timers,
not measures). Each daemon reads the stream (the broker's link: XREAD
BLOCK after the newest entry it has seen, a bounded batch at a time) and
hands every other daemon's transition to its driver
(L{ConversationDriver.adopt}): the records newer than its view replace
them, and the effects reach the visitors and operators connected to
*this* daemon. Whoever holds a visitor's connection writes to it, exactly
once: the daemon that committed writes to its own connections, the
others to theirs, and a visitor that resumes by seq gets what it missed
once (its connection drops what it already has).

Two daemons deciding on one conversation at once: the second commit is
refused as stale. Before deciding again, its daemon takes what the other
committed as the other told it (L{catch_up}: the stream already holds it,
since the script appended it), deliveries included, so a visitor here is
written every message in order, and only then decides again.

What an event carries: L{wsdaemon.support.redis_news}; what a stale commit
catches up with: L{wsdaemon.support.redis_catchup}.

A daemon's own events are skipped (it carried them out when the commit
landed), except when the commit's outcome was unknown (Redis went silent
after the script was sent): the event, read later, proves it landed, and
it is taken then; an own event read while its commit's answer is still
awaited waits for that answer.

The team's capacity across daemons: a commit that raises an operator's
load (routing gave it a conversation, an assignment) says how many raises
of that operator its view holds, its load after and its capacity; the
commit script counts every raise, and refuses the commit (stale, as for a
conversation's version) when the raises the view does not hold could take
the operator past its capacity; this daemon then takes every change
raising it up to the stored count (L{catch_up} of L{TEAM} and the
operator) and decides again: two daemons routing at once never give an
operator more than its capacity, and contend only near it. The capacity
checked is the one the operator's team entry holds
(L{wsdaemon.support.redis_team}): one lowered on another daemon counts
from the moment it is written, and the refused daemon takes it into its
view with the raises.

Bounded: the stream is capped (C{MAXLEN ~}, the store's C{events_kept});
events read before the driver runs are held up to L{MAX_HELD} (more: the
conversations are read again from the store once it runs); a transition
the driver's lanes refuse (full) leaves its conversations to be read
again from the store L{REREAD_AFTER} seconds later, at most
L{MAX_REREAD} at a time.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.conversations.effects import NotifyTeam
from wsdaemon.conversations.events import OperatorAvailability
from wsdaemon.conversations.model import Availability
from wsdaemon.conversations.transition import Transition
from wsdaemon.errors import BrokerOutcomeUnknown
from wsdaemon.escaping import visible
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.peers import Adopted, raised_loads
from wsdaemon.support.redis_catchup import Backlog
from wsdaemon.support.redis_news import Change, decode_change, encode_news
from wsdaemon.support.redis_scripts import TEAM
from wsdaemon.support.redis_store import RedisConversationStore
from wsdaemon.support.redis_team import team_entry

__all__ = ["EVENTS_KEPT", "MAX_ATTEMPTS", "MAX_HELD", "MAX_REREAD", "MAX_UNKNOWN", "REREAD_AFTER",
           "STALE_PAUSE", "ConversationFeed", "FeedLink"]

#: Entries the event stream keeps, about, once conversations commit to it
#: (MAXLEN ~): each carries its records and new messages (a reply: ~2 KB
#: and its text), so Redis holds about this many of them; a daemon further
#: behind than this counts what it missed (C{missed}, /healthz).
EVENTS_KEPT = 10_000
#: Events held while the driver loads (the stream does not wait).
MAX_HELD = 10_000
#: Own commits of unknown outcome remembered until their event is read.
MAX_UNKNOWN = 1_000
#: Seconds before conversations whose transition could not be taken are
#: read again from the store.
REREAD_AFTER = 1.0
#: Conversations read again at a time.
MAX_REREAD = 1_000
#: With several daemons deciding on one conversation at once, a commit
#: refused as stale is decided again this many times in all (the driver's
#: own default is for one daemon, where only a restart races it) ...
MAX_ATTEMPTS = 10
#: ... each after a pause of up to this many seconds times the attempts
#: so far, at random, so that two daemons racing fall out of step.
STALE_PAUSE = 0.005

_log = Logger(namespace="wsdaemon.conversations")


class FeedLink(Protocol):
    """What the feed needs of the broker's link (L{wsdaemon.broker.link.RedisLink})."""

    daemon_id: str
    #: The broker's key prefix.
    prefix: str

    def call(self, *args: Any) -> Deferred[Any]: ...

    def on_events(self, handler: Callable[[list[dict[str, Any]]], None]) -> None: ...

    def publish(self, event: dict[str, Any]) -> Deferred[Any]: ...


class ConversationFeed:
    """
    One daemon's side of the shared inbox: its commits go out with their
    news (L{commit}, the driver's way of committing), the others' come in
    from the link's stream reads into the driver.

    @param link: the broker's link (its daemon id names this daemon's events).
    @param store: the Redis store the driver commits to.
    @param clock: when conversations are read again, how long a stale
        commit waits for the stream.

    The driver is built with C{peers=feed} and then attached (L{attach}).
    """

    def __init__(self, link: FeedLink, store: RedisConversationStore,
                 clock: IReactorTime) -> None:
        self.daemon_id = link.daemon_id
        self._link = link
        self._store = store
        self._clock = clock
        self._driver: ConversationDriver | None = None
        self._tokens = itertools.count(1)
        #: Own commits awaiting their answer: their event if read meanwhile.
        self._inflight: dict[int, Change | None] = {}
        #: Own commits whose answer never came, until their event is read.
        self._unknown: OrderedDict[int, None] = OrderedDict()
        self._held: list[Change] = []
        self._overflowed = False
        self._reread: OrderedDict[str, None] = OrderedDict()
        self._reread_call: IDelayedCall | None = None
        #: Transitions of other daemons taken, and own events skipped (for tests, metrics).
        self.taken = 0
        self.skipped = 0
        #: Commits the stream skipped (trimmed while this daemon was behind).
        self.missed = 0
        #: The driver's retries of stale commits (L{Peers}).
        self.max_attempts = MAX_ATTEMPTS
        self.stale_pause = STALE_PAUSE
        self._backlog = Backlog(clock)
        #: Told each of this daemon's own team changes once carried out
        #: (L{wsdaemon.support.redis_team.TeamPresence.record}).
        self.on_team: Callable[[NotifyTeam], None] | None = None
        #: Whether an operator has a connection to this daemon (the hub's):
        #: one another daemon says went offline is made available again.
        self.holds: Callable[[str], bool] | None = None
        link.on_events(self._events)

    def attach(self, driver: ConversationDriver) -> None:
        self._driver = driver

    def ready(self) -> None:
        """The driver runs: take what was held meanwhile (older records are ignored)."""
        backlog = self._backlog
        for operator, count in self._store.loaded_team_raised.items():
            backlog.raised[operator] = max(backlog.raised.get(operator, 0), count)
        held, self._held = self._held, []
        for change in held:
            self._take(change)
        if self._overflowed:
            self._overflowed = False
            _log.warn("conversations: more than {limit} events came while loading; live "
                      "conversations are read again", limit=MAX_HELD)
            d = self._store.load_live()
            d.addCallback(lambda live: self._reread_keys(c.conversation_id for c in live))
            d.addErrback(lambda f: _log.failure("conversations: reading again failed", f))

    def stop(self) -> None:
        if self._reread_call is not None and self._reread_call.active():
            self._reread_call.cancel()

    # -- out -------------------------------------------------------------------

    def commit(self, transition: Transition) -> Deferred[None]:
        """Commit C{transition} with its news (the driver's committer)."""
        assert transition.commit is not None
        token = next(self._tokens)
        self._inflight[token] = None
        news = encode_news(transition, self.daemon_id, token)
        driver = self._driver
        if driver is not None:
            raised = raised_loads(driver.inbox.team, transition.team, self._backlog.raised)
            if raised:
                news["team_raise"] = raised  # checked and counted by the script
        d = self._store.commit(transition.commit, news)

        def landed(_: None) -> None:
            read = self._inflight.pop(token, None)
            if read is not None:
                self.skipped += 1  # its event came first: carried out here already
                self._backlog.took(read)
            self._tell_team(transition)

        def failed(failure: Failure) -> Failure:
            read = self._inflight.pop(token, None)
            if failure.check(BrokerOutcomeUnknown):
                if read is not None:
                    self._take(read)
                else:
                    self._unknown[token] = None
                    while len(self._unknown) > MAX_UNKNOWN:
                        self._unknown.popitem(last=False)
            return failure

        d.addCallbacks(landed, failed)
        return d

    def publish(self, transition: Transition) -> None:
        """
        Tell the other daemons a transition that stored nothing (typing, an
        operator's availability or capacity): best effort, after the fact;
        lost when Redis is away (nothing durable is).
        """
        self._tell_team(transition)
        news = encode_news(transition, self.daemon_id, 0)
        if not news["effects"]:
            return
        d = self._link.publish({**news, "type": "conversation_news"})
        d.addErrback(lambda f: _log.debug("conversations: news not published: {why}",
                                          why=f.getErrorMessage()))

    def _tell_team(self, transition: Transition) -> None:
        if self.on_team is None:
            return
        for effect in transition.effects:
            if isinstance(effect, NotifyTeam):
                self.on_team(effect)

    # -- in --------------------------------------------------------------------

    def _events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            try:
                change = decode_change(event)
            except (ValueError, KeyError, TypeError, IndexError):
                _log.warn("conversations: skipped a malformed event from {daemon}",
                          daemon=visible(str(event.get("daemon"))[:64]))
                continue
            if change is not None:
                self._route(change)
                # Only now: a stale commit waiting for it finds it pending.
                self._missed(self._backlog.saw(change))

    def _missed(self, count: int) -> None:
        if not count:
            return
        if not self.missed or self.missed // 1000 != (self.missed + count) // 1000:
            _log.warn("conversations: the event stream skipped {count} commit(s) (trimmed "
                      "while this daemon was behind; {total} in all): records are put right "
                      "by later changes, visitors get what they missed when they resume",
                      count=count, total=self.missed + count)
        self.missed += count

    def _route(self, change: Change) -> None:
        if change.daemon == self.daemon_id:
            if change.token in self._inflight:
                self._inflight[change.token] = change
                return
            if change.token not in self._unknown:
                self.skipped += 1
                self._backlog.took(change)  # its raises counted are in the view
                return
            del self._unknown[change.token]
        self._take(change)

    def _take(self, change: Change) -> None:
        driver = self._driver
        if driver is None or not driver.running:
            if len(self._held) < MAX_HELD:
                self._held.append(change)
            else:
                self._overflowed = True
            return
        self.taken += 1
        pending = self._backlog.pending(change)
        kept = self._still_here(change)
        d = driver.adopt(change.adopted, still_due=pending.claim)
        if kept:
            d.addCallback(lambda _: self._reassert(kept))

        def refused(failure: Failure) -> None:
            pending.claim()
            if driver.running:
                _log.warn("conversations: another daemon's commit waits ({why}); its "
                          "conversations are read again", why=failure.getErrorMessage())
                self._reread_keys(c.conversation_id for c in change.conversations)

        d.addErrback(refused)

    def _still_here(self, change: Change) -> list[tuple[str, Availability]]:
        """
        Operators another daemon says went offline (their last connection
        to it closed) who still have a connection here: with what they
        were before.
        """
        driver = self._driver
        if self.holds is None or driver is None:
            return []
        kept: list[tuple[str, Availability]] = []
        for effect in change.effects:
            if isinstance(effect, NotifyTeam) and effect.availability == Availability.OFFLINE \
                    and not (effect.joined or effect.left):
                before = driver.inbox.team.get(effect.operator)
                if before is not None and before.availability is not Availability.OFFLINE \
                        and self.holds(effect.operator):
                    kept.append((effect.operator, before.availability))
        return kept

    def _reassert(self, kept: list[tuple[str, Availability]]) -> None:
        driver = self._driver
        assert driver is not None
        for operator, availability in kept:
            if self.holds is not None and self.holds(operator):
                d = driver.submit(OperatorAvailability(operator, availability))
                d.addErrback(lambda f: _log.failure("conversations: {what} failed", f,
                                                    what="keeping an operator available"))

    def catch_up(self, keys: tuple[str, ...], wait: bool = True) -> Deferred[list[Adopted]]:
        """
        A commit on C{keys} came back stale: what the other daemons
        committed to them up to the store's version, claimed from their
        turns, in the order they committed it (the driver takes it, with
        its deliveries, before deciding again: a visitor here gets every
        message in order); then the stored records (what the stream did not
        bring in time, or trimmed: their deliveries come on the visitor's
        resume; never newer than that: what came since waits its turn).
        """
        return Deferred.fromCoroutine(self._catch_up(keys, wait))

    async def _catch_up(self, keys: tuple[str, ...], wait: bool) -> list[Adopted]:
        taken: list[Adopted] = []
        for key in keys:
            if key.startswith(TEAM):
                taken += await self._team_caught_up(key)
                continue
            stored = await self._store.load(key)
            if stored is None:
                continue
            if wait or self._backlog.following(key):
                await self._backlog.read_up_to(key, stored.version)
            taken += self._backlog.claim_up_to(key, stored.version)
            taken.append(Adopted((stored,)))
        return taken

    async def _team_caught_up(self, key: str) -> list[Adopted]:
        """
        A commit raising an operator's load was refused: others raised it
        meanwhile. Every change raising it up to the stored count, claimed
        in order (waiting for the stream to bring it, up to its bound, once
        the stream brought such changes before: at start the loaded records
        hold them).
        """
        operator = key[len(TEAM):]
        count = int(await self._link.call("HGET", f"{self._link.prefix}c:team:raised",
                                          operator) or 0)
        if self._backlog.following(key):
            await self._backlog.read_up_to(key, count)
        taken = self._backlog.claim_up_to(key, count)
        stored = await self._stored_capacity(operator)
        if stored is not None:
            taken.append(stored)
        return taken

    async def _stored_capacity(self, operator: str) -> Adopted | None:
        """
        The capacity the operator's team entry holds, when the view's
        differs (lowered on another daemon, its news not read yet: the
        commit script checked that one). Only the capacity: what the view
        holds of the operator's availability may be newer by the time it
        is taken. (Operators here see it when the news comes.)
        """
        driver = self._driver
        raw = await self._link.call("HGET", f"{self._link.prefix}c:team", operator)
        entry = team_entry(raw) if raw is not None else None
        if driver is None or entry is None:
            return None
        known = driver.inbox.team.get(operator)
        capacity = int(entry["capacity"])
        if known is None or capacity < 0 or known.capacity == capacity:
            return None
        return Adopted((), durable=False, capacities=((operator, capacity),))

    def _reread_keys(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._reread[key] = None
        if self._reread and (self._reread_call is None or not self._reread_call.active()):
            self._reread_call = self._clock.callLater(REREAD_AFTER, self._read_again)

    def _read_again(self) -> None:
        driver = self._driver
        if driver is None or not driver.running:
            return
        batch = list(itertools.islice(self._reread, MAX_REREAD))
        for key in batch:
            del self._reread[key]
        for key in batch:
            self._read_one(driver, key)
        if self._reread:
            self._reread_call = self._clock.callLater(REREAD_AFTER, self._read_again)

    def _read_one(self, driver: ConversationDriver, key: str) -> None:
        """C{key} from the store into the view; failing, read again later."""
        d: Deferred[Any] = self._store.load(key)
        d.addCallback(lambda found: None if found is None
                      else driver.adopt(Adopted((found,))))

        def again(_: Failure) -> None:
            if driver.running:
                self._reread_keys([key])

        d.addErrback(again)
