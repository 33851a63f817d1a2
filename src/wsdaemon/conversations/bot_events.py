"""
Bot first (issue 22, item 5): on a route whose bot answers first, a new
episode is the bot's. Its answers are messages of the thread (author
C{bot}, shown to operators as the bot's part); the conversation is not in
the operators' queue, gets no acknowledgement or offline notice and no
timers, until the bot hands it over (L{Handoff}: then it opens for the
operators as any conversation does, notices and routing included) or an
operator takes it (replies, assigns, snoozes).
"""

from __future__ import annotations

from wsdaemon.conversations.errors import InvalidMove
from wsdaemon.conversations.events import BotReply, Handoff
from wsdaemon.conversations.model import (
    Author,
    Note,
    Status,
    conversation_id_for,
    describe_state,
    evolve,
)
from wsdaemon.conversations.moves import place
from wsdaemon.conversations.transition import Draft
from wsdaemon.conversations.visitor_events import notices

__all__ = ["BOT_NOTE_AUTHOR", "MAX_REASON", "bot_reply", "handoff"]

#: Characters of a handoff's reason kept (shown to operators).
MAX_REASON = 200
#: Whom the note saying why the bot handed over is from.
BOT_NOTE_AUTHOR = "bot"


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
    draft.put(conversation)
    draft.deliver(conversation, message)
    draft.notify("message", conversation, message=message)


def handoff(draft: Draft, event: Handoff) -> None:
    key = conversation_id_for(event.route, event.visitor)
    found = draft.get(key)
    if found is None or found.status is not Status.OPEN or not found.with_bot:
        return  # the operators have it already: nothing to hand over
    now = draft.now
    # The visitor now waits for a person, from now; its request is the
    # unanswered message (at least one: the cap counts it).
    conversation = evolve(found, with_bot=False, waiting_since=now,
                           unanswered=max(1, found.unanswered))
    conversation = place(draft, conversation)
    reason = " ".join(event.reason.split())[:MAX_REASON]
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
