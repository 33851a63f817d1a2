"""
What happens to the team and on the clock: an operator's availability or
capacity changes, and timers come due.
"""

from __future__ import annotations

from wsdaemon.conversations.bot_events import overdue
from wsdaemon.conversations.effects import AnnounceAvailability, NotifyTeam, SignalVisitor
from wsdaemon.conversations.errors import InvalidMove
from wsdaemon.conversations.events import (
    OperatorAvailability,
    OperatorCapacity,
    RosterChanged,
    TimerFired,
    TimerKind,
)
from wsdaemon.conversations.model import Availability, Conversation, Status, evolve
from wsdaemon.conversations.moves import notice, place
from wsdaemon.conversations.routing import OperatorState
from wsdaemon.conversations.transition import Draft, due_times

__all__ = ["operator_availability", "operator_capacity", "roster_changed", "timer_fired"]


def _tell_team(draft: Draft, operator: OperatorState) -> None:
    draft.emit(NotifyTeam(operator.name, str(operator.availability), operator.capacity,
                          operator.load))


def operator_availability(draft: Draft, event: OperatorAvailability) -> None:
    """
    Visitors hear when the first operator comes online or the last one
    leaves; automatic routing moves a gone operator's open conversations
    (see L{rebalance}).
    """
    before = draft.team.available
    operator = draft.member(event.operator, f"become {event.availability}")
    if operator.availability is event.availability:
        return
    operator = evolve(operator, availability=event.availability)
    draft.team = draft.team.with_operator(operator)
    after = draft.team.available
    if (before > 0) != (after > 0):
        draft.emit(AnnounceAvailability(after > 0))
    _tell_team(draft, operator)


def operator_capacity(draft: Draft, event: OperatorCapacity) -> None:
    if event.capacity < 0:
        raise InvalidMove("", "unchanged", f"set {event.operator}'s capacity",
                          "a capacity is 0 (no cap) or more")
    operator = evolve(draft.member(event.operator, "set a capacity"), capacity=event.capacity)
    draft.team = draft.team.with_operator(operator)
    _tell_team(draft, operator)


def roster_changed(draft: Draft, event: RosterChanged) -> None:
    """
    Names added to the configuration join (offline) unless the team knows
    them or is full; names removed leave only when offline and holding no
    open conversation (its assignee stays a member while one is open).
    """
    for name in sorted(set(event.joined)):
        if draft.team.get(name) is not None:
            continue
        if len(draft.team.operators) >= draft.bounds.max_operators:
            break
        joined = OperatorState(name, capacity=draft.settings.default_capacity,
                               load=draft.view.load_of(name))
        draft.team = draft.team.with_operator(joined)
        draft.emit(NotifyTeam(name, str(joined.availability), joined.capacity, joined.load,
                              joined=True))
    for name in sorted(set(event.left)):
        member = draft.team.get(name)
        if member is None or member.availability is not Availability.OFFLINE \
                or member.load or draft.view.load_of(name):
            continue
        draft.team = evolve(draft.team, operators=tuple(
            o for o in draft.team.operators if o.name != name))
        draft.emit(NotifyTeam(name, str(member.availability), member.capacity, 0, left=True))


def timer_fired(draft: Draft, event: TimerFired) -> None:
    """Does what is due, and nothing when the timer is stale."""
    timer = event.timer
    if timer.kind is TimerKind.ROUTE:
        return  # rebalancing after every event does the work
    found = draft.get(timer.conversation_id)
    if found is None:
        return
    if timer.kind is TimerKind.TYPING:
        _typing_ran_out(draft, found, timer.who)
        return
    due = due_times(found, draft.settings)[timer.kind]
    if due is None or due > draft.now:
        return
    if timer.kind is TimerKind.WAKE:
        woken = place(draft, evolve(found, status=Status.OPEN, snoozed_until=None))
        draft.put(woken)
        draft.notify("updated", woken)
    elif timer.kind is TimerKind.FALLBACK:
        conversation = notice(draft, found, draft.settings.fallback_message)
        draft.put(evolve(conversation, fallback_sent=True))
    elif timer.kind is TimerKind.SILENCE:
        _reassign_silent(draft, found)
    elif timer.kind is TimerKind.BOT:
        overdue(draft, found)


def _reassign_silent(draft: Draft, found: Conversation) -> None:
    """To another operator with room; kept (no retry this wait) when nobody has room."""
    assert found.assignee is not None
    chosen = draft.team.choose(frozenset({found.assignee}))
    if chosen is None:
        return
    draft.team = evolve(draft.team, last_chosen=chosen)
    moved = evolve(found, assignee=chosen, assigned_at=draft.now)
    draft.put(moved)
    draft.notify("updated", moved)


def _typing_ran_out(draft: Draft, found: Conversation, who: str) -> None:
    now = draft.now
    if not who:
        if found.visitor_typing_until is None or found.visitor_typing_until > now:
            return
        conversation = evolve(found, visitor_typing_until=None)
        draft.notify("typing", conversation)
    else:
        entry = [until for name, until in found.typing if name == who]
        if not entry or entry[0] > now:
            return
        conversation = evolve(found, typing=tuple(
            (name, until) for name, until in found.typing if name != who))
        draft.emit(SignalVisitor(found.route, found.visitor, "typing", on=False, name=who))
        draft.notify("typing", conversation, actor=who)
    draft.put(conversation, durable=False)
