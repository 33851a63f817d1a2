"""
The moves the embedded queue makes on its own, on timers: a lease that runs
out (or a holder that disconnects) gives the item back, and an item nobody
answered in time gets the fallback message (and is closed, unless kept
answerable). Like every transition, each is committed to the store before
the item moves; a commit that fails is tried again L{RETRY_AFTER} seconds
later, on the item's own timer (so answering or stopping cancels it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.config import OperatorSettings
from wsdaemon.records import MessageRecord
from wsdaemon.strategies.operator.delivery import LocalDelivery
from wsdaemon.strategies.operator.item import QueueItem
from wsdaemon.strategies.operator.openitems import OpenItems
from wsdaemon.strategies.operator.ports import IQueueStore

__all__ = ["RETRY_AFTER", "TimedMoves"]

_log = Logger(namespace="wsdaemon.operators")

#: Seconds before a transition whose commit failed is tried again (a
#: release after a disconnect, a fallback).
RETRY_AFTER = 5.0


class TimedMoves:
    """
    Part of L{wsdaemon.strategies.operator.queue.OperatorQueue}: its timed moves.
    """

    settings: OperatorSettings
    store: IQueueStore
    _clock: IReactorTime
    _items: OpenItems
    _delivery: LocalDelivery

    def _released(self, item: QueueItem, why: str) -> None:
        raise NotImplementedError

    def _drop_hold(self, item: QueueItem, operator: Any) -> None:
        raise NotImplementedError

    def _forget(self, item: QueueItem) -> None:
        raise NotImplementedError

    def _broadcast_to_operators(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def describe(self, item: QueueItem) -> dict[str, Any]:
        raise NotImplementedError

    def _release(self, item: QueueItem, why: str) -> None:
        """
        Give a claim back without being asked (disconnect, lease expiry):
        stored first; if that fails, tried again a little later.
        """
        if item.busy:
            self._retry(item, "lease_call", lambda: self._release(item, why))
            return
        released = replace(item.record, state="queued", operator=None)
        item.busy = True

        def stored(_: Any) -> None:
            item.busy = False
            if item.state == "claimed" and item.item_id in self._items:
                self._released(item, why)

        def failed(failure: Failure) -> None:
            item.busy = False
            _log.failure("operator queue: storing the release of item {item_id} failed; "
                         "trying again in {delay} s", failure=failure, item_id=item.item_id,
                         delay=RETRY_AFTER)
            self._retry(item, "lease_call", lambda: self._release(item, why))

        maybeDeferred(self.store.update_item, released).addCallbacks(stored, failed)

    def _retry(self, item: QueueItem, slot: str, again: Callable[[], None]) -> None:
        """
        Run C{again} in a little while, on the item's lease or fallback
        timer (so that answering or stopping cancels it).
        """
        def run() -> None:
            setattr(item, slot, None)
            if item.item_id in self._items:
                again()

        setattr(item, slot, self._clock.callLater(RETRY_AFTER, run))

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
        """
        Send the fallback message (and close the item unless it is kept
        answerable): the item's new state and the message are stored
        together first; if that fails, tried again a little later.
        """
        item.fallback_call = None
        if item.item_id not in self._items or item.record.fallback_sent:
            return
        if item.busy:
            self._retry(item, "fallback_call", lambda: self._fallback(item))
            return
        keep = self.settings.keep_after_fallback
        record = replace(item.record, fallback_sent=True)
        if not keep:
            record = replace(record, state="expired", operator=None)
        message = MessageRecord(client_id=record.client_id, route=record.route,
                                direction="out", sender="system",
                                body=self.settings.fallback_message,
                                at=self._clock.seconds(), item_id=item.item_id)
        item.busy = True

        def stored(seq: int) -> None:
            item.busy = False
            if item.item_id not in self._items:
                return
            item.mark_fallback_sent()
            if not keep:
                self._drop_hold(item, item.holder)
                item.expire()
                self._forget(item)
            self._delivery.deliver(replace(message, seq=seq))
            self._broadcast_to_operators({"type": "updated", "item": self.describe(item)})

        def failed(failure: Failure) -> None:
            item.busy = False
            _log.failure("operator queue: storing the fallback of item {item_id} failed; "
                         "trying again in {delay} s", failure=failure, item_id=item.item_id,
                         delay=RETRY_AFTER)
            self._retry(item, "fallback_call", lambda: self._fallback(item))

        maybeDeferred(self.store.answer_item, record, message).addCallbacks(stored, failed)

    def _cancel_timers(self, item: QueueItem) -> None:
        for call in (item.lease_call, item.fallback_call):
            if call is not None and call.active():
                call.cancel()
        item.lease_call = item.fallback_call = None
