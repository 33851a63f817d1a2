"""
What the conversation driver's tests run it with: ports that record what
they are told, and a memory store whose commits land (or fail) when the
test says.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from zope.interface import implementer

from wsdaemon.conversations import (
    Commit,
    ConversationSettings,
    DeliverMessage,
    Inbox,
    conversation_id_for,
)
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.memory import MemoryConversationStore
from wsdaemon.support.ports import (
    IConversationMeasures,
    IConversationStore,
    IOperatorPort,
    IVisitorPort,
)

ROUTE = "/support"


def cid(visitor: str, route: str = ROUTE) -> str:
    return conversation_id_for(route, visitor)


@implementer(IVisitorPort, IOperatorPort, IConversationMeasures)
class RecordingPorts:
    """
    Every port at once, recording each effect it is given, in order.

    @ivar plain: what C{deliver} answers (True: a plain-text connection took it).
    @ivar unstored: deliveries of a message the store did not hold yet.
    """

    def __init__(self, store: GatedStore) -> None:
        self.store = store
        self.said: list[Any] = []
        self.plain = False
        self.broken: type | None = None
        self.unstored: list[DeliverMessage] = []

    def _record(self, effect: Any) -> None:
        if self.broken is not None and isinstance(effect, self.broken):
            raise RuntimeError("port broken")
        self.said.append(effect)

    def deliver(self, effect: DeliverMessage) -> bool:
        message = effect.message
        if message.seq not in self.store.inner.message_log.get(message.conversation_id, {}):
            self.unstored.append(effect)
        self._record(effect)
        return self.plain

    def tell(self, effect: Any) -> None:
        self._record(effect)

    def announce(self, effect: Any) -> None:
        self._record(effect)

    def notify(self, effect: Any) -> None:
        self._record(effect)

    def team_changed(self, effect: Any) -> None:
        self._record(effect)

    def observe(self, effect: Any) -> None:
        self._record(effect)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.said if isinstance(e, kind)]


@implementer(IConversationStore)
class GatedStore:
    """
    The memory store; while C{gated}, each commit is held until the test
    lands it (L{land}) or fails it (L{refuse}). C{error}: every commit fails
    with it at once.

    @ivar overlaps: commits made while another commit of the same
        conversation was in flight (the driver must never make one).
    """

    def __init__(self, inner: MemoryConversationStore | None = None) -> None:
        self.inner = inner if inner is not None else MemoryConversationStore()
        self.gated = False
        self.error: Exception | None = None
        self.held: list[tuple[Commit, Deferred[None]]] = []
        self.overlaps: list[Commit] = []
        self.opened = self.closed = 0

    def open(self) -> Deferred[None]:
        self.opened += 1
        return self.inner.open()

    def close(self) -> Deferred[None]:
        self.closed += 1
        return self.inner.close()

    def commit(self, commit: Commit) -> Deferred[None]:
        if self.error is not None:
            return fail(self.error)
        flying = {c.conversation_id for held, _ in self.held for c in held.conversations}
        if flying & {c.conversation_id for c in commit.conversations}:
            self.overlaps.append(commit)
        if not self.gated:
            return self.inner.commit(commit)
        landing: Deferred[None] = Deferred()
        self.held.append((commit, landing))
        return landing

    def land(self, index: int = 0) -> None:
        commit, landing = self.held.pop(index)
        self.inner.commit(commit).chainDeferred(landing)

    def refuse(self, index: int, error: Exception) -> None:
        _, landing = self.held.pop(index)
        landing.errback(error)

    def land_all(self) -> None:
        while self.held:
            self.land(0)

    def held_for(self, conversation_id: str) -> int:
        return sum(1 for commit, _ in self.held
                   if any(c.conversation_id == conversation_id for c in commit.conversations))

    def load_live(self) -> Any:
        return self.inner.load_live()

    def load(self, conversation_id: str) -> Any:
        return self.inner.load(conversation_id)

    def messages(self, conversation_id: str, after: int = 0, limit: int = 100) -> Any:
        return self.inner.messages(conversation_id, after, limit)

    def history(self, conversation_id: str, before: int | None = None, limit: int = 100) -> Any:
        return self.inner.history(conversation_id, before, limit)

    def notes(self, conversation_id: str, before: int | None = None, limit: int = 100) -> Any:
        return self.inner.notes(conversation_id, before, limit)


class Outcome:
    """What a submitted event came to, once C{called}: a transition or a Failure."""

    def __init__(self) -> None:
        self.called = False
        self.result: Any = None

    def done(self, result: Any) -> None:
        self.called = True
        self.result = result


class Bench:
    """A started driver on a L{GatedStore}, a L{Clock} and L{RecordingPorts}."""

    def __init__(self, settings: ConversationSettings | None = None, *,
                 store: GatedStore | None = None, clock: Clock | None = None,
                 **bounds: int) -> None:
        self.settings = settings or ConversationSettings(fallback_after=0)
        self.store = store if store is not None else GatedStore()
        self.clock = clock if clock is not None else Clock()
        self.ports = RecordingPorts(self.store)
        self.driver = ConversationDriver(self.store, Inbox(self.settings), self.clock,
                                         self.ports, self.ports, self.ports, **bounds)
        started = self.driver.start()
        assert started.called, "the memory store opens at once"

    def submit(self, event: Any) -> Outcome:
        """Submit; the outcome (a transition or a Failure) is kept, failures handled."""
        outcome = Outcome()
        self.driver.submit(event).addBoth(outcome.done)
        return outcome

    def conversation(self, visitor: str) -> Any:
        return self.driver.inbox.conversation(cid(visitor))

    def stored(self, visitor: str) -> Any:
        return self.store.inner.conversations.get(cid(visitor))
