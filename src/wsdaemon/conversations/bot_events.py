"""
Bot first (issue 22, item 5): on a route whose bot answers first, a new
episode is the bot's. Its answers are messages of the thread (author
C{bot}, shown to operators as the bot's part); the conversation is not in
the operators' queue, gets no acknowledgement or offline notice and no
timers, until the bot hands it over (L{Handoff}: then it opens for the
operators as any conversation does, notices and routing included) or an
operator takes it (replies, assigns, snoozes).

What the bot owes is stored with the conversation (C{bot_due},
C{bot_handoff}): a visitor message to the bot is owed an answer from when
it is stored (in its own commit); a L{BotPending} extends it (delayed
messages, a handoff after them, a backend's request). The bot's reply
at or after that time, one that C{settles}, a L{BotPending} with no time
(silence is its answer) or the handoff clear it; still there L{BOT_GRACE}
past its time (the daemon that was to answer stopped or crashed, or a
reload replaced the bot), the core hands the conversation over
(L{overdue}), the owed handoff's reason (or L{LOST}) as the note, so no
visitor is left with a bot that stopped.
"""

from __future__ import annotations

from wsdaemon.conversations.effects import Measure, Metric
from wsdaemon.conversations.errors import InvalidMove
from wsdaemon.conversations.events import BotPending, BotReply, Handoff
from wsdaemon.conversations.model import (
    Author,
    Conversation,
    Note,
    Status,
    conversation_id_for,
    describe_state,
    evolve,
)
from wsdaemon.conversations.moves import place
from wsdaemon.conversations.transition import Draft
from wsdaemon.conversations.visitor_events import notices

__all__ = ["BOT_NOTE_AUTHOR", "LOST", "MAX_REASON", "bot_pending", "bot_reply", "handoff",
           "overdue"]

#: Characters of a handoff's reason kept (shown to operators).
MAX_REASON = 200
#: Whom the note saying why the bot handed over is from.
BOT_NOTE_AUTHOR = "bot"
#: The note's reason when what the bot owed never came (its delayed
#: messages, its backend's answer).
LOST = "the bot did not finish its answer (its daemon stopped, or the bot changed, first)"
#: A delayed message committed this close before its due time is its last.
_EARLY = 0.001


def bot_reply(draft: Draft, event: BotReply) -> None:
    key = conversation_id_for(event.route, event.visitor)
    found = draft.get(key)
    if found is None or found.status is not Status.OPEN or not found.with_bot:
        state = "unknown" if found is None else describe_state(found)
        raise InvalidMove(key, state, "answer as the bot",
                          "the operators have it" if found is not None else
                          "no such conversation")
    if not event.text.strip():
        raise InvalidMove(key, describe_state(found), "answer as the bot", "the text is empty")
    conversation, message = draft.append(found, Author.BOT, event.text,
                                         display_name=event.name)
    # The bot answered: nothing waits (the cap on unanswered messages counts
    # again from here, as after an operator's reply).
    conversation = evolve(conversation, waiting_since=None, unanswered=0)
    due = found.bot_due
    if event.settles:
        conversation = evolve(conversation, bot_due=None, bot_handoff=None)
    elif due is not None and found.bot_handoff is None and draft.now >= due - _EARLY:
        # The last of what it owed (a handoff owed clears it when it comes).
        conversation = evolve(conversation, bot_due=None)
    draft.put(conversation)
    draft.deliver(conversation, message)
    draft.notify("message", conversation, message=message)


def bot_pending(draft: Draft, event: BotPending) -> None:
    key = conversation_id_for(event.route, event.visitor)
    found = draft.get(key)
    if found is None or found.status is not Status.OPEN or not found.with_bot:
        return  # the operators have it: the bot owes nothing
    if event.until is None:  # it owes nothing any more
        if found.bot_due is not None or found.bot_handoff is not None:
            draft.put(evolve(found, bot_due=None, bot_handoff=None))
        return
    until = event.until if found.bot_due is None else max(found.bot_due, event.until)
    reason = found.bot_handoff
    if event.handoff is not None:
        reason = " ".join(event.handoff.split())[:MAX_REASON]
    if (until, reason) != (found.bot_due, found.bot_handoff):
        draft.put(evolve(found, bot_due=until, bot_handoff=reason))


def handoff(draft: Draft, event: Handoff) -> None:
    key = conversation_id_for(event.route, event.visitor)
    found = draft.get(key)
    if found is None or found.status is not Status.OPEN or not found.with_bot:
        return  # the operators have it already: nothing to hand over
    _hand_over(draft, found, event.reason)


def overdue(draft: Draft, found: Conversation) -> None:
    """
    What the bot owed is overdue (a timer): handed over, its reason the
    note, and measured (C{wsdaemon_bot_handoffs_total{reason="overdue"}}).
    """
    due = found.bot_due if found.bot_due is not None else draft.now
    _hand_over(draft, found, found.bot_handoff or LOST)
    draft.emit(Measure(Metric.BOT_OVERDUE, found.route, max(0.0, draft.now - due)))


def _hand_over(draft: Draft, found: Conversation, reason: str) -> None:
    key = found.conversation_id
    now = draft.now
    # The visitor now waits for a person, from now; its request is the
    # unanswered message (at least one: the cap counts it).
    conversation = evolve(found, with_bot=False, waiting_since=now,
                           unanswered=max(1, found.unanswered), bot_due=None, bot_handoff=None)
    conversation = place(draft, conversation)
    reason = " ".join(reason.split())[:MAX_REASON]
    if reason:
        # Why the bot gave up, for the operators: a private note by "bot".
        note = Note(key, conversation.note_count + 1, BOT_NOTE_AUTHOR,
                    f"handed over: {reason}", now)
        draft.add_note(note)
        conversation = evolve(conversation, note_count=note.note_id,
                               notes=(*conversation.notes, note)[-draft.bounds.max_notes_kept:])
        draft.notify("note", conversation, note=note)
    draft.notify("updated", conversation)
    draft.put(notices(draft, conversation))
