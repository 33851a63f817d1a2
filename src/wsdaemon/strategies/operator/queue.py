"""
The operator queue: client messages become items that operators claim and
answer; replies reach the client now or when it next connects.

The queue's in-memory items (each an L{QueueItem} state machine) decide every
transition, synchronously, on the reactor thread: two operators can never
both claim or both answer an item. Every transition is committed to the
store I{before} the item moves in memory: while a commit is under way the
item is busy (other moves are refused), and a failed commit leaves it where
it was, open and answerable. An item is accepted (acknowledged to the
client, shown to operators) only once the store has it.

Bounded: open items per client, per route and in all, and the size of one
message, are capped (L{OperatorSettings}); only a preview of each text is
kept in memory. Nothing on the enqueue and acknowledge path is O(n) in the
queue's length.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wsdaemon.config import OperatorSettings
from wsdaemon.interfaces import ISession
from wsdaemon.records import ItemRecord, MessageRecord
from wsdaemon.strategies.operator.delivery import LocalDelivery, write
from wsdaemon.strategies.operator.delivery import log_failure as _log_failure
from wsdaemon.strategies.operator.deprecation import warn_queue_deprecated
from wsdaemon.strategies.operator.errors import QueueError, QueueRefused, check_sendable, send_limit
from wsdaemon.strategies.operator.item import InvalidTransition, QueueItem
from wsdaemon.strategies.operator.openitems import OpenItems
from wsdaemon.strategies.operator.ports import IOperatorQueue, IQueueStore
from wsdaemon.strategies.operator.timers import RETRY_AFTER, TimedMoves

__all__ = ["RETRY_AFTER", "OperatorLink", "OperatorQueue", "OperatorSettings", "QueueError",
           "QueueRefused"]

_log = Logger(namespace="wsdaemon.operators")

class OperatorLink(Protocol):
    """
    An operator's connection, as the queue sees it.
    """

    name: str

    def notify(self, event: dict[str, Any]) -> None: ...


def _why(failure: Failure) -> str:
    return failure.getErrorMessage()[:200] or type(failure.value).__name__


@implementer(IOperatorQueue)
class OperatorQueue(TimedMoves):
    """
    @param store: where items and conversations are kept.
    @param clock: leases and fallback timers.
    @param new_id: makes item ids (injectable for tests).
    @ivar send_limits: route -> the largest message (bytes) its clients
        accept; C{""} for a client whose route is not known. Kept up to date
        by the web root on every (re)load.
    """

    def __init__(self, settings: OperatorSettings, store: IQueueStore, clock: IReactorTime,
                 new_id: Callable[[], str] = lambda: secrets.token_hex(6)) -> None:
        self.settings = settings
        self.store = store
        self._clock = clock
        self._new_id = new_id
        self._items = OpenItems()
        self._order = itertools.count(1)
        self._held: dict[OperatorLink, set[str]] = {}
        self._delivery = LocalDelivery(store, on_failed=self._undeliverable)
        self._operators: set[OperatorLink] = set()
        self.started = False
        self._waiting: list[Deferred[None]] = []
        self.send_limits: dict[str, int] = {}

    # -- life ----------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """
        Open the store and take back every item not yet answered.
        """
        warn_queue_deprecated(f"the SQLite file {self.settings.store_path}")
        d: Deferred[Any] = self.store.open()
        d.addCallback(lambda _: self.store.load_open_items(self.settings.preview_chars))
        d.addCallback(self._restore)
        return d

    def _restore(self, loaded: list[tuple[ItemRecord, int]]) -> None:
        for record, length in loaded:
            item = QueueItem.restore(record)
            item.length = length
            self._add(item)
            if record.state == "claimed":
                # Stored as claimed, read back as queued: storing the
                # release only tidies the store.
                self.store.update_item(item.record).addErrback(
                    _log_failure("release a claim left over from before a restart"))
            self._schedule_fallback(item)
        self.started = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        _log.info("operator queue: {count} open item(s) restored from {path}",
                  count=len(loaded), path=str(self.settings.store_path))

    def when_started(self) -> Deferred[None]:
        """
        @return: a Deferred firing once the store is open and items restored.
        """
        if self.started:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def stop(self) -> Deferred[None]:
        """
        Cancel the timers and let the store finish its writes.
        """
        for item in self._items.iter():
            self._cancel_timers(item)
        return self.store.close()

    # -- the open items ------------------------------------------------------

    def _add(self, item: QueueItem) -> None:
        item.order = next(self._order)
        self._items.add(item)

    def _forget(self, item: QueueItem) -> None:
        self._items.remove(item)
        self._cancel_timers(item)

    def count_open(self) -> int:
        return len(self._items)

    def iter_open(self, client_id: str | None = None) -> Iterator[QueueItem]:
        """
        @return: the open items (of one client), oldest first.
        """
        return self._items.iter(client_id)

    def open_items(self) -> list[QueueItem]:
        return list(self._items.iter())

    # -- clients -------------------------------------------------------------

    def client_connected(self, session: ISession) -> Deferred[int]:
        """
        Track the client and deliver what was kept for it while it was away.

        @return: a Deferred firing with how many kept messages were sent.
        """
        self._delivery.connected(session)
        d: Deferred[Any] = self.when_started()
        d.addCallback(lambda _: self._delivery.send_backlog(session))
        d.addErrback(_log_failure("delivering kept replies"))
        return d

    def client_disconnected(self, session: ISession) -> None:
        self._delivery.disconnected(session)

    def enqueue(self, session: ISession, text: str) -> Deferred[QueueItem]:
        """
        Turn a client message into an item.

        @return: a Deferred firing with the item once the store has it, or
            failing with L{QueueRefused} (over a cap: nothing stored).
        """
        client, route = session.client_id, session.route
        try:
            settle = self._items.reserve(self.settings, client, route, text)
        except QueueRefused:
            return fail()
        now = self._clock.seconds()
        record = ItemRecord(item_id=self._new_id(), route=route, client_id=client, text=text,
                            created_at=now)
        message = MessageRecord(client_id=client, route=route, direction="in", sender="client",
                                body=text, at=now, item_id=record.item_id)

        def settled(result: Any) -> Any:
            settle()
            return result

        d: Deferred[Any] = self.when_started()
        d.addCallback(lambda _: self.store.add_item(record, message))
        d.addBoth(settled)
        d.addCallback(lambda _: self._accepted(record))
        return d

    def _accepted(self, record: ItemRecord) -> QueueItem:
        preview = self.settings.preview_chars
        item = QueueItem(replace(record, text=record.text[:preview]) if preview else record)
        item.length = len(record.text)
        self._add(item)
        self._broadcast_to_operators({"type": "item", "item": self.describe(item)})
        if not self._operators and self.settings.fallback_when_offline:
            self._fallback(item)
        else:
            self._schedule_fallback(item)
        return item

    def position(self, item: QueueItem) -> int:
        """
        @return: 1 for the oldest open item, 2 for the next... (O(log n)).
        """
        return self._items.position(item.item_id)

    # -- operators -----------------------------------------------------------

    def add_operator(self, operator: OperatorLink) -> None:
        self._operators.add(operator)
        _log.info("operator {name} online ({count} online)", name=operator.name,
                  count=len(self._operators))

    def remove_operator(self, operator: OperatorLink) -> None:
        """
        The operator left: every item it held goes back to the queue.
        """
        self._operators.discard(operator)
        for item_id in list(self._held.get(operator, ())):
            item = self._items.get(item_id)
            if item is not None and item.holder is operator:
                self._release(item, "its operator disconnected")
        _log.info("operator {name} offline ({count} online)", name=operator.name,
                  count=len(self._operators))

    @property
    def operators_online(self) -> int:
        return len(self._operators)

    def find(self, item_id: str) -> QueueItem:
        """
        @param item_id: an item id, or an unambiguous prefix of one.
        @raise QueueError: if no open item (or several) match.
        """
        return self._items.find(item_id)

    def oldest_unclaimed(self) -> QueueItem:
        return self._items.oldest_unclaimed()

    def _check_free(self, item: QueueItem, operator: OperatorLink) -> None:
        if item.busy:
            raise QueueError(f"item {item.item_id} is being changed right now; try again")
        if item.state == "claimed" and item.holder is not operator:
            raise QueueError(f"item {item.item_id} is claimed by {item.record.operator}")

    def claim(self, item_id: str, operator: OperatorLink) -> Deferred[QueueItem]:
        """
        @return: a Deferred firing with the item once the claim is stored.
        @raise QueueError: at once, if the item is not there to claim.
        """
        item = self.find(item_id)
        self._check_free(item, operator)
        if item.holder is operator:
            self._renew_lease(item)
            return succeed(item)
        claimed = replace(item.record, state="claimed", operator=operator.name)

        def stored(_: Any) -> QueueItem:
            try:
                item.claim(operator.name, operator)
            except InvalidTransition as e:  # pragma: no cover - busy kept others out
                raise QueueError(str(e)) from None
            self._held.setdefault(operator, set()).add(item.item_id)
            self._renew_lease(item)
            self._broadcast_to_operators({"type": "updated", "item": self.describe(item)})
            return item

        return self._commit(item, lambda: self.store.update_item(claimed), stored, "claim")

    def _commit(self, item: QueueItem, store: Callable[[], Deferred[Any]],
                stored: Callable[[Any], Any], what: str) -> Deferred[Any]:
        """
        Hold the item busy while C{store} (its commit) runs; then move it
        with C{stored}, or leave it as it was and tell the operator why.
        """
        item.busy = True
        d: Deferred[Any] = maybeDeferred(store)

        def done(result: Any) -> Any:
            item.busy = False
            return result

        def failed(failure: Failure) -> None:
            _log.failure("operator queue: storing a {what} of item {item_id} failed; "
                         "the item is unchanged", failure=failure, what=what,
                         item_id=item.item_id)
            raise QueueError(f"could not store the {what} ({_why(failure)}); item "
                             f"{item.item_id} is unchanged: try again")

        d.addBoth(done)
        d.addCallbacks(stored, failed)
        return d

    def release(self, item_id: str, operator: OperatorLink) -> Deferred[QueueItem]:
        item = self.find(item_id)
        if item.holder is not operator:
            raise QueueError(f"item {item.item_id} is not claimed by you")
        self._check_free(item, operator)
        released = replace(item.record, state="queued", operator=None)

        def stored(_: Any) -> QueueItem:
            self._released(item, f"{operator.name} released it")
            return item

        return self._commit(item, lambda: self.store.update_item(released), stored,
                            "release")

    def reply(
        self, item_id: str | None, operator: OperatorLink, text: str
    ) -> Deferred[dict[str, Any]]:
        """
        Answer an item (the oldest unclaimed one for None), claiming it first
        if it is queued. Answered exactly once: a second reply is refused.
        A text its client could never receive is refused before anything is
        stored.

        @return: a Deferred firing with C{{"item": ..., "delivered": N}}
            once the reply is stored (N: connections it was written to now).
        """
        item = self.oldest_unclaimed() if item_id is None else self.find(item_id)
        route = item.record.route
        check_sendable(text, send_limit(self.send_limits, route), route)
        self._check_free(item, operator)
        now = self._clock.seconds()
        record = item.record
        answered = replace(record, state="answered", operator=operator.name, answered_at=now)
        reply = MessageRecord(client_id=record.client_id, route=route, direction="out",
                              sender=operator.name, body=text, at=now, item_id=item.item_id)

        def stored(seq: int) -> dict[str, Any]:
            if item.state == "queued":
                item.claim(operator.name, operator)
            item.answer(operator.name, now)
            self._drop_hold(item, operator)
            self._forget(item)
            delivered = self._delivery.deliver(replace(reply, seq=seq))
            return self._answered(item, delivered)

        return self._commit(item, lambda: self.store.answer_item(answered, reply), stored,
                            "reply")

    def _answered(self, item: QueueItem, delivered: int) -> dict[str, Any]:
        self._broadcast_to_operators({"type": "updated", "item": self.describe(item)})
        _log.info("item {item_id} answered by {operator} ({delivered} connection(s) now)",
                  item_id=item.item_id, operator=item.record.operator, delivered=delivered)
        return {"item": self.describe(item), "delivered": delivered}

    def _limit_for(self, client_id: str) -> tuple[str, int]:
        route = self._delivery.route_of(client_id)
        return route, send_limit(self.send_limits, route)

    def push(self, client_id: str, text: str,
             operator: OperatorLink) -> Deferred[dict[str, int]]:
        """
        Send to one client; kept for it if it is not connected.

        @return: a Deferred firing with C{{"delivered": N, "kept": K}}: how
            many connections got it now, and 1 if it waits for the client's
            next connection (else 0).
        """
        route, limit = self._limit_for(client_id)
        check_sendable(text, limit, route)
        message = MessageRecord(client_id=client_id, route=route, direction="out",
                                sender=operator.name, body=text, at=self._clock.seconds())

        def stored(seq: int) -> dict[str, int]:
            count, kept = self._delivery.deliver_or_keep(replace(message, seq=seq))
            return {"delivered": count, "kept": int(kept)}

        d: Deferred[Any] = self.store.add_message(message)
        d.addCallback(stored)
        return d

    def broadcast(self, route: str, text: str, operator: OperatorLink) -> Deferred[int]:
        """
        Send to every client connected to C{route} now (not kept for others).

        @return: a Deferred firing with how many connections got it.
        """
        check_sendable(text, send_limit(self.send_limits, route), route)
        now = self._clock.seconds()
        targets = self._delivery.on_route(route)
        probe = MessageRecord(client_id="", route=route, direction="out",
                              sender=operator.name, body=text, at=now)
        count, _ = write(probe, [session for _, session in targets])
        for client_id in {client_id for client_id, _ in targets}:
            self.store.add_message(replace(probe, client_id=client_id, delivered=True)) \
                .addErrback(_log_failure("storing a broadcast"))
        return succeed(count)

    def transcript(self, client_id: str | None, before: int | None = None,
                   limit: int | None = None) -> Deferred[list[MessageRecord]]:
        result: Deferred[list[MessageRecord]] = self.store.transcript(client_id, before, limit)
        return result

    def full_text(self, item_id: str | None = None,
                  seq: int | None = None) -> Deferred[str | None]:
        """
        @return: a Deferred firing with an item's whole text (open or not;
            an open one may be named by a prefix) or a message's whole body.
        """
        if seq is not None:
            return self.store.message_body(seq)
        assert item_id is not None
        found = self._items.get(item_id)
        if found is None:
            try:
                found = self.find(item_id)
            except QueueError:
                found = None
        return self.store.item_text(found.item_id if found is not None else item_id)

    def clients(self) -> list[dict[str, Any]]:
        return self._delivery.clients()

    def describe(self, item: QueueItem) -> dict[str, Any]:
        described = item.record.to_json()
        described["state"] = item.state
        described["online"] = self._delivery.is_here(item.record.client_id)
        described["length"] = item.length
        described["order"] = item.order
        return described

    # -- internals -----------------------------------------------------------

    def _drop_hold(self, item: QueueItem, operator: Any) -> None:
        held = self._held.get(operator)
        if held is not None:
            held.discard(item.item_id)
            if not held:
                del self._held[operator]

    def _released(self, item: QueueItem, why: str) -> None:
        self._drop_hold(item, item.holder)
        item.release()
        if item.lease_call is not None and item.lease_call.active():
            item.lease_call.cancel()
        item.lease_call = None
        _log.info("item {item_id} back in the queue: {why}", item_id=item.item_id, why=why)
        self._broadcast_to_operators({"type": "updated", "item": self.describe(item)})

    def _undeliverable(self, message: MessageRecord, error: str) -> None:
        _log.warn("message {seq} for client {client_id} can never be written ({error}); "
                  "marked failed", seq=message.seq, client_id=message.client_id, error=error)
        self._broadcast_to_operators({"type": "undeliverable", "seq": message.seq,
                                      "client_id": message.client_id, "item_id": message.item_id,
                                      "error": error[:200]})

    def _broadcast_to_operators(self, event: dict[str, Any]) -> None:
        for operator in list(self._operators):
            try:
                operator.notify(event)
            except Exception:
                _log.failure("notifying operator {name}", name=operator.name)
