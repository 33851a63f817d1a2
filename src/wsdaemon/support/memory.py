"""
Conversations kept in memory: the L{IConversationStore} contract without a
file (its Deferreds have fired already), for tests and throw-away inboxes.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from wsdaemon.conversations.effects import Commit
from wsdaemon.conversations.errors import StaleConversation
from wsdaemon.conversations.model import Conversation, Message, Note, Status
from wsdaemon.support.ports import IConversationStore

__all__ = ["MemoryConversationStore", "stored_form"]


def stored_form(conversation: Conversation) -> Conversation:
    """What a store gives back of a conversation: without its ephemeral fields."""
    return replace(conversation, typing=(), visitor_typing_until=None)


@implementer(IConversationStore)
class MemoryConversationStore:
    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {}
        self.message_log: dict[str, dict[int, Message]] = {}
        self.note_log: dict[str, dict[int, Note]] = {}

    def open(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)

    def commit(self, commit: Commit) -> Deferred[None]:
        stale = [c.conversation_id for c in commit.conversations
                 if self._version(c.conversation_id) != c.version - 1]
        stale += [m.conversation_id for m in commit.messages
                  if m.seq in self.message_log.get(m.conversation_id, {})]
        stale += [n.conversation_id for n in commit.notes
                  if n.note_id in self.note_log.get(n.conversation_id, {})]
        if stale:
            return fail(StaleConversation(tuple(dict.fromkeys(stale))))
        for conversation in commit.conversations:
            self.conversations[conversation.conversation_id] = stored_form(conversation)
        for message in commit.messages:
            self.message_log.setdefault(message.conversation_id, {})[message.seq] = message
        for note in commit.notes:
            self.note_log.setdefault(note.conversation_id, {})[note.note_id] = note
        return succeed(None)

    def _version(self, conversation_id: str) -> int:
        found = self.conversations.get(conversation_id)
        return 0 if found is None else found.version

    def load_live(self) -> Deferred[list[Conversation]]:
        live = [c for c in self.conversations.values() if c.status is not Status.RESOLVED]
        return succeed(sorted(live, key=lambda c: (c.opened_at, c.conversation_id)))

    def load(self, conversation_id: str) -> Deferred[Conversation | None]:
        return succeed(self.conversations.get(conversation_id))

    def messages(self, conversation_id: str, after: int = 0,
                 limit: int = 100) -> Deferred[list[Message]]:
        log = self.message_log.get(conversation_id, {})
        return succeed([log[seq] for seq in sorted(log) if seq > after][:limit])

    def history(self, conversation_id: str, before: int | None = None,
                limit: int = 100) -> Deferred[list[Message]]:
        log = self.message_log.get(conversation_id, {})
        seqs = [seq for seq in sorted(log) if before is None or seq < before]
        return succeed([log[seq] for seq in seqs[-limit:]] if limit else [])

    def notes(self, conversation_id: str, before: int | None = None,
              limit: int = 100) -> Deferred[list[Note]]:
        log = self.note_log.get(conversation_id, {})
        ids = [n for n in sorted(log) if before is None or n < before]
        return succeed([log[n] for n in ids[-limit:]] if limit else [])
