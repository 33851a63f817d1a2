"""
What the visitor does: writes (which opens, wakes or reopens its
conversation), confirms delivery, reads, types, leaves an email address.
"""

from __future__ import annotations

import re

from wsdaemon.conversations.effects import (
    CancelTimer,
    ConfirmVisitorMessage,
    RefuseVisitor,
    SetTimer,
    SignalVisitor,
)
from wsdaemon.conversations.errors import InvalidMove
from wsdaemon.conversations.events import (
    LeaveContact,
    Timer,
    TimerKind,
    VisitorDelivered,
    VisitorMessage,
    VisitorMissed,
    VisitorRead,
    VisitorTyping,
)
from wsdaemon.conversations.model import (
    Author,
    Conversation,
    Status,
    conversation_id_for,
    describe_state,
    evolve,
)
from wsdaemon.conversations.moves import new_episode, notice, place
from wsdaemon.conversations.profile import merged
from wsdaemon.conversations.transition import Draft

__all__ = ["leave_contact", "notices", "visitor_delivered", "visitor_message", "visitor_read",
           "visitor_typing"]

#: An email address as a form would accept it: no spaces or control
#: characters, one @, a dot in the domain; at most 254 characters.
_EMAIL = re.compile(r"[^\s@\x00-\x1f\x7f]+@[^\s@\x00-\x1f\x7f]+\.[^\s@\x00-\x1f\x7f]+")


def _refusal(draft: Draft, event: VisitorMessage, found: Conversation | None) -> str | None:
    """Which cap the message would pass, if any (nothing is stored then)."""
    settings = draft.settings
    if found is None or found.status is Status.RESOLVED:
        if settings.max_open_total and draft.view.open_count() >= settings.max_open_total:
            draft.emit(RefuseVisitor(event.route, event.visitor, "inbox_full",
                                     settings.max_open_total))
            return "inbox_full"
        if settings.max_open_per_route and \
                draft.view.open_count(event.route) >= settings.max_open_per_route:
            draft.emit(RefuseVisitor(event.route, event.visitor, "route_full",
                                     settings.max_open_per_route))
            return "route_full"
    elif settings.max_unanswered and found.unanswered >= settings.max_unanswered:
        draft.emit(RefuseVisitor(event.route, event.visitor, "unanswered",
                                 settings.max_unanswered))
        return "unanswered"
    return None


def _resend(draft: Draft, event: VisitorMessage, found: Conversation | None) -> bool:
    """A message the visitor sent before (same id): confirmed again, not stored."""
    if found is None or event.client_message_id is None:
        return False
    for client_message_id, seq in found.recent_client_ids:
        if client_message_id == event.client_message_id:
            draft.emit(ConfirmVisitorMessage(event.route, event.visitor, client_message_id,
                                             seq, duplicate=True))
            return True
    return False


def visitor_message(draft: Draft, event: VisitorMessage) -> None:
    key = conversation_id_for(event.route, event.visitor)
    found = draft.get(key)
    if _resend(draft, event, found) or _refusal(draft, event, found) is not None:
        return
    now, bounds = draft.now, draft.bounds
    if found is None:
        conversation = Conversation(key, event.route, event.visitor, created_at=now,
                                    opened_at=now, last_activity_at=now)
    elif found.status is Status.RESOLVED:
        conversation = new_episode(found, now)
    else:
        conversation = found
    opening = found is None or found.status is not Status.OPEN
    # A route whose bot answers first gets each new episode (not a woken
    # one: an operator snoozed it, so it is theirs).
    with_bot = conversation.with_bot if found is not None and found.status is not \
        Status.RESOLVED else event.bot
    conversation = evolve(conversation, status=Status.OPEN, snoozed_until=None,
                           with_bot=with_bot)
    if event.profile is not None:
        profile = merged(conversation.profile, event.profile)
        if profile is not conversation.profile:
            conversation = evolve(conversation, profile=profile)
    if conversation.visitor_typing_until is not None:
        draft.emit(CancelTimer(Timer(TimerKind.TYPING, key)))
    conversation, message = draft.append(conversation, Author.VISITOR, event.text,
                                         client_message_id=event.client_message_id)
    ids = conversation.recent_client_ids
    if event.client_message_id is not None:
        ids = (*ids, (event.client_message_id, message.seq))[-bounds.max_recent_client_ids:]
    conversation = evolve(
        conversation, unanswered=conversation.unanswered + 1, recent_client_ids=ids,
        waiting_since=now if conversation.waiting_since is None else conversation.waiting_since,
        recent_visitor_seqs=(*conversation.recent_visitor_seqs, message.seq)[-bounds.max_unread:],
        visitor_typing_until=None)
    if with_bot:
        # The bot owes this message an answer from now, in the same commit:
        # a daemon that dies before the bot says more leaves it overdue
        # (BOT_GRACE), not unanswered with the bot for good.
        due = conversation.bot_due
        conversation = evolve(conversation, bot_due=now if due is None else max(due, now))
    elif opening:
        conversation = place(draft, conversation)
    draft.emit(ConfirmVisitorMessage(event.route, event.visitor, event.client_message_id,
                                     message.seq))
    if found is not None and found.status is Status.RESOLVED:
        # Reopened by the visitor: its other tabs (and its own widget)
        # hear it as they hear an operator's reopen.
        draft.emit(SignalVisitor(event.route, event.visitor, "status", status=str(Status.OPEN)))
    draft.notify("conversation" if found is None else "message", conversation, message=message)
    draft.put(conversation if with_bot else notices(draft, conversation))


def notices(draft: Draft, conversation: Conversation) -> Conversation:
    """
    One acknowledgement that fits, once per episode (or every time): with no
    operator online the offline notice instead of the acknowledgement (which
    would promise an answer soon, next to a notice saying nobody is there).
    """
    settings = draft.settings
    every = not settings.notices_once
    if settings.offline_message and draft.team.available == 0:
        if every or not conversation.offline_sent:
            conversation = evolve(notice(draft, conversation, settings.offline_message),
                                   offline_sent=True, ack_sent=True)
    elif settings.ack_message and (every or not conversation.ack_sent):
        conversation = evolve(notice(draft, conversation, settings.ack_message), ack_sent=True)
    return conversation


def visitor_delivered(draft: Draft, event: VisitorDelivered) -> None:
    found = draft.get(conversation_id_for(event.route, event.visitor))
    if found is None:
        return
    upto = min(event.upto, found.last_seq)
    if upto == found.delivered_upto and upto > 0 and not found.delivered_confirmed:
        # A second connection (maybe through another daemon) has it too.
        draft.put(evolve(found, delivered_confirmed=True))
        return
    if upto <= found.delivered_upto:
        return
    conversation = evolve(found, delivered_upto=upto, delivered_confirmed=False)
    draft.put(conversation)
    draft.notify("delivered", conversation)


def visitor_missed(draft: Draft, event: VisitorMissed) -> None:
    """A message recorded delivered was not written: delivered only up to before
    it, unless another connection confirmed what is recorded."""
    found = draft.get(conversation_id_for(event.route, event.visitor))
    if found is None or event.seq < 1 or found.delivered_upto < event.seq \
            or found.delivered_confirmed:
        return
    conversation = evolve(found, delivered_upto=event.seq - 1)
    draft.put(conversation)
    draft.notify("delivered", conversation)


def visitor_read(draft: Draft, event: VisitorRead) -> None:
    found = draft.get(conversation_id_for(event.route, event.visitor))
    if found is None:
        return
    upto = min(event.upto, found.last_seq)
    if upto <= found.visitor_read_upto:
        return
    conversation = evolve(found, visitor_read_upto=upto,
                           delivered_upto=max(found.delivered_upto, upto),
                           # The visitor says it has them: nothing to take back.
                           delivered_confirmed=found.delivered_confirmed
                           or upto >= found.delivered_upto)
    draft.put(conversation)
    draft.notify("read", conversation)


def visitor_typing(draft: Draft, event: VisitorTyping) -> None:
    """Shown to operators; ignored where nobody looks (no conversation, or resolved)."""
    key = conversation_id_for(event.route, event.visitor)
    found = draft.get(key)
    if found is None or found.status is Status.RESOLVED:
        return
    if event.on:
        until = draft.now + draft.settings.typing_timeout
        draft.emit(SetTimer(Timer(TimerKind.TYPING, key), until))
        conversation = evolve(found, visitor_typing_until=until)
        if found.visitor_typing_until is None:
            draft.notify("typing", conversation)
    elif found.visitor_typing_until is not None:
        draft.emit(CancelTimer(Timer(TimerKind.TYPING, key)))
        conversation = evolve(found, visitor_typing_until=None)
        draft.notify("typing", conversation)
    else:
        return
    draft.put(conversation, durable=False)


def leave_contact(draft: Draft, event: LeaveContact) -> None:
    key = conversation_id_for(event.route, event.visitor)
    found = draft.get(key)
    if found is None:
        raise InvalidMove(key, "unknown", "leave a contact", "write a message first")
    email = event.email.strip()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise InvalidMove(key, describe_state(found), "leave a contact",
                          "not an email address")
    conversation = evolve(found, contact=email)
    if draft.settings.contact_message:
        conversation = notice(draft, conversation,
                              draft.settings.contact_message.replace("{email}", email))
    draft.put(conversation)
    draft.notify("updated", conversation)
