"""
The conversation core under random event sequences (hypothesis): whatever
visitors, operators and the clock do, in whatever order, the invariants
hold: a resolved conversation waits for nothing, unread counts stay within
0 and their bound, every visitor-bound effect comes after the commit of
what it carries, notes never reach a visitor, loads match assignments,
timers match what is due, every list stays within its bound, and a store
takes every commit (versions and numbers fit) and gives back what moved.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.python.failure import Failure

from wsdaemon.conversations import (
    VISITOR_BOUND,
    AddNote,
    Assign,
    Availability,
    BotPending,
    BotReply,
    Bounds,
    CancelTimer,
    Commit,
    ConfirmVisitorMessage,
    Conversation,
    ConversationSettings,
    DeliverMessage,
    Event,
    Handoff,
    Inbox,
    InvalidMove,
    LeaveContact,
    NotifyOperators,
    OperatorAvailability,
    OperatorCapacity,
    OperatorRead,
    OperatorReply,
    OperatorTyping,
    Reopen,
    Resolve,
    Routing,
    SetLabels,
    SetTimer,
    Snooze,
    Status,
    Timer,
    TimerFired,
    TimerKind,
    Transfer,
    Transition,
    VisitorDelivered,
    VisitorMessage,
    VisitorRead,
    VisitorTyping,
    conversation_id_for,
    due_times,
)
from wsdaemon.conversations.codec import conversation_from_row, conversation_row
from wsdaemon.support.memory import MemoryConversationStore, stored_form

ROUTES = ("/a", "/b")
VISITORS = ("v1", "v2", "v3")
OPERATORS = ("alice", "bob", "carol")
OWN_TIMERS = (TimerKind.WAKE, TimerKind.FALLBACK, TimerKind.SILENCE, TimerKind.BOT)


@dataclass(frozen=True)
class Pick:
    """
    Stands for one of the conversations that exist when the event is made
    (or, one time in 13, for one that does not).
    """

    index: int


routes, visitors, operators = (st.sampled_from(x) for x in (ROUTES, VISITORS, OPERATORS))
picks = st.builds(Pick, st.integers(0, 50))
ids: st.SearchStrategy[Any] = picks
seqs = st.integers(0, 12)

core_settings = st.builds(
    ConversationSettings,
    routing=st.sampled_from(Routing),
    default_capacity=st.integers(0, 2),
    reassign_after=st.sampled_from([0.0, 30.0]),
    fallback_after=st.sampled_from([0.0, 20.0]),
    notices_once=st.booleans(),
    max_unanswered=st.sampled_from([0, 3]),
    max_open_per_route=st.sampled_from([0, 2]),
    max_open_total=st.sampled_from([0, 4]),
    typing_timeout=st.just(5.0),
    bounds=st.builds(Bounds, max_labels=st.just(2), max_notes_kept=st.just(2),
                     max_typing=st.just(1), max_read_marks=st.just(1), max_unread=st.just(3),
                     max_recent_client_ids=st.just(2), preview_chars=st.just(3),
                     max_batch=st.integers(1, 3), max_operators=st.just(3)),
)

# Events that need the time (a snooze's end) are drawn as (maker, offset).
events: st.SearchStrategy[Any] = st.one_of(
    st.builds(VisitorMessage, routes, visitors, st.sampled_from(["hi", "hello there"]),
              st.none() | st.sampled_from(["c1", "c2", "c3"]), st.booleans()),
    st.builds(BotReply, routes, visitors, st.sampled_from(["Try turning it off.", " "]),
              st.none() | st.just("Helper")),
    st.builds(Handoff, routes, visitors, st.sampled_from(["", "asked for a person"])),
    st.builds(BotPending, routes, visitors, st.none() | st.floats(0, 60),
              st.none() | st.just("refund")),
    st.builds(VisitorDelivered, routes, visitors, seqs),
    st.builds(VisitorRead, routes, visitors, seqs),
    st.builds(VisitorTyping, routes, visitors, st.booleans()),
    st.builds(LeaveContact, routes, visitors, st.sampled_from(["ann@example.com", "ann"])),
    st.builds(OperatorReply, ids, operators, st.sampled_from(["Hi!", " "]),
              st.none() | st.just("Alice B.")),
    st.builds(AddNote, ids, operators, st.sampled_from(["psst", ""])),
    st.builds(Assign, ids, st.none() | operators, operators),
    st.builds(Transfer, ids, operators, operators),
    st.builds(Resolve, ids, operators),
    st.builds(Reopen, ids, operators),
    st.tuples(st.just(Snooze), ids, operators, st.none() | st.floats(-5, 60)),
    st.builds(OperatorRead, ids, operators, seqs),
    st.builds(OperatorTyping, ids, operators, st.booleans()),
    st.builds(SetLabels, ids, operators, st.lists(st.sampled_from(["a", "b", "c", " "]),
                                                  max_size=2).map(tuple),
              st.lists(st.sampled_from(["a", "b"]), max_size=1).map(tuple)),
    st.builds(OperatorAvailability, operators, st.sampled_from(Availability)),
    st.builds(OperatorCapacity, operators, st.integers(-1, 2)),
    st.builds(TimerFired, st.builds(Timer, st.sampled_from(TimerKind), ids,
                                    st.sampled_from(["", "alice"]))),
)
steps = st.lists(st.tuples(st.sampled_from(["event", "event", "event", "fire"]), events,
                           st.floats(0, 15)), min_size=5, max_size=60)


class Run:
    """The inbox, the clock, and the timers its effects have set."""

    def __init__(self, core: ConversationSettings) -> None:
        self.settings = core
        self.inbox = Inbox(core)
        self.store = MemoryConversationStore()
        self.now = 0.0
        self.timers: dict[Timer, float] = {}

    def make(self, drawn: Any) -> Event:
        if isinstance(drawn, tuple):
            _, key, by, offset = drawn
            return Snooze(self.pick(key), by, None if offset is None else self.now + offset)
        changes = {f.name: self.pick(getattr(drawn, f.name)) for f in fields(drawn)}
        if isinstance(drawn, TimerFired):
            changes["timer"] = replace(drawn.timer,
                                       conversation_id=self.pick(drawn.timer.conversation_id))
        return replace(drawn, **changes)  # type: ignore[no-any-return]

    def pick(self, value: Any) -> Any:
        if not isinstance(value, Pick):
            return value
        existing = sorted(c.conversation_id for c in self.inbox.conversations())
        if not existing or value.index % 13 == 12:
            return "nope"
        return existing[value.index % len(existing)]

    def fire(self) -> Event | None:
        if not self.timers:
            return None
        timer, at = min(self.timers.items(), key=lambda item: item[1])
        del self.timers[timer]
        self.now = max(self.now, at)
        return TimerFired(timer)

    def step(self, event: Event) -> None:
        before = {c.conversation_id: c for c in self.inbox.conversations()}
        team = self.inbox.team
        try:
            transition = self.inbox.decide(event, self.now)
        except InvalidMove:
            # Nothing moved.
            assert {c.conversation_id: c for c in self.inbox.conversations()} == before
            assert self.inbox.team is team
            return
        check_transition(event, transition, before, self.settings)
        if transition.commit is not None:
            refused: list[Failure] = []
            self.store.commit(transition.commit).addErrback(refused.append)
            assert not refused, f"the store refused a commit: {refused}"
        self.inbox.commit(transition)
        for effect in transition.effects:
            if isinstance(effect, SetTimer):
                self.timers[effect.timer] = effect.at
            elif isinstance(effect, CancelTimer):
                self.timers.pop(effect.timer, None)
        check_state(self)


def check_transition(event: Event, transition: Transition, before: dict[str, Conversation],
                     core: ConversationSettings) -> None:
    effects = transition.effects
    commits = [e for e in effects if isinstance(e, Commit)]
    assert len(commits) <= 1
    if commits:
        assert effects[0] is commits[0], "the commit comes before everything else"
    committed = commits[0].messages if commits else ()
    for effect in effects:
        if isinstance(effect, DeliverMessage):
            assert effect.message in committed, "a message is committed before it is delivered"
            assert effect.message.to_visitor
        if isinstance(effect, ConfirmVisitorMessage) and not effect.duplicate:
            key = conversation_id_for(effect.route, effect.visitor)
            assert any(m.seq == effect.seq and m.conversation_id == key for m in committed)
        if isinstance(effect, VISITOR_BOUND):
            assert not isinstance(event, AddNote), "a note reaches no visitor"
            assert "Note(" not in repr(effect)
    final = {c.conversation_id: c for c in transition.conversations}
    for effect in effects:
        if isinstance(effect, NotifyOperators) and effect.conversation.conversation_id in final:
            assert effect.conversation == final[effect.conversation.conversation_id]
    durable = {c.conversation_id for c in commits[0].conversations} if commits else set()
    for conversation in transition.conversations:
        old = before.get(conversation.conversation_id)
        previous = 0 if old is None else old.version
        expected = previous + 1 if conversation.conversation_id in durable else previous
        assert conversation.version == expected
        new_seqs = [m.seq for m in committed if m.conversation_id == conversation.conversation_id]
        first = 1 if old is None else old.last_seq + 1
        assert new_seqs == list(range(first, conversation.last_seq + 1)), "seqs without gaps"


def check_conversation(c: Conversation, run: Run) -> None:
    core, bounds = run.settings, run.settings.bounds
    if c.status is Status.RESOLVED:
        assert c.waiting_since is None and c.waiting_time(run.now) == 0.0
        assert c.resolved_at is not None and c.resolution_time is not None
    else:
        assert c.resolved_at is None
    assert (c.waiting_since is None) == (c.unanswered == 0)
    assert c.snoozed_until is None or c.status is Status.SNOOZED
    assert c.bot_handoff is None or c.bot_due is not None, "a handoff owed has its time"
    if c.with_bot and c.status is Status.OPEN:
        # The bot's episode: no notices until the handoff, not the operators' load.
        assert not (c.ack_sent or c.offline_sent or c.fallback_sent)
        assert not c.holds_assignee_load and not c.awaits_operator
    for name in OPERATORS:
        assert 0 <= c.unread_for(name) <= bounds.max_unread
    assert c.first_response_at is None or c.first_response_at >= c.opened_at
    assert 0 <= c.visitor_read_upto <= c.delivered_upto <= c.last_seq
    assert not core.max_unanswered or c.unanswered <= core.max_unanswered
    assert len(c.labels) <= bounds.max_labels
    assert len(c.notes) <= bounds.max_notes_kept
    assert len(c.typing) <= bounds.max_typing
    assert len(c.read_marks) <= bounds.max_read_marks
    assert len(c.recent_client_ids) <= bounds.max_recent_client_ids
    assert len(c.recent_visitor_seqs) <= bounds.max_unread
    assert len(c.preview) <= bounds.preview_chars
    due = due_times(c, core)
    for kind in OWN_TIMERS:
        pending = run.timers.get(Timer(kind, c.conversation_id))
        if pending is not None:
            assert pending == due[kind], f"{kind} timer at {pending}, due at {due[kind]}"
        at = due[kind]
        if at is not None and at > run.now:
            assert pending == at, f"{kind} due at {at} has no timer"


def check_state(run: Run) -> None:
    conversations = run.inbox.conversations()
    for c in conversations:
        check_conversation(c, run)
        kept = stored_form(c)
        assert run.store.conversations[c.conversation_id] == kept, "the store has what moved"
        assert conversation_from_row(conversation_row(c)) == kept, "rows keep everything"
    for operator in run.inbox.team.operators:
        assert operator.load == sum(
            1 for c in conversations if c.holds_assignee_load and c.assignee == operator.name)
        assert operator.capacity >= 0
    assert {c.conversation_id for c in run.inbox.waiting(1000)} == \
        {c.conversation_id for c in conversations if c.awaits_operator}
    assert run.inbox.open_count() == sum(c.status is not Status.RESOLVED for c in conversations)
    assert run.inbox.status_counts() == {
        "bot": sum(c.with_bot and c.status is Status.OPEN for c in conversations),
        "unassigned": sum(c.awaits_operator for c in conversations),
        "assigned": sum(c.holds_assignee_load for c in conversations),
        "snoozed": sum(c.status is Status.SNOOZED for c in conversations)}
    assert len(run.inbox.team.operators) <= run.settings.bounds.max_operators


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(core_settings, steps)
def test_random_event_sequences_keep_the_invariants(core: ConversationSettings,
                                                    drawn: list[Any]) -> None:
    """Any sequence of visitor, operator, team and timer events, at any times,
    keeps every invariant; refused moves change nothing."""
    run = Run(core)
    for visitor in VISITORS:  # something to act on from the start
        run.step(VisitorMessage(ROUTES[0], visitor, "hello"))
    for what, event, pause in drawn:
        run.now += pause
        fired = run.fire() if what == "fire" else None
        run.step(fired if fired is not None else run.make(event))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3), st.lists(st.tuples(visitors, routes, st.floats(0, 10)), max_size=25),
       st.integers(1, 3))
def test_auto_routing_never_exceeds_capacity_by_itself(capacity: int,
                                                       arrivals: list[tuple[str, str, float]],
                                                       online: int) -> None:
    """Automatic routing alone (no assignment by hand, no wakes) never gives
    an operator more than its capacity, and queues only when everyone is full."""
    run = Run(ConversationSettings(routing=Routing.AUTO, default_capacity=capacity,
                                   fallback_after=0, max_unanswered=0, max_open_per_route=0,
                                   max_open_total=0))
    for name in OPERATORS[:online]:
        run.step(OperatorAvailability(name, Availability.ONLINE))
    for visitor, route, pause in arrivals:
        run.now += pause
        run.step(VisitorMessage(route, visitor, "hi"))
        team = run.inbox.team
        assert all(o.load <= o.capacity for o in team.operators)
        if run.inbox.waiting(1):
            assert not team.has_room
