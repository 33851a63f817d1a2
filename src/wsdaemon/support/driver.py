"""
The conversation driver: runs the pure core (L{wsdaemon.conversations}) on
a store and a clock, and carries out what it decides.

For each event: decide on the in-memory view (L{Inbox}), write the
transition's L{Commit} to the store, and only once it has landed move the
view (C{Inbox.commit}) and carry out the other effects in order: timers on
the injected clock, then deliveries, notices and notifications through the
ports (L{IVisitorPort}, L{IOperatorPort}, L{IConversationMeasures}). A
commit that fails leaves everything as it was: the view, the timers, and
nobody told anything; the event's caller gets the failure (a visitor's
message is not confirmed, so its client sends it again).

Ordering (L{Lanes}): one conversation's events are decided one at a time,
in the order they came; other conversations' events proceed meanwhile. A
transition that reaches beyond its own conversation (a new or resolved
one, which the caps count; the team's loads; routing moving others) is
decided again alone, once nothing else is in flight, so no two commits in
flight ever rest on the same record. Team events always run alone.

Timers come from state: at start every live conversation's due timers are
set (after a restart too), and after every commit those of the changed
conversations are derived again; one that fires late or for a moved
conversation is a no-op in the core.

Memory: live (open, snoozed) conversations stay in the view; a resolved
one is dropped once its lane is empty and read again from the store when
an event names it.

Several daemons sharing the store (L{Peers}, with Redis): each commit goes
out with what the others carry out for their own connections, and theirs
come in through L{ConversationDriver.adopt} in the conversation's lane. A
commit refused as stale first takes what the others committed (in order,
with its deliveries), then decides again.

In progress: not yet serving routes (docs/conversations.md, section 6).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.conversations.core import decide
from wsdaemon.conversations.effects import (
    AnnounceAvailability,
    CancelTimer,
    Commit,
    ConfirmVisitorMessage,
    DeliverMessage,
    Effect,
    Measure,
    NotifyOperators,
    NotifyTeam,
    RefuseVisitor,
    SetTimer,
    SignalVisitor,
)
from wsdaemon.conversations.errors import StaleConversation
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
    Transfer,
    VisitorDelivered,
    VisitorMessage,
    VisitorMissed,
    VisitorRead,
    VisitorTyping,
)
from wsdaemon.conversations.inbox import Inbox
from wsdaemon.conversations.model import (
    Status,
    conversation_id_for,
)
from wsdaemon.conversations.transition import Transition
from wsdaemon.errors import BrokerUnavailable
from wsdaemon.support.adoption import Adoption
from wsdaemon.support.lanes import (
    DEFAULT_MAX_PER_CONVERSATION,
    DEFAULT_MAX_TOTAL,
    LaneFull,
    Lanes,
    Turn,
)
from wsdaemon.support.peers import Adopted, Peers, adopted_team
from wsdaemon.support.ports import (
    IConversationMeasures,
    IConversationStore,
    IOperatorPort,
    IVisitorPort,
)
from wsdaemon.support.timers import DueTimers

__all__ = ["MAX_ATTEMPTS", "TIMER_RETRY", "ConversationDriver", "DriverStopped",
           "lane_of"]

#: A timer whose event failed (the store down, its lane full) fires again
#: this many seconds later: what was due is still due.
TIMER_RETRY = 5.0

#: A commit the store refuses as stale is decided again on what the store
#: holds, this many times in all, then the caller gets the refusal.
MAX_ATTEMPTS = 3


_VISITOR_EVENTS = (VisitorMessage, VisitorDelivered, VisitorMissed, VisitorRead, VisitorTyping,
                   LeaveContact, BotReply, BotPending, Handoff, Identify)
_CONVERSATION_EVENTS = (OperatorReply, AddNote, Assign, Transfer, Resolve, Reopen, Snooze,
                        OperatorRead, OperatorTyping, SetLabels)

log = Logger()


def _not_started(why: BaseException) -> Exception:
    """
    What an event held while the store opened fails with when it could not
    open: a Redis outage as the outage (never sent: not stored; the visitor
    is told to send it again and nothing is logged per message, as for any
    message in an outage), anything else as L{DriverStopped}.
    """
    if isinstance(why, BrokerUnavailable):
        return BrokerUnavailable(f"the conversations could not be loaded yet: {why}")
    return DriverStopped("the conversation store could not be opened")


class DriverStopped(Exception):  # noqa: N818 - says what happened
    """The driver is not running (not started yet, or stopping): the event was not taken."""


def lane_of(event: Event) -> str | None:
    """The conversation an event is about, or None for the team's lane."""
    if isinstance(event, _VISITOR_EVENTS):
        return conversation_id_for(event.route, event.visitor)
    if isinstance(event, _CONVERSATION_EVENTS):
        return event.conversation_id
    if isinstance(event, TimerFired):
        return event.timer.conversation_id or None
    assert isinstance(event, OperatorAvailability | OperatorCapacity | RosterChanged)
    return None


class ConversationDriver:
    """
    @ivar inbox: the committed view (what the store holds of live conversations).
    @ivar timers: the pending timers.
    """

    def __init__(self, store: IConversationStore, inbox: Inbox, clock: IReactorTime,
                 visitors: IVisitorPort, operators: IOperatorPort,
                 measures: IConversationMeasures, *,
                 max_per_conversation: int = DEFAULT_MAX_PER_CONVERSATION,
                 max_total: int = DEFAULT_MAX_TOTAL, peers: Peers | None = None,
                 roster: Iterable[str] = ()) -> None:
        for value, interface in ((store, IConversationStore), (visitors, IVisitorPort),
                                 (operators, IOperatorPort), (measures, IConversationMeasures),
                                 (clock, IReactorTime)):
            if not interface.providedBy(value):
                raise TypeError(f"{value!r} does not provide {interface.__name__}")
        self.store = store
        self.inbox = inbox
        self.settings = inbox.settings
        self._clock = clock
        self._visitors = visitors
        self._operators = operators
        self._measures = measures
        self._lanes = Lanes(max_per_conversation, max_total)
        self.timers = DueTimers(clock, self._timer_fired)
        self.running = False
        #: Events submitted while the store opens (the daemon listens from
        #: the start): run in order once it is open, failed if it cannot be.
        self._early: list[tuple[Event, Deferred[Transition]]] | None = None
        #: Who waits for the live conversations (an operator's greeting):
        #: one per connection waiting, so as many as the channel admits.
        self._loaded: list[Deferred[None]] = []
        self._stopped = False
        #: Why the last start could not load the conversations, while Redis
        #: cannot be used and the component tries again: events meanwhile
        #: fail as the outage, not as a stopped driver.
        self._not_loaded: BrokerUnavailable | None = None
        #: Records the view takes without deciding them.
        self.adoption = Adoption(self)
        #: The other daemons sharing the store, if any.
        self._peers = peers
        self.max_attempts = MAX_ATTEMPTS if peers is None else peers.max_attempts
        #: The routes whose conversations are served here (as their
        #: strategies are built): where a visitor's other conversations are.
        self.routes: set[str] = set()
        #: Conversation -> the highest seq a plain connection here took
        #: whose record (VisitorDelivered) has not landed yet: a catch-up
        #: starts after it too. One entry per record in flight.
        self.taken: dict[str, int] = {}
        #: The configured operators: team members (offline) from the start,
        #: listed even to an operator connected while the store opens.
        self.roster = tuple(roster)
        inbox.enrol(self.roster)

    # -- life ----------------------------------------------------------------

    async def _start(self) -> None:
        self._early = []
        try:
            await self.store.open()
            live = await self.store.load_live()
        except BaseException as why:
            self._not_loaded = why if isinstance(why, BrokerUnavailable) else None
            early, self._early = self._early, None
            for _, waiting in early:
                waiting.errback(_not_started(why))
            self._tell_loaded()
            raise
        early, self._early = self._early, None
        self._not_loaded = None
        if self._stopped:
            for _, waiting in early:
                waiting.errback(DriverStopped("conversations are stopping"))
            self._tell_loaded()
            return
        self.inbox.load(live)
        self.inbox.recount()
        for conversation in live:
            self.timers.derive(conversation, self.settings)
        self.running = True
        log.info("conversations: {count} live conversations loaded", count=len(live))
        self._tell_loaded()
        for event, waiting in early:
            self.submit(event).chainDeferred(waiting)

    def when_loaded(self) -> Deferred[None]:
        """
        The daemon listens while the store opens (a queue's take-over,
        100,000 conversations to load): what shows the inbox waits for it.

        @return: a Deferred firing with None once the live conversations are
            in the inbox (at once if they are), or once loading them failed
            or was given up (the caller goes on with what the inbox holds).
        """
        if self.running or self._stopped:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._loaded.append(d)
        return d

    def _tell_loaded(self) -> None:
        waiting, self._loaded = self._loaded, []
        for d in waiting:
            d.callback(None)

    def start(self) -> Deferred[None]:
        """
        Open the store, load the live conversations and set their timers.
        The configured operators (C{roster}, members from construction) get
        the loads of their loaded conversations; every operator is offline
        until it says otherwise.

        @return: a Deferred firing with None once events are taken.
        """
        return Deferred.fromCoroutine(self._start())

    async def _stop(self) -> None:
        self._stopped = True
        self.running = False
        await self._lanes.idle()
        self.timers.cancel_all()
        await self.store.close()

    def stop(self) -> Deferred[None]:
        """
        Take no more events, let those taken finish, cancel the timers and
        close the store.

        @return: a Deferred firing with None once the store is closed.
        """
        return Deferred.fromCoroutine(self._stop())

    # -- events --------------------------------------------------------------

    def submit(self, event: Event) -> Deferred[Transition]:
        """
        Decide C{event} in its conversation's turn, commit, carry it out.

        @return: a Deferred firing with the L{Transition} once committed and
            carried out; failing with L{InvalidMove} (nothing changed), the
            store's error (nothing changed, nobody told), L{LaneFull} (too
            many events wait: refused at once) or L{DriverStopped}.
        """
        if not self.running:
            if self._early is None:
                return fail(_not_started(self._not_loaded) if self._not_loaded is not None
                            and not self._stopped
                            else DriverStopped("conversations are not running"))
            # Starting: held until the store is open, as many as lanes hold.
            if len(self._early) >= self._lanes.max_total:
                return fail(LaneFull(lane_of(event), self._lanes.max_total, "max_total"))
            waiting: Deferred[Transition] = Deferred()
            self._early.append((event, waiting))
            return waiting
        return self._lanes.submit(
            lane_of(event), lambda turn: Deferred.fromCoroutine(self._run(event, turn)))

    def waiting(self, conversation_id: str | None) -> int:
        """Events of a conversation (None: the team's) waiting or running."""
        return self._lanes.waiting(conversation_id)

    async def _run(self, event: Event, turn: Turn) -> Transition:
        try:
            return await self._decide_and_commit(event, turn)
        finally:
            # A resolved conversation read for this event leaves memory again
            # (unless more of its events wait), whatever the event came to.
            if turn.key is not None and self._lanes.waiting(turn.key) <= 1:
                self.adoption.forget(turn.key)

    async def _decide_and_commit(self, event: Event, turn: Turn) -> Transition:
        attempt = 1
        while True:
            await self._load(turn)
            transition = decide(self.inbox, event, self._clock.seconds(), self.settings)
            if not turn.alone and not self._stays_in_lane(turn.key, transition):
                await turn.wait_alone()
                continue
            if transition.commit is not None:
                try:
                    await (self.store.commit(transition.commit) if self._peers is None
                           else self._peers.commit(transition))
                except StaleConversation as stale:
                    if attempt >= self.max_attempts:
                        raise
                    await self._stale(stale.conversation_ids, attempt, turn)
                    attempt += 1
                    continue
            self.inbox.commit(transition)
            self._carry_out(transition)
            if transition.commit is None and self._peers is not None:
                self._peers.publish(transition)
            return transition

    async def _stale(self, keys: tuple[str, ...], attempt: int, turn: Turn) -> None:
        """
        Another writer moved C{keys} on: read them again (alone: the records
        read may move the team's loads). With other daemons, what they
        committed is taken as they told it, in order (its deliveries go out
        before anything decided on it), alone only when it moves the team;
        from the second retry on after a pause at random, so that two
        daemons racing fall out of step.
        """
        if self._peers is None:
            await turn.wait_alone()
            await self._reload(keys)
            return
        if attempt > 1:
            pause = random.random() * self._peers.stale_pause * (attempt - 1)  # noqa: S311
            await deferLater(self._clock, pause, lambda: None)
        await self._caught_up(keys, turn, wait=True)

    async def _caught_up(self, keys: tuple[str, ...], turn: Turn, wait: bool) -> None:
        """What the other daemons committed to C{keys}, taken in order (L{Peers.catch_up})."""
        assert self._peers is not None
        for adopted in await self._peers.catch_up(keys, wait):
            if not turn.alone and adopted_team(self.inbox, adopted) != self.inbox.team:
                await turn.wait_alone()
            self.adoption.take_adopted(adopted)

    async def _load(self, turn: Turn) -> None:
        """A conversation the view dropped (resolved) is read again from the store."""
        key = turn.key
        if key is None or self.inbox.conversation(key) is not None:
            return
        if self._peers is not None:
            # What the others committed to it and this daemon has read but
            # not taken yet goes first, in order (its deliveries too).
            await self._caught_up((key,), turn, wait=False)
            return
        found = await self.store.load(key)
        if found is not None and self.inbox.team.accounted(None, found) != self.inbox.team:
            # Open with an assignee: another daemon reopened it since (with
            # Redis). Its load counts, and the team changes alone.
            await turn.wait_alone()
        if found is not None and self.inbox.conversation(key) is None:
            self.adoption.take_stored(found)

    async def _reload(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            found = await self.store.load(key)
            if found is not None:
                self.adoption.take_stored(found)

    def _stays_in_lane(self, key: str | None, transition: Transition) -> bool:
        """
        Whether the transition may commit while other conversations' commits
        are in flight: it changes only its own conversation, which existed
        and neither opens nor resolves (the caps count those), and not the
        team (loads, the round's place).
        """
        if key is None or transition.team != self.inbox.team:
            return False
        before = self.inbox.conversation(key)
        for after in transition.conversations:
            if after.conversation_id != key or before is None:
                return False
            if (before.status is Status.RESOLVED) != (after.status is Status.RESOLVED):
                return False
        return True

    # -- effects -------------------------------------------------------------

    def _carry_out(self, transition: Transition) -> None:
        """Everything after the commit, in order; a port that fails does not stop the rest."""
        for effect in transition.effects:
            try:
                self.carry_out_effect(effect)
            except Exception:
                log.failure("conversations: carrying out {effect_type} failed",
                            effect_type=type(effect).__name__)
        for conversation in transition.conversations:
            self.timers.derive(conversation, self.settings)
            key = conversation.conversation_id
            # Only this job's own lane may be busy: a dropped one is read again.
            if conversation.status is Status.RESOLVED and self._lanes.waiting(key) <= 1:
                self.adoption.forget(key)

    def carry_out_effect(self, effect: Effect) -> None:
        """One effect for a port or the timers (the commit is done already)."""
        if isinstance(effect, Commit):
            return
        if isinstance(effect, SetTimer):
            self.timers.set(effect.timer, effect.at)
        elif isinstance(effect, CancelTimer):
            self.timers.cancel(effect.timer)
        elif isinstance(effect, DeliverMessage):
            if self._visitors.deliver(effect):
                key = effect.message.conversation_id
                self.taken[key] = max(self.taken.get(key, 0), effect.message.seq)
                self._follow(VisitorDelivered(effect.route, effect.visitor, effect.message.seq))
        elif isinstance(effect, ConfirmVisitorMessage | SignalVisitor | RefuseVisitor):
            self._visitors.tell(effect)
        elif isinstance(effect, AnnounceAvailability):
            self._visitors.announce(effect)
        elif isinstance(effect, NotifyOperators):
            self._operators.notify(effect)
        elif isinstance(effect, NotifyTeam):
            self._operators.team_changed(effect)
        elif isinstance(effect, Measure):
            self._measures.observe(effect)

    def _follow(self, event: Event) -> Deferred[Transition | None]:
        """
        An event the driver makes itself (a delivery, a timer): its failure
        is logged. A timer is set again C{TIMER_RETRY} later; so is a plain
        delivery's record while Redis is away or its lane is full (else the
        visitor's next connection would be written the message again).
        """
        if not self.running:
            return succeed(None)

        def recorded(result: Transition) -> Transition:
            if isinstance(event, VisitorDelivered):
                self._recorded(event)
            return result

        def failed(failure: Failure) -> None:
            # Redis away (the link logs an outage once), or the lane full
            # (a visitor sending faster than its messages are decided):
            # not done now, done later; anything else is a failure.
            later = failure.check(BrokerUnavailable, LaneFull) is not None
            if later:
                log.debug("conversations: {event_type} not done now: {why}",
                          event_type=type(event).__name__, why=failure.getErrorMessage())
            else:
                log.failure("conversations: {event_type} failed", failure,
                            event_type=type(event).__name__)
            if isinstance(event, TimerFired) and self.running:
                self.timers.set(event.timer, self._clock.seconds() + TIMER_RETRY)
            elif isinstance(event, VisitorDelivered) and later and self.running:
                self._clock.callLater(TIMER_RETRY, self._follow, event)
            elif isinstance(event, VisitorDelivered):
                self._recorded(event)  # not tried again

        return self.submit(event).addCallbacks(recorded, failed)

    def _recorded(self, event: VisitorDelivered) -> None:
        key = conversation_id_for(event.route, event.visitor)
        if self.taken.get(key, 0) <= event.upto:
            self.taken.pop(key, None)

    def _timer_fired(self, timer: Timer) -> None:
        self._follow(TimerFired(timer))

    # -- what other daemons committed (Redis) --------------------------------

    def adopt(self, adopted: Adopted,
              still_due: Callable[[], bool] = lambda: True) -> Deferred[None]:
        """
        Take a transition another daemon committed (L{wsdaemon.support.redis_feed}):
        in its conversation's lane (several: the team's), after the events
        before it;
        its records that are newer than the view's replace them (the
        team's loads move with them), and its effects for connections are
        carried out here, for this daemon's visitors and operators. Its
        timers are this daemon's own, derived from the records (every
        daemon arms them; the first to commit what is due wins, the others
        come back stale and find nothing due); its measures were taken
        where it was decided.

        @param still_due: asked when its turn comes: False, it was taken
            meanwhile (L{Adoption.take_adopted}) and nothing is done.

        A committed transition overtaken here (every record it brings is
        here at its version or newer already: read from the store) is not
        carried out: its deliveries would come out of order; visitors get
        its messages on resume.
        @return: a Deferred firing with None once carried out, or failing
            with L{LaneFull} (nothing of it taken) or L{DriverStopped}.
        """
        if not self.running:
            return fail(DriverStopped("conversations are not running"))
        return self._lanes.submit(adopted.lane, lambda turn: Deferred.fromCoroutine(
            self._adopt(adopted, still_due, turn)))

    async def _adopt(self, adopted: Adopted, still_due: Callable[[], bool], turn: Turn) -> None:
        while not turn.alone and adopted_team(self.inbox, adopted) != self.inbox.team:
            await turn.wait_alone()
        if still_due():
            self.adoption.take_adopted(adopted)
