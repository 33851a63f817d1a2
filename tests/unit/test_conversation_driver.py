"""
The conversation driver on a memory store and a L{Clock}: commit first, and
only then the view moves and the effects are carried out, in order; a
failed commit moves and tells nothing; one conversation at a time, others
meanwhile; bounded lanes; timers from state after a restart; stale timers
do nothing. The commit-failure path once more on SQLite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from tests.driver_bench import ROUTE, Bench, GatedStore, RecordingPorts, cid
from wsdaemon.conversations import (
    AddNote,
    Availability,
    Commit,
    ConfirmVisitorMessage,
    ConversationSettings,
    DeliverMessage,
    Inbox,
    InvalidMove,
    Measure,
    NotifyOperators,
    NotifyTeam,
    OperatorAvailability,
    OperatorReply,
    Resolve,
    SetTimer,
    Snooze,
    StaleConversation,
    Status,
    Timer,
    TimerFired,
    TimerKind,
    VisitorMessage,
)
from wsdaemon.errors import BrokerOutcomeUnknown, BrokerUnavailable
from wsdaemon.support.driver import TIMER_RETRY, ConversationDriver, DriverStopped, lane_of
from wsdaemon.support.lanes import LaneFull
from wsdaemon.support.memory import MemoryConversationStore, stored_form
from wsdaemon.support.ports import IConversationMeasures, IOperatorPort, IVisitorPort
from wsdaemon.support.store import SQLiteConversationStore


def hello(visitor: str, text: str = "Hello?", client_id: str | None = None) -> VisitorMessage:
    return VisitorMessage(ROUTE, visitor, text, client_id)


def failure_of(outcome: object) -> BaseException:
    result = getattr(outcome, "result", None)
    assert isinstance(result, Failure), f"expected a failure, got {result!r}"
    return result.value


def desk(**settings: object) -> Bench:
    """A bench with alice online and conversations for v1 and v2, all committed."""
    bench = Bench(ConversationSettings(**settings))  # type: ignore[arg-type]
    bench.submit(OperatorAvailability("alice", Availability.ONLINE))
    bench.submit(hello("v1"))
    bench.submit(hello("v2"))
    bench.ports.said.clear()
    return bench


def test_ports_and_construction() -> None:
    """The recording ports provide the interfaces; a collaborator that does not is refused."""
    bench = Bench()
    for interface in (IVisitorPort, IOperatorPort, IConversationMeasures):
        assert verifyObject(interface, bench.ports)
    with pytest.raises(TypeError, match="IConversationStore"):
        ConversationDriver(object(), Inbox(bench.settings), bench.clock,  # type: ignore[arg-type]
                           bench.ports, bench.ports, bench.ports)


def test_commit_then_effects_in_order() -> None:
    """Nothing moves or is said until the commit lands; then the effects go out in order."""
    bench = Bench(ConversationSettings(fallback_after=20))
    bench.store.gated = True
    outcome = bench.submit(hello("v1", client_id="c-1"))
    assert not outcome.called
    assert bench.ports.said == []
    assert bench.conversation("v1") is None
    assert bench.driver.timers.pending() == {}
    bench.store.land()
    transition = outcome.result
    assert isinstance(transition.effects[0], Commit)
    told = [e for e in transition.effects if not isinstance(e, Commit | SetTimer)]
    assert bench.ports.said == told
    assert [type(e) for e in told][:1] == [ConfirmVisitorMessage]
    assert bench.ports.of(DeliverMessage) and not bench.ports.unstored
    assert bench.conversation("v1") == transition.conversations[0]
    assert bench.stored("v1").version == 1
    assert bench.driver.timers.pending() == {Timer(TimerKind.FALLBACK, cid("v1")): 20.0}


def test_failed_commit_moves_and_tells_nothing() -> None:
    """A store error reaches the caller; the view, the timers and the ports are as before."""
    bench = desk(fallback_after=20)
    before = bench.conversation("v1")
    timers = bench.driver.timers.pending()
    bench.store.error = OSError("disk I/O error")
    reply = bench.submit(OperatorReply(cid("v1"), "alice", "Hi!"))
    assert isinstance(failure_of(reply), OSError)
    new = bench.submit(hello("v3", client_id="c-9"))
    assert isinstance(failure_of(new), OSError)
    assert bench.ports.said == []
    assert bench.conversation("v1") == before
    assert bench.conversation("v3") is None
    assert bench.driver.timers.pending() == timers
    # The visitor resends with the same id once the store is back: stored once.
    bench.store.error = None
    again = bench.submit(hello("v3", client_id="c-9"))
    assert again.result.commit is not None
    assert bench.stored("v3").last_seq >= 1


def test_failed_commit_in_flight() -> None:
    """A commit that fails after a while leaves the next event of the lane to go ahead."""
    bench = desk()
    bench.store.gated = True
    first = bench.submit(AddNote(cid("v1"), "alice", "one"))
    second = bench.submit(AddNote(cid("v1"), "alice", "two"))
    bench.store.refuse(0, OSError("disk full"))
    assert isinstance(failure_of(first), OSError)
    assert bench.ports.of(NotifyOperators) == []
    bench.store.land()
    assert second.result.commit.notes[0].body == "two"
    assert bench.stored("v1").note_count == 1


def test_one_conversation_at_a_time_others_meanwhile() -> None:
    """A conversation's second event waits for its first commit; another conversation's does not."""
    bench = desk()
    bench.store.gated = True
    first = bench.submit(AddNote(cid("v1"), "alice", "first"))
    second = bench.submit(AddNote(cid("v1"), "alice", "second"))
    other = bench.submit(AddNote(cid("v2"), "alice", "other"))
    assert bench.store.held_for(cid("v1")) == 1
    assert bench.store.held_for(cid("v2")) == 1
    assert bench.driver.waiting(cid("v1")) == 2
    bench.store.land(1)  # v2's lands first
    assert other.called and not first.called and not second.called
    assert [e.note.body for e in bench.ports.of(NotifyOperators)] == ["other"]
    bench.store.land(0)
    assert first.called and not second.called
    bench.store.land(0)
    assert [e.note.body for e in bench.ports.of(NotifyOperators)] == ["other", "first", "second"]
    assert [n.note_id for n in (first.result.commit.notes[0], second.result.commit.notes[0])] \
        == [1, 2]
    assert bench.store.overlaps == []


def test_team_event_waits_for_all_and_holds_later_ones() -> None:
    """A team event runs once every commit before it landed, and events after it wait for it."""
    bench = desk()
    bench.store.gated = True
    note = bench.submit(AddNote(cid("v1"), "alice", "before"))
    team = bench.submit(OperatorAvailability("bob", Availability.ONLINE))
    later = bench.submit(AddNote(cid("v2"), "alice", "after"))
    assert not team.called and bench.store.held_for(cid("v2")) == 0
    bench.store.land()
    assert note.called and team.called
    assert [type(e) for e in bench.ports.said] == [NotifyOperators, NotifyTeam]
    bench.store.land()
    assert later.called
    assert bench.store.overlaps == []


def test_reaching_beyond_its_conversation_waits_alone() -> None:
    """A new conversation (the caps count it) is decided again once other commits landed."""
    bench = desk(max_open_total=3)
    bench.store.gated = True
    note = bench.submit(AddNote(cid("v1"), "alice", "psst"))
    opened = bench.submit(hello("v3"))
    refused = bench.submit(hello("v4"))
    assert len(bench.store.held) == 1
    bench.store.land()
    assert note.called and not opened.called
    bench.store.land()
    assert opened.result.conversations[0].visitor == "v3"
    assert refused.called and refused.result.commit is None  # the inbox is full now
    assert bench.stored("v4") is None


def test_lanes_are_bounded() -> None:
    """Past its bound, a conversation's lane (or all lanes) refuses at once, saying why."""
    bench = Bench(ConversationSettings(fallback_after=0), max_per_conversation=2, max_total=3)
    bench.submit(OperatorAvailability("alice", Availability.ONLINE))
    bench.submit(hello("v1"))
    bench.submit(hello("v2"))
    bench.store.gated = True
    accepted = [bench.submit(AddNote(cid("v1"), "alice", str(n))) for n in range(2)]
    over = bench.submit(AddNote(cid("v1"), "alice", "over"))
    error = failure_of(over)
    assert isinstance(error, LaneFull)
    assert str(error) == (f"conversation {cid('v1')} already has 2 events waiting "
                          "(max_per_conversation): refused")
    bench.submit(AddNote(cid("v2"), "alice", "third"))
    total = failure_of(bench.submit(AddNote(cid("v2"), "alice", "fourth")))
    assert str(total) == "the inbox already has 3 events waiting (max_total): refused"
    bench.store.land_all()
    bench.store.land_all()
    assert all(a.called and not isinstance(a.result, Failure) for a in accepted)
    assert bench.stored("v1").note_count == 2
    assert bench.driver.waiting(cid("v1")) == 0


def test_timers_rebuilt_after_restart() -> None:
    """A new driver on the same store sets every live conversation's due timers; they fire."""
    first = Bench(ConversationSettings(fallback_after=20))
    first.submit(OperatorAvailability("alice", Availability.ONLINE))
    first.submit(hello("v1"))
    first.submit(hello("v2"))
    first.submit(Snooze(cid("v2"), "alice", 100.0))
    first.driver.stop()
    clock = Clock()
    clock.advance(50)
    second = Bench(first.settings, store=first.store, clock=clock)
    assert second.driver.timers.pending() == {
        Timer(TimerKind.FALLBACK, cid("v1")): 20.0, Timer(TimerKind.WAKE, cid("v2")): 100.0}
    clock.advance(0)  # overdue: fires at once
    fallback = second.ports.of(DeliverMessage)
    assert [d.message.body for d in fallback] == [first.settings.fallback_message]
    assert second.stored("v1").fallback_sent
    clock.advance(50)
    assert second.stored("v2").status is Status.OPEN
    assert second.driver.timers.pending() == {}


def test_timers_follow_state_and_stale_ones_do_nothing() -> None:
    """An answer cancels the fallback; a timer that fires anyway changes and says nothing."""
    bench = desk(fallback_after=20)
    key = cid("v1")
    assert Timer(TimerKind.FALLBACK, key) in bench.driver.timers.pending()
    bench.clock.advance(10)
    bench.submit(OperatorReply(key, "alice", "Hi!"))
    assert Timer(TimerKind.FALLBACK, key) not in bench.driver.timers.pending()
    bench.ports.said.clear()
    stale = bench.submit(TimerFired(Timer(TimerKind.FALLBACK, key)))
    assert stale.result.commit is None and stale.result.effects == ()
    assert bench.ports.said == []


def test_a_timer_that_could_not_commit_fires_again() -> None:
    """A due timer whose commit failed is set again (TIMER_RETRY later): the fallback still goes."""
    bench = desk(fallback_after=20)
    bench.store.error = OSError("disk I/O error")
    bench.clock.advance(20)
    assert bench.ports.of(DeliverMessage) == []
    assert bench.driver.timers.pending() == {
        Timer(TimerKind.FALLBACK, cid(v)): 20 + TIMER_RETRY for v in ("v1", "v2")}
    bench.store.error = None
    bench.clock.advance(TIMER_RETRY)
    assert len(bench.ports.of(DeliverMessage)) == 2
    assert bench.stored("v1").fallback_sent


def test_resolved_conversations_leave_memory_and_come_back() -> None:
    """A resolved conversation is dropped from the view; the visitor's next message reopens it."""
    bench = desk()
    bench.submit(Resolve(cid("v1"), "alice"))
    assert bench.conversation("v1") is None
    assert bench.stored("v1").status is Status.RESOLVED
    stale = bench.submit(TimerFired(Timer(TimerKind.FALLBACK, cid("v1"))))
    assert stale.result.effects == ()
    assert bench.conversation("v1") is None  # read for the timer, dropped again
    reopened = bench.submit(hello("v1", "Me again"))
    assert reopened.result.conversations[0].status is Status.OPEN
    assert bench.stored("v1").version == reopened.result.conversations[0].version


def test_plain_text_delivery_is_recorded() -> None:
    """A delivery a plain-text connection took is committed as delivered."""
    bench = desk()
    bench.ports.plain = True
    bench.submit(OperatorReply(cid("v1"), "alice", "Hi!"))
    stored = bench.stored("v1")
    assert stored.delivered_upto == stored.last_seq


def test_a_failing_port_stops_nothing_else() -> None:
    """A port that raises is logged; the commit stands and the other effects go out."""
    bench = desk()
    bench.ports.broken = DeliverMessage
    outcome = bench.submit(OperatorReply(cid("v1"), "alice", "Hi!"))
    assert outcome.result.commit is not None
    assert bench.ports.of(NotifyOperators) and bench.ports.of(Measure)
    assert bench.stored("v1").first_response_at is not None


def test_stale_commit_decided_again() -> None:
    """Another writer got there first: the driver reads the conversation again and decides again."""
    bench = desk()
    other = Inbox(bench.settings, bench.driver.inbox.team)
    other.load(bench.store.inner.conversations.values())
    theirs = other.decide(AddNote(cid("v1"), "alice", "theirs"), 0.0)
    assert theirs.commit is not None
    bench.store.inner.commit(theirs.commit)
    ours = bench.submit(AddNote(cid("v1"), "alice", "ours"))
    assert ours.result.commit.notes[0].note_id == 2
    assert bench.stored("v1").note_count == 2


def test_stale_again_and_again_fails() -> None:
    """A store that keeps refusing as stale: the caller gets the refusal after three tries."""
    bench = desk()
    bench.store.error = StaleConversation((cid("v1"),))
    error = failure_of(bench.submit(AddNote(cid("v1"), "alice", "x")))
    assert isinstance(error, StaleConversation)


def test_invalid_move_and_stopping() -> None:
    """A move the core refuses fails with its reason; a stopped driver takes nothing."""
    bench = desk()
    error = failure_of(bench.submit(Resolve("nope", "alice")))
    assert isinstance(error, InvalidMove)
    stopped = bench.driver.stop()
    assert stopped.called and bench.store.closed == 1
    assert isinstance(failure_of(bench.submit(hello("v1"))), DriverStopped)


def test_lane_of() -> None:
    """Visitor and operator events go to their conversation's lane, team events to the team's."""
    assert lane_of(hello("v1")) == cid("v1")
    assert lane_of(AddNote("c", "alice", "x")) == "c"
    assert lane_of(TimerFired(Timer(TimerKind.ROUTE))) is None
    assert lane_of(OperatorAvailability("alice", Availability.AWAY)) is None



@pytest_twisted.inlineCallbacks
def test_sqlite_commit_failure_moves_and_tells_nothing(tmp_path: Path) -> Generator[Any, Any, None]:
    """On SQLite: a commit the database refuses reaches the caller; no row, view or port moved."""
    from twisted.internet import reactor

    path = tmp_path / "queue.sqlite3"
    store = SQLiteConversationStore(path, reactor)
    ports = RecordingPorts(GatedStore())
    settings = ConversationSettings(fallback_after=0)
    driver = ConversationDriver(store, Inbox(settings), reactor, ports, ports, ports)
    yield driver.start()
    try:
        yield driver.submit(OperatorAvailability("alice", Availability.ONLINE))
        yield driver.submit(hello("v1"))
        before = driver.inbox.conversation(cid("v1"))
        ports.said.clear()
        with sqlite3.connect(path) as db:
            db.execute("CREATE TRIGGER broken BEFORE UPDATE ON conversations "
                       "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
        db.close()
        refused: list[Failure] = []
        yield driver.submit(OperatorReply(cid("v1"), "alice", "Hi!")).addErrback(refused.append)
        assert isinstance(refused[0].value, sqlite3.DatabaseError)
        assert ports.said == []
        assert driver.inbox.conversation(cid("v1")) == before
        assert (yield store.load(cid("v1"))) == stored_form(before)
        assert [m.seq for m in (yield store.messages(cid("v1")))] == \
            list(range(1, before.last_seq + 1))
        with sqlite3.connect(path) as db:
            db.execute("DROP TRIGGER broken")
        db.close()
        answered = yield driver.submit(OperatorReply(cid("v1"), "alice", "Hi!"))
        assert answered.commit.messages[0].seq == before.last_seq + 1
        assert ports.of(DeliverMessage)
    finally:
        yield driver.stop()


class SlowOpening(MemoryConversationStore):
    """A memory store whose open() lands (or fails) when the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.opening: Deferred[None] = Deferred()

    def open(self) -> Deferred[None]:
        return self.opening


def slow_driver(**bounds: int) -> tuple[ConversationDriver, SlowOpening, Deferred[None]]:
    store = SlowOpening()
    ports = RecordingPorts(store)  # type: ignore[arg-type]
    driver = ConversationDriver(store, Inbox(ConversationSettings(fallback_after=0)), Clock(),
                                ports, ports, ports, **bounds)
    return driver, store, driver.start()


def test_events_before_the_store_is_open_wait_for_it() -> None:
    """The daemon listens while the store opens: a visitor's message sent
    then is held, and decided in order once the store is open."""
    driver, store, started = slow_driver()
    first = driver.submit(hello("v1", "one"))
    second = driver.submit(hello("v1", "two"))
    assert not first.called and not second.called
    store.opening.callback(None)
    assert started.called
    seqs = [outcome.result.conversations[0].last_seq for outcome in (first, second)]
    assert seqs[0] < seqs[1]
    stored = store.conversations[cid("v1")]
    assert stored.unanswered == 2


def test_events_before_a_store_that_cannot_open_fail() -> None:
    """A store that cannot be opened fails the held events (not confirmed:
    the visitor sends them again) and the start."""
    driver, store, started = slow_driver()
    held = driver.submit(hello("v1"))
    store.opening.errback(sqlite3.OperationalError("unable to open database file"))
    assert isinstance(failure_of(held), DriverStopped)
    assert isinstance(failure_of(started), sqlite3.OperationalError)
    for d in (held, started):
        d.addErrback(lambda _: None)


def test_events_held_while_redis_cannot_be_used_fail_as_the_outage() -> None:
    """Redis away when the daemon starts (its store cannot load): a held
    event fails as the outage (the visitor is told to send it again, logged
    at debug level, as any message in an outage), not as a stopped driver
    (a traceback per message while Redis stays away)."""
    driver, store, started = slow_driver()
    held = driver.submit(hello("v1"))
    store.opening.errback(BrokerUnavailable("Redis did not answer EVALSHA within 1 s"))
    failure = failure_of(held)
    assert isinstance(failure, BrokerUnavailable) and not isinstance(failure, BrokerOutcomeUnknown)
    assert "EVALSHA" in str(failure)
    assert isinstance(failure_of(started), BrokerUnavailable)
    # Until the component's next try: a visitor's message fails the same way.
    between = driver.submit(hello("v2"))
    assert isinstance(failure_of(between), BrokerUnavailable)
    for d in (held, started, between):
        d.addErrback(lambda _: None)
    store.opening = Deferred()
    again = driver.start()
    store.opening.callback(None)
    assert again.called and driver.running
    stopped = driver.stop()
    assert isinstance(failure_of(driver.submit(hello("v3"))), DriverStopped)
    stopped.addErrback(lambda _: None)


def test_events_held_while_opening_are_bounded() -> None:
    """No more are held than the lanes take in all (max_total)."""
    driver, store, started = slow_driver(max_total=2)
    held = [driver.submit(hello(f"v{n}")) for n in range(3)]
    assert isinstance(failure_of(held[2]), LaneFull)
    held[2].addErrback(lambda _: None)
    store.opening.callback(None)
    assert all(not isinstance(getattr(d, "result", None), Failure) for d in held[:2])


def test_a_delivery_record_refused_by_a_full_lane_is_made_later_quietly(
        failures: list[Any]) -> None:
    """
    A plain visitor sending faster than its messages are decided fills its
    conversation's lane: the record that a plain connection took a message
    is then refused (LaneFull). It is no failure (no traceback) and the
    record is not lost (else the visitor's next connection would be written
    the message again): it is made TIMER_RETRY later, once the lane drains.
    """
    bench = Bench(ConversationSettings(fallback_after=0), max_per_conversation=2)
    bench.ports.plain = True
    bench.submit(OperatorAvailability("alice", Availability.ONLINE))
    bench.submit(hello("v1"))
    bench.store.gated = True
    replied = bench.submit(OperatorReply(cid("v1"), "alice", "Hi!"))
    waiting = [bench.submit(hello("v1", "more"))]
    bench.store.land()  # the reply: written to the plain connection, its record refused
    assert failures == []
    assert replied.called
    bench.store.land_all()
    bench.clock.advance(TIMER_RETRY)
    bench.store.land_all()
    bench.store.land_all()
    assert all(w.called for w in waiting)
    reply = replied.result.commit.messages[0].seq
    assert bench.stored("v1").delivered_upto >= reply >= 1
    assert failures == []
