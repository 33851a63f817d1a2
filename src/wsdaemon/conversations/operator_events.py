"""
What operators do to a conversation: reply, write a private note, assign,
transfer, resolve, reopen, snooze, read, type, label.
"""

from __future__ import annotations

from wsdaemon.conversations.effects import Measure, Metric, SignalVisitor
from wsdaemon.conversations.errors import InvalidMove
from wsdaemon.conversations.events import (
    AddNote,
    Assign,
    OperatorRead,
    OperatorReply,
    OperatorTyping,
    Reopen,
    Resolve,
    SetLabels,
    Snooze,
    Transfer,
)
from wsdaemon.conversations.model import (
    Author,
    Availability,
    Conversation,
    Note,
    Status,
    describe_state,
    evolve,
)
from wsdaemon.conversations.moves import mark_read, new_episode, place, start_typing, stop_typing
from wsdaemon.conversations.settings import Routing
from wsdaemon.conversations.transition import Draft

__all__ = ["add_note", "assign", "operator_read", "operator_reply", "operator_typing", "reopen",
           "resolve", "set_labels", "snooze", "transfer"]


def _refuse(conversation: Conversation, action: str, why: str = "") -> InvalidMove:
    return InvalidMove(conversation.conversation_id, describe_state(conversation), action, why)


def _text(conversation: Conversation, text: str, action: str) -> None:
    if not text.strip():
        raise _refuse(conversation, action, "the text is empty")


def operator_reply(draft: Draft, event: OperatorReply) -> None:
    found = draft.require(event.conversation_id, "reply")
    if found.status is Status.RESOLVED:
        raise _refuse(found, "reply", "reopen it first")
    _text(found, event.text, "reply")
    draft.member(event.operator, "reply")
    now = draft.now
    name = event.display_name or event.operator
    conversation = stop_typing(draft, found, visitor_too=False, only=event.operator)
    conversation, message = draft.append(conversation, Author.OPERATOR, event.text,
                                         operator=event.operator, display_name=name)
    first = conversation.first_response_at is None
    conversation = evolve(
        mark_read(conversation, event.operator, message.seq, draft.bounds.max_read_marks),
        waiting_since=None, unanswered=0,
        first_response_at=now if first else conversation.first_response_at,
        fallback_sent=conversation.fallback_sent and draft.settings.notices_once)
    if conversation.assignee is None:
        conversation = evolve(conversation, assignee=event.operator, assigned_at=now)
    # An operator who answers takes the conversation from the bot.
    conversation = evolve(conversation, with_bot=False)
    draft.put(conversation)
    draft.deliver(conversation, message)
    draft.notify("message", conversation, message=message, actor=event.operator)
    if first:
        draft.emit(Measure(Metric.FIRST_RESPONSE, conversation.route,
                           now - conversation.opened_at))


def add_note(draft: Draft, event: AddNote) -> None:
    """Private: stored and shown to operators, never to the visitor, whatever the state."""
    found = draft.require(event.conversation_id, "add a note")
    _text(found, event.text, "add a note")
    draft.member(event.operator, "add a note")
    note = Note(found.conversation_id, found.note_count + 1, event.operator, event.text,
                draft.now)
    conversation = evolve(found, note_count=note.note_id,
                           notes=(*found.notes, note)[-draft.bounds.max_notes_kept:])
    draft.add_note(note)
    draft.put(conversation)
    draft.notify("note", conversation, note=note, actor=event.operator)


def _known(draft: Draft, conversation: Conversation, name: str, action: str) -> None:
    """
    A team member (the configured operators are, from the start). One who
    is offline may be given a conversation by hand, where it waits for
    them; with automatic routing that is refused, since routing would move
    it to someone online at once.
    """
    operator = draft.team.get(name)
    if operator is None:
        raise InvalidMove(conversation.conversation_id, describe_state(conversation), action,
                          f"no operator named {name}", for_its_state=False)
    if operator.availability is Availability.OFFLINE and draft.settings.routing is Routing.AUTO:
        raise InvalidMove(conversation.conversation_id, describe_state(conversation), action,
                          f"{name} is offline, and automatic routing gives conversations "
                          "only to operators online", for_its_state=False)


def assign(draft: Draft, event: Assign) -> None:
    action = "unassign" if event.operator is None else f"assign to {event.operator}"
    found = draft.require(event.conversation_id, action)
    if found.status is Status.RESOLVED:
        raise _refuse(found, action, "reopen it first")
    draft.member(event.by, action)
    if event.operator is None:
        if found.assignee is None:
            raise _refuse(found, action, "it is not assigned")
        released = evolve(found, assignee=None, assigned_at=None)
        conversation = place(draft, released, exclude=frozenset({found.assignee}))
    else:
        _known(draft, found, event.operator, action)
        if found.assignee == event.operator:
            raise _refuse(found, action, "it already is")
        conversation = evolve(found, assignee=event.operator, assigned_at=draft.now,
                               with_bot=False)
    draft.put(conversation)
    draft.notify("updated", conversation, actor=event.by)


def transfer(draft: Draft, event: Transfer) -> None:
    action = f"transfer to {event.to}"
    found = draft.require(event.conversation_id, action)
    if found.status is Status.RESOLVED:
        raise _refuse(found, action, "reopen it first")
    if found.assignee is None:
        raise _refuse(found, action, "nobody has it: assign it instead")
    if found.assignee == event.to:
        raise _refuse(found, action, f"{event.to} has it already")
    draft.member(event.by, action)
    _known(draft, found, event.to, action)
    conversation = evolve(found, assignee=event.to, assigned_at=draft.now)
    draft.put(conversation)
    draft.notify("updated", conversation, actor=event.by)


def resolve(draft: Draft, event: Resolve) -> None:
    found = draft.require(event.conversation_id, "resolve")
    if found.status is Status.RESOLVED:
        raise _refuse(found, "resolve")
    draft.member(event.by, "resolve")
    conversation = stop_typing(draft, found)
    conversation = evolve(conversation, status=Status.RESOLVED, resolved_at=draft.now,
                           waiting_since=None, snoozed_until=None, unanswered=0)
    draft.put(conversation)
    draft.emit(SignalVisitor(conversation.route, conversation.visitor, "status",
                             status=str(Status.RESOLVED)))
    draft.notify("updated", conversation, actor=event.by)
    draft.emit(Measure(Metric.RESOLUTION, conversation.route,
                       draft.now - conversation.opened_at))


def reopen(draft: Draft, event: Reopen) -> None:
    found = draft.require(event.conversation_id, "reopen")
    if found.status is Status.OPEN:
        raise _refuse(found, "reopen")
    draft.member(event.by, "reopen")
    if found.status is Status.RESOLVED:
        conversation = new_episode(found, draft.now)
        draft.emit(SignalVisitor(found.route, found.visitor, "status", status=str(Status.OPEN)))
    else:
        conversation = evolve(found, status=Status.OPEN, snoozed_until=None)
    conversation = place(draft, conversation)
    draft.put(conversation)
    draft.notify("updated", conversation, actor=event.by)


def snooze(draft: Draft, event: Snooze) -> None:
    """Until a time or the visitor's next message; a snoozed one may be snoozed again."""
    found = draft.require(event.conversation_id, "snooze")
    if found.status is Status.RESOLVED:
        raise _refuse(found, "snooze")
    if event.until is not None and event.until <= draft.now:
        raise _refuse(found, "snooze", "the time it wakes must be later than now")
    draft.member(event.by, "snooze")
    conversation = evolve(found, status=Status.SNOOZED, snoozed_until=event.until,
                           with_bot=False)
    draft.put(conversation)
    draft.notify("updated", conversation, actor=event.by)


def operator_read(draft: Draft, event: OperatorRead) -> None:
    found = draft.require(event.conversation_id, "mark read")
    upto = min(event.upto, found.last_seq)
    if upto <= found.read_mark(event.operator):
        return
    draft.member(event.operator, "mark read")
    conversation = mark_read(found, event.operator, upto, draft.bounds.max_read_marks)
    draft.put(conversation)
    draft.notify("read", conversation, operator=event.operator, actor=event.operator)
    draft.emit(SignalVisitor(found.route, found.visitor, "read", upto=upto))


def operator_typing(draft: Draft, event: OperatorTyping) -> None:
    """Shown to the visitor and the other operators; ignored on a resolved conversation."""
    found = draft.require(event.conversation_id, "type")
    if found.status is Status.RESOLVED:
        return
    name = event.display_name or event.operator
    typing = event.operator in found.operators_typing()
    if event.on:
        conversation = start_typing(draft, found, event.operator)
        if not typing:
            draft.emit(SignalVisitor(found.route, found.visitor, "typing", on=True, name=name))
            draft.notify("typing", conversation, actor=event.operator)
    elif typing:
        conversation = stop_typing(draft, found, visitor_too=False, only=event.operator)
        draft.notify("typing", conversation, actor=event.operator)
    else:
        return
    draft.put(conversation, durable=False)


def _label(conversation: Conversation, label: str, longest: int) -> str:
    cleaned = label.strip().lower()
    if not cleaned or len(cleaned) > longest or not cleaned.isprintable():
        raise _refuse(conversation, "label", f"a label is 1 to {longest} printable characters")
    return cleaned


def set_labels(draft: Draft, event: SetLabels) -> None:
    found = draft.require(event.conversation_id, "label")
    bounds = draft.bounds
    added = [_label(found, label, bounds.max_label_length) for label in event.add]
    removed = {label.strip().lower() for label in event.remove}
    labels = sorted({*found.labels, *added} - removed)
    if len(labels) > bounds.max_labels:
        raise _refuse(found, "label", f"at most {bounds.max_labels} labels")
    if tuple(labels) == found.labels:
        return
    draft.member(event.by, "label")
    conversation = evolve(found, labels=tuple(labels))
    draft.put(conversation)
    draft.notify("updated", conversation, actor=event.by)
