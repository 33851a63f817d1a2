"""
The operator queue: client messages become items that operators claim and
answer; replies reach the client now or when it next connects.

The queue's in-memory items (each an L{QueueItem} state machine) decide every
transition, synchronously, on the reactor thread: two operators can never
both claim or both answer an item. The store only keeps the outcome. An
item is accepted (acknowledged to the client, shown to operators) only once
the store has it.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from wsdaemon.interfaces import IOperatorQueue, IQueueStore, ISession
from wsdaemon.operators.delivery import LocalDelivery
from wsdaemon.operators.delivery import log_failure as _log_failure
from wsdaemon.operators.item import InvalidTransition, QueueItem
from wsdaemon.operators.records import ItemRecord, MessageRecord

__all__ = ["OperatorLink", "OperatorQueue", "OperatorSettings", "QueueError"]

_log = Logger(namespace="wsdaemon.operators")


@dataclass(frozen=True)
class OperatorSettings:
    """
    The C{[operator]} section.

    @ivar tokens: secret token -> operator name.
    @ivar fallback_after: seconds without an answer before the fallback
        message is sent; 0 never.
    """

    store_path: Path
    tokens: Mapping[str, str] = field(default_factory=dict)
    path: str = "/operator"
    console_path: str = "/console"
    lease: float = 120.0
    fallback_after: float = 300.0
    fallback_message: str = (
        "Sorry, no operator could answer yet. We will reply here as soon as one does."
    )
    fallback_when_offline: bool = True
    keep_after_fallback: bool = True
    ack_message: str = "Thanks! Your message is number {position} in the queue."


class QueueError(Exception):
    """
    An operator's request cannot be done; C{str()} says why.
    """


class OperatorLink(Protocol):
    """
    An operator's connection, as the queue sees it.
    """

    name: str

    def notify(self, event: dict[str, Any]) -> None: ...


@implementer(IOperatorQueue)
class OperatorQueue:
    """
    @param store: where items and conversations are kept.
    @param clock: leases and fallback timers.
    @param new_id: makes item ids (injectable for tests).
    """

    def __init__(self, settings: OperatorSettings, store: IQueueStore, clock: IReactorTime,
                 new_id: Callable[[], str] = lambda: secrets.token_hex(6)) -> None:
        self.settings = settings
        self.store = store
        self._clock = clock
        self._new_id = new_id
        self._items: dict[str, QueueItem] = {}
        self._delivery = LocalDelivery(store)
        self._operators: set[OperatorLink] = set()
        self.started = False
        self._waiting: list[Deferred[None]] = []
        self._order = itertools.count()

    # -- life ----------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """
        Open the store and take back every item not yet answered.
        """
        d: Deferred[Any] = self.store.open()
        d.addCallback(lambda _: self.store.load_open_items())
        d.addCallback(self._restore)
        return d

    def _restore(self, records: list[ItemRecord]) -> None:
        for record in records:
            item = QueueItem.restore(record)
            item.order = next(self._order)
            self._items[item.item_id] = item
            if record.state == "claimed":
                self._persist(item, "release a claim left over from before a restart")
            self._schedule_fallback(item)
        self.started = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        _log.info("operator queue: {count} open item(s) restored from {path}",
                  count=len(records), path=str(self.settings.store_path))

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
        for item in self._items.values():
            self._cancel_timers(item)
        return self.store.close()

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

        @return: a Deferred firing with the item once the store has it.
        """
        now = self._clock.seconds()
        record = ItemRecord(item_id=self._new_id(), route=session.route,
                            client_id=session.client_id, text=text, created_at=now)
        message = MessageRecord(client_id=session.client_id, route=session.route,
                                direction="in", sender="client", body=text, at=now,
                                item_id=record.item_id)
        d: Deferred[Any] = self.when_started()
        d.addCallback(lambda _: self.store.add_item(record, message))
        d.addCallback(lambda _: self._accepted(QueueItem(record)))
        return d

    def _accepted(self, item: QueueItem) -> QueueItem:
        item.order = next(self._order)
        self._items[item.item_id] = item
        self._broadcast_to_operators({"type": "item", "item": self.describe(item)})
        if not self._operators and self.settings.fallback_when_offline:
            self._fallback(item)
        else:
            self._schedule_fallback(item)
        return item

    def position(self, item: QueueItem) -> int:
        """
        @return: 1 for the oldest open item, 2 for the next...
        """
        key = (item.record.created_at, item.order)
        return 1 + sum(1 for other in self._items.values()
                       if (other.record.created_at, other.order) < key)

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
        for item in list(self._items.values()):
            if item.holder is operator:
                self._release(item, "its operator disconnected")
        _log.info("operator {name} offline ({count} online)", name=operator.name,
                  count=len(self._operators))

    @property
    def operators_online(self) -> int:
        return len(self._operators)

    def open_items(self) -> list[QueueItem]:
        return sorted(self._items.values(), key=lambda i: (i.record.created_at, i.order))

    def find(self, item_id: str) -> QueueItem:
        """
        @param item_id: an item id, or an unambiguous prefix of one.
        @raise QueueError: if no open item (or several) match.
        """
        item = self._items.get(item_id)
        if item is not None:
            return item
        found = [i for key, i in self._items.items() if key.startswith(item_id)] \
            if item_id else []
        if len(found) == 1:
            return found[0]
        if not found:
            raise QueueError(f"no open item {item_id!r} (answered, expired or unknown)")
        raise QueueError(f"item id {item_id!r} is ambiguous: give more characters")

    def oldest_unclaimed(self) -> QueueItem:
        for item in self.open_items():
            if item.state == "queued":
                return item
        raise QueueError("the queue is empty")

    def claim(self, item_id: str, operator: OperatorLink) -> QueueItem:
        item = self.find(item_id)
        if item.state == "claimed" and item.holder is not operator:
            raise QueueError(f"item {item.item_id} is claimed by {item.record.operator}")
        if item.holder is operator:
            self._renew_lease(item)
            return item
        try:
            item.claim(operator.name, operator)
        except InvalidTransition as e:
            raise QueueError(str(e)) from None
        self._renew_lease(item)
        self._persist(item, "store a claim")
        self._broadcast_to_operators({"type": "updated", "item": self.describe(item)})
        return item

    def release(self, item_id: str, operator: OperatorLink) -> QueueItem:
        item = self.find(item_id)
        if item.holder is not operator:
            raise QueueError(f"item {item.item_id} is not claimed by you")
        self._release(item, f"{operator.name} released it")
        return item

    def reply(
        self, item_id: str | None, operator: OperatorLink, text: str
    ) -> Deferred[dict[str, Any]]:
        """
        Answer an item (the oldest unclaimed one for None), claiming it first
        if it is queued. Answered exactly once: a second reply is refused.

        @return: a Deferred firing with C{{"item": ..., "delivered": N}}
            once the reply is stored (N: connections it was written to now).
        """
        item = self.oldest_unclaimed() if item_id is None else self.find(item_id)
        if item.state == "queued":
            self.claim(item.item_id, operator)
        elif item.holder is not operator:
            raise QueueError(f"item {item.item_id} is claimed by {item.record.operator}")
        now = self._clock.seconds()
        try:
            item.answer(operator.name, now)
        except InvalidTransition as e:
            raise QueueError(str(e)) from None
        self._cancel_timers(item)
        del self._items[item.item_id]
        record = item.record
        reply = MessageRecord(client_id=record.client_id, route=record.route, direction="out",
                              sender=operator.name, body=text, at=now, item_id=item.item_id)
        d: Deferred[Any] = self.store.answer_item(record, reply)
        d.addCallback(lambda seq: self._delivery.deliver(replace(reply, seq=seq)))
        d.addCallback(lambda count: self._answered(item, count))
        return d

    def _answered(self, item: QueueItem, delivered: int) -> dict[str, Any]:
        self._broadcast_to_operators({"type": "updated", "item": self.describe(item)})
        _log.info("item {item_id} answered by {operator} ({delivered} connection(s) now)",
                  item_id=item.item_id, operator=item.record.operator, delivered=delivered)
        return {"item": self.describe(item), "delivered": delivered}

    def push(self, client_id: str, text: str, operator: OperatorLink) -> Deferred[int]:
        """
        Send to one client; kept for it if it is not connected.

        @return: a Deferred firing with how many connections got it now.
        """
        message = MessageRecord(client_id=client_id, route=self._delivery.route_of(client_id),
                                direction="out",
                                sender=operator.name, body=text, at=self._clock.seconds())
        d = self.store.add_message(message)
        d.addCallback(lambda seq: self._delivery.deliver(replace(message, seq=seq)))
        return d

    def broadcast(self, route: str, text: str, operator: OperatorLink) -> Deferred[int]:
        """
        Send to every client connected to C{route} now (not kept for others).

        @return: a Deferred firing with how many connections got it.
        """
        now = self._clock.seconds()
        targets = self._delivery.on_route(route)
        count = sum(1 for _, session in targets if session.send(text))
        for client_id in {client_id for client_id, _ in targets}:
            self.store.add_message(MessageRecord(
                client_id=client_id, route=route, direction="out", sender=operator.name,
                body=text, at=now, delivered=True,
            )).addErrback(_log_failure("storing a broadcast"))
        return succeed(count)

    def transcript(self, client_id: str | None) -> Deferred[list[MessageRecord]]:
        result: Deferred[list[MessageRecord]] = self.store.transcript(client_id)
        return result

    def clients(self) -> list[dict[str, Any]]:
        return self._delivery.clients()

    def describe(self, item: QueueItem) -> dict[str, Any]:
        described = item.record.to_json()
        described["state"] = item.state
        described["online"] = self._delivery.is_here(item.record.client_id)
        return described

    # -- internals -----------------------------------------------------------

    def _persist(self, item: QueueItem, what: str) -> None:
        self.store.update_item(item.record).addErrback(_log_failure(what))

    def _release(self, item: QueueItem, why: str) -> None:
        item.release()
        if item.lease_call is not None and item.lease_call.active():
            item.lease_call.cancel()
        item.lease_call = None
        self._persist(item, "store a release")
        _log.info("item {item_id} back in the queue: {why}", item_id=item.item_id, why=why)
        self._broadcast_to_operators({"type": "updated", "item": self.describe(item)})

    def _renew_lease(self, item: QueueItem) -> None:
        if item.lease_call is not None and item.lease_call.active():
            item.lease_call.cancel()

        def expired() -> None:
            item.lease_call = None
            if item.state == "claimed":
                self._release(item, "its lease expired")

        item.lease_call = self._clock.callLater(self.settings.lease, expired)

    def _schedule_fallback(self, item: QueueItem) -> None:
        after = self.settings.fallback_after
        if after <= 0 or item.record.fallback_sent:
            return
        delay = max(0.0, item.record.created_at + after - self._clock.seconds())
        item.fallback_call = self._clock.callLater(delay, self._fallback, item)

    def _fallback(self, item: QueueItem) -> None:
        item.fallback_call = None
        if item.item_id not in self._items or item.record.fallback_sent:
            return
        item.mark_fallback_sent()
        record = item.record
        if not self.settings.keep_after_fallback:
            self._cancel_timers(item)
            item.expire()
            del self._items[item.item_id]
        self._persist(item, "store a fallback")
        message = MessageRecord(client_id=record.client_id, route=record.route,
                                direction="out", sender="system",
                                body=self.settings.fallback_message,
                                at=self._clock.seconds(), item_id=item.item_id)
        d = self.store.add_message(message)
        d.addCallback(lambda seq: self._delivery.deliver(replace(message, seq=seq)))
        d.addErrback(_log_failure("sending a fallback"))
        self._broadcast_to_operators({"type": "updated", "item": self.describe(item)})

    def _cancel_timers(self, item: QueueItem) -> None:
        for call in (item.lease_call, item.fallback_call):
            if call is not None and call.active():
                call.cancel()
        item.lease_call = item.fallback_call = None

    def _broadcast_to_operators(self, event: dict[str, Any]) -> None:
        for operator in list(self._operators):
            try:
                operator.notify(event)
            except Exception:
                _log.failure("notifying operator {name}", name=operator.name)

