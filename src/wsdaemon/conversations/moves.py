"""
Moves several events share: where a conversation goes when it opens
(routing), a new episode, a notice to the visitor, typing indicators ending,
and the rebalancing that automatic routing does after every event.
"""

from __future__ import annotations

from wsdaemon.conversations.effects import CancelTimer, SetTimer, SignalVisitor
from wsdaemon.conversations.events import Timer, TimerKind
from wsdaemon.conversations.model import (
    EPISODES_KEPT,
    Author,
    Availability,
    Conversation,
    Status,
    evolve,
)
from wsdaemon.conversations.settings import Routing
from wsdaemon.conversations.transition import Draft

__all__ = ["mark_read", "new_episode", "notice", "place", "rebalance", "start_typing",
           "stop_typing"]


def place(draft: Draft, conversation: Conversation,
          exclude: frozenset[str] = frozenset()) -> Conversation:
    """
    Where an opening (or woken, or released) conversation goes. By hand:
    it stays as it is. Automatic: it stays with an online assignee (not in
    C{exclude}), else goes to the next online operator with room, else waits
    unassigned in the queue.
    """
    if draft.settings.routing is Routing.MANUAL:
        return conversation
    keep = conversation.assignee
    if keep is not None and keep not in exclude and draft.team.is_online(keep):
        return conversation
    chosen = draft.team.choose(exclude)
    if chosen is None:
        return evolve(conversation, assignee=None, assigned_at=None)
    draft.team = evolve(draft.team, last_chosen=chosen)
    return evolve(conversation, assignee=chosen, assigned_at=draft.now)


def new_episode(conversation: Conversation, now: float) -> Conversation:
    """
    A resolved conversation opens again: times, notices and unread start
    over; where the episode that ends began is remembered.
    """
    ended = (conversation.unread_floor, conversation.opened_at, conversation.resolved_at)
    return evolve(conversation, status=Status.OPEN, opened_at=now, first_response_at=None,
                   episodes=(*conversation.episodes, ended)[-EPISODES_KEPT:],
                   resolved_at=None, waiting_since=None, snoozed_until=None, unanswered=0,
                   unread_floor=conversation.last_seq, recent_visitor_seqs=(),
                   ack_sent=False, offline_sent=False, fallback_sent=False, with_bot=False,
                   bot_due=None, bot_handoff=None)


def notice(draft: Draft, conversation: Conversation, text: str) -> Conversation:
    """
    A message from the daemon to the visitor (acknowledgement, offline
    notice, fallback): stored, delivered, shown to operators.
    """
    conversation, message = draft.append(conversation, Author.SYSTEM, text)
    draft.deliver(conversation, message)
    draft.notify("message", conversation, message=message)
    return conversation


def stop_typing(draft: Draft, conversation: Conversation, *, visitor_too: bool = True,
                only: str | None = None) -> Conversation:
    """
    Typing indicators end (all of them, or C{only} that operator's): their
    timers are cancelled and whoever saw them is told.
    """
    kept: list[tuple[str, float]] = []
    for name, until in conversation.typing:
        if only is not None and name != only:
            kept.append((name, until))
            continue
        draft.emit(CancelTimer(Timer(TimerKind.TYPING, conversation.conversation_id, name)))
        draft.emit(SignalVisitor(conversation.route, conversation.visitor, "typing", on=False,
                                 name=name))
    conversation = evolve(conversation, typing=tuple(kept))
    if visitor_too and conversation.visitor_typing_until is not None:
        draft.emit(CancelTimer(Timer(TimerKind.TYPING, conversation.conversation_id)))
        draft.notify("typing", conversation)
        conversation = evolve(conversation, visitor_typing_until=None)
    return conversation


def start_typing(draft: Draft, conversation: Conversation, operator: str) -> Conversation:
    """C{operator} is typing: (re)start its indicator, dropping the oldest at the bound."""
    until = draft.now + draft.settings.typing_timeout
    others = [(name, at) for name, at in conversation.typing if name != operator]
    while len(others) >= draft.bounds.max_typing:
        dropped = others.pop(0)[0]
        conversation = stop_typing(draft, conversation, visitor_too=False, only=dropped)
    draft.emit(SetTimer(Timer(TimerKind.TYPING, conversation.conversation_id, operator), until))
    return evolve(conversation, typing=(*others, (operator, until)))


def mark_read(conversation: Conversation, operator: str, upto: int,
              max_marks: int) -> Conversation:
    """C{operator} has read up to C{upto}: its mark moves there (newest last, bounded)."""
    marks = [(name, seq) for name, seq in conversation.read_marks if name != operator]
    marks.append((operator, upto))
    return evolve(conversation, read_marks=tuple(marks[-max_marks:]))


def rebalance(draft: Draft) -> None:
    """
    Automatic routing, after every event: the open conversations of
    operators gone offline go to others (or the queue), then the queue goes
    to operators with room, oldest first. At most C{max_batch} a transition;
    a C{route} timer due now takes the rest.
    """
    budget = draft.bounds.max_batch
    for operator in draft.team.operators:
        if operator.availability is not Availability.OFFLINE or operator.load == 0:
            continue
        for listed in draft.view.open_assigned_to(operator.name, budget):
            current = draft.get(listed.conversation_id)
            if budget == 0 or current is None or current.assignee != operator.name \
                    or not current.holds_assignee_load:
                continue
            released = evolve(current, assignee=None, assigned_at=None)
            moved = place(draft, released, exclude=frozenset({operator.name}))
            draft.put(moved)
            draft.notify("updated", moved)
            budget -= 1
    if budget and draft.team.has_room:
        for listed in draft.view.waiting(budget + draft.touched_count):
            if budget == 0 or not draft.team.has_room:
                break
            if draft.touched(listed.conversation_id):
                continue
            moved = place(draft, listed)
            if moved.assignee is not None:
                draft.put(moved)
                draft.notify("updated", moved)
                budget -= 1
    if budget == 0:
        draft.emit(SetTimer(Timer(TimerKind.ROUTE), draft.now))
