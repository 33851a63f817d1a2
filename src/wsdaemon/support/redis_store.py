"""
Conversations in Redis: the L{IConversationStore} several daemons share,
on the broker's link (docs/conversations.md, section 5; the keys and the
scripts are in L{wsdaemon.support.redis_scripts}).

A commit is one script: every conversation's stored version checked (the
one it was decided on), every message and note number checked new, then
everything written and the change appended to the event stream, or, on a
clash, nothing and L{StaleConversation}. Two daemons deciding on the same
conversation at once: the first script wins, the second is refused whole.

When Redis cannot be reached a call fails as the link's calls do:
L{wsdaemon.errors.BrokerUnavailable} (not done) or
L{wsdaemon.errors.BrokerOutcomeUnknown} (sent, no answer: the commit may
have landed; the caller's retry then comes back stale, and it reloads).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from wsdaemon.conversations.codec import message_from_row, note_from_row
from wsdaemon.conversations.effects import Commit
from wsdaemon.conversations.errors import StaleConversation
from wsdaemon.conversations.model import Bounds, Conversation, Message, Note
from wsdaemon.support.ports import IConversationStore
from wsdaemon.support.redis_migration import QueueTakeOver
from wsdaemon.support.redis_scripts import (
    COMMIT,
    LIVE_PAGE,
    RedisCalls,
    ScriptRunner,
    conversation_from_hash,
    write_args,
)

__all__ = ["EVENTS_KEPT", "LIVE_PAGE_SIZE", "RedisConversationStore"]

#: Conversations one L{RedisConversationStore.load_live} reply holds, at
#: most: 100,000 live conversations load in 100 replies of bounded size.
LIVE_PAGE_SIZE = 1000
#: Entries the event stream keeps, about (as the broker's own events:
#: C{MAXLEN ~}, so Redis trims whole nodes of up to 100 entries).
EVENTS_KEPT = 100_000


@implementer(IConversationStore)
class RedisConversationStore:
    """
    @param link: the broker's link (L{wsdaemon.broker.link.RedisLink}; any
        L{RedisCalls}): its timeouts and outage errors are the store's.
    @param prefix: the broker's key prefix (C{[broker] prefix}).
    @param clock: when the operator queue's keys were taken over, and the
        wait while another daemon takes them over.
    @param bounds: what a conversation taken over from the queue may hold.
    @param page_size: conversations per C{load_live} reply (L{LIVE_PAGE_SIZE}).
    @param events_kept: the event stream's length (L{EVENTS_KEPT}).
    """

    def __init__(self, link: RedisCalls, prefix: str, clock: IReactorTime,
                 bounds: Bounds | None = None, page_size: int = LIVE_PAGE_SIZE,
                 events_kept: int = EVENTS_KEPT) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        self.prefix = prefix
        self._link = link
        self._clock = clock
        self._bounds = bounds or Bounds()
        self._scripts = ScriptRunner(link)
        self.page_size = page_size
        self.events_kept = events_kept
        self._pending: set[Deferred[Any]] = set()
        #: Each operator's raises counted, read with the last L{load_live}'s
        #: first page: the loaded records' loads hold at least those.
        self.loaded_team_raised: dict[str, int] = {}

    def _key(self, conversation_id: str, suffix: str = "") -> str:
        return f"{self.prefix}c:{conversation_id}{suffix}"

    def _tracked(self, d: Deferred[Any]) -> Deferred[Any]:
        """Remember C{d} until it fires, so that L{close} waits for it."""
        self._pending.add(d)

        def done(result: Any) -> Any:
            self._pending.discard(d)
            return result

        d.addBoth(done)
        return d

    def open(self) -> Deferred[None]:
        """
        Take over the operator queue's keys, once (see
        L{wsdaemon.support.redis_migration}); nothing else to prepare.
        """
        take_over = QueueTakeOver(self._link, self._scripts, self.prefix, self._clock,
                                  self._bounds)
        d: Deferred[Any] = take_over.run()
        d.addCallback(lambda _: None)
        return d

    def close(self) -> Deferred[None]:
        """
        Wait for the calls under way (the link is the daemon's: it stays).
        """
        if not self._pending:
            return succeed(None)
        d = DeferredList(list(self._pending), consumeErrors=True)
        return d.addCallback(lambda _: None)

    def commit(self, commit: Commit, news: Mapping[str, Any] | None = None) -> Deferred[None]:
        """
        @param news: more fields for the commit's event in the stream (what
            the other daemons carry out: L{wsdaemon.support.redis_feed}),
            appended by the same script, so the event exists exactly when
            the commit does.
        """
        d = self._scripts.run(COMMIT, self.prefix,
                              *write_args(commit, "commit", self.events_kept, news))

        def landed(reply: list[Any]) -> None:
            if reply[0] == "stale":
                raise StaleConversation(tuple(str(key) for key in reply[1:]))

        d.addCallback(landed)
        return self._tracked(d)

    def load_live(self) -> Deferred[list[Conversation]]:
        """
        Page by page (at most L{page_size} conversations a reply), each
        page after the last one's (opened_at, id): however many live
        conversations there are, no reply is bigger than a page.
        """
        return self._tracked(self._load_live())

    @inlineCallbacks
    def _load_live(self) -> Any:
        loaded: list[Conversation] = []
        score, last = "", ""
        first = True
        while True:
            count, last, score, page, team = yield self._scripts.run(
                LIVE_PAGE, self.prefix, score, last, self.page_size)
            if first:
                # Read with the first page: the loaded loads are at least this far.
                first = False
                pairs = iter(json.loads(team) or ())
                self.loaded_team_raised = {str(name): int(count)
                                           for name, count in zip(pairs, pairs, strict=True)}
            loaded.extend(conversation_from_hash(row) for row in json.loads(page))
            if int(count) < self.page_size:
                return loaded

    def load(self, conversation_id: str) -> Deferred[Conversation | None]:
        d = self._link.call("HGETALL", self._key(conversation_id))
        d.addCallback(lambda pairs: conversation_from_hash(pairs) if pairs else None)
        return self._tracked(d)

    def messages(self, conversation_id: str, after: int = 0,
                 limit: int = 100) -> Deferred[list[Message]]:
        if limit <= 0:
            return succeed([])
        d = self._link.call("ZRANGEBYSCORE", self._key(conversation_id, ":m"),
                            f"({after}", "+inf", "LIMIT", "0", str(limit))
        d.addCallback(lambda found: [message_from_row(json.loads(m)) for m in found])
        return self._tracked(d)

    def history(self, conversation_id: str, before: int | None = None,
                limit: int = 100) -> Deferred[list[Message]]:
        d = self._newest(self._key(conversation_id, ":m"), before, limit)
        d.addCallback(lambda found: [message_from_row(json.loads(m)) for m in found])
        return self._tracked(d)

    def notes(self, conversation_id: str, before: int | None = None,
              limit: int = 100) -> Deferred[list[Note]]:
        d = self._newest(self._key(conversation_id, ":n"), before, limit)
        d.addCallback(lambda found: [note_from_row(json.loads(n)) for n in found])
        return self._tracked(d)

    def _newest(self, key: str, before: int | None, limit: int) -> Deferred[list[str]]:
        """The newest C{limit} members scored below C{before}, oldest first."""
        if limit <= 0:
            return succeed([])
        upper = "+inf" if before is None else f"({before}"
        d = self._link.call("ZREVRANGEBYSCORE", key, upper, "-inf", "LIMIT", "0", str(limit))
        d.addCallback(lambda found: list(reversed(found)))
        return d
