"""
One request of a backend bot (L{wsdaemon.support.hook_bot}) that waits at
most C{bot_timeout} for one of the route's C{bot_max_requests} slots.

Why bounded: a visitor writing to the bot waits for its answer. With every
slot taken (the backend answering slower than visitors write) a request
could otherwise wait behind the others for minutes, then take its own time.
A support team would rather the visitor reach a person: a request that gets
no slot within one request's time (C{bot_timeout}) is never sent and fails
with L{DeliveryError} of kind C{busy}; the bot hands the conversation over
saying so (L{wsdaemon.support.hook_bot.BUSY}). What the bot owes is stored
for the whole of it (L{owed_for}: the wait, then the attempts), so the
core's overdue timer never fires for a request that is still waiting or
has only just been sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from wsdaemon.strategies.webhook.client import Poster, Reply
from wsdaemon.strategies.webhook.delivery import DeliveryError, deliver
from wsdaemon.strategies.webhook.options import WebhookSettings

__all__ = ["BUSY_KIND", "attempts_time", "owed_for", "request"]

#: The L{DeliveryError} kind of a request that got no slot in time.
BUSY_KIND = "busy"


def attempts_time(hook: WebhookSettings) -> float:
    """@return: seconds a sent request's attempts take at most (backoffs included)."""
    return (hook.retries + 1) * (hook.connect_timeout + hook.timeout) + \
        hook.retry_backoff * (2 ** hook.retries - 1)


def owed_for(hook: WebhookSettings, slot_free: bool) -> float:
    """
    @param slot_free: a slot is free now (the request is sent at once).
    @return: seconds from now until the request's outcome is surely known:
        its attempts, after the longest wait for a slot when none is free.
    """
    return attempts_time(hook) + (0.0 if slot_free else hook.timeout)


class _Request:
    def __init__(self, poster: Poster, hook: WebhookSettings, clock: IReactorTime, url: str,
                 message_id: str, body: bytes, slots: DeferredSemaphore,
                 sent: Callable[[], None] | None) -> None:
        self.poster = poster
        self.on_sent = sent
        self.hook = hook
        self.clock = clock
        self.url = url
        self.message_id = message_id
        self.body = body
        self.slots = slots
        self.result: Deferred[Reply] = Deferred(self._cancel)
        self.sent: Deferred[Reply] | None = None
        self.timer: IDelayedCall | None = None
        self.acquiring: Deferred[Any] | None = slots.acquire()
        self.acquiring.addCallbacks(self._slot, self._no_slot)
        if self.acquiring is not None:  # every slot taken: wait, bounded
            self.timer = clock.callLater(hook.timeout, self._too_long)

    def _slot(self, _: object) -> None:
        self.acquiring = None
        self._stop_timer()
        if self.on_sent is not None:
            self.on_sent()
        sent = deliver(self.poster, self.hook, self.clock, self.url, self.message_id, self.body)
        self.sent = sent
        sent.addBoth(self._done)

    def _no_slot(self, failure: Failure) -> None:
        self.acquiring = None
        failure.trap(CancelledError)  # cancelled or too long: nothing sent

    def _done(self, outcome: Reply | Failure) -> None:
        self.sent = None
        self.slots.release()
        if self.result.called:  # cancelled: its outcome is nobody's
            return
        if isinstance(outcome, Failure):
            self.result.errback(outcome)
        else:
            self.result.callback(outcome)

    def _too_long(self) -> None:
        self.timer = None
        acquiring, self.acquiring = self.acquiring, None
        if acquiring is None:
            return
        acquiring.cancel()
        hook = self.hook
        self.result.errback(DeliveryError(
            BUSY_KIND, f"all {hook.max_requests} of its requests (bot_max_requests) were out "
                       f"for {hook.timeout:g}s"))

    def _stop_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _cancel(self, _: Any) -> None:
        self._stop_timer()
        acquiring, self.acquiring = self.acquiring, None
        if acquiring is not None:
            acquiring.cancel()
        sent = self.sent
        if sent is not None:
            sent.cancel()  # its outcome (CancelledError) releases the slot


def request(poster: Poster, hook: WebhookSettings, clock: IReactorTime, url: str,
            message_id: str, body: bytes, slots: DeferredSemaphore,
            sent: Callable[[], None] | None = None) -> Deferred[Reply]:
    """
    Deliver C{body} once one of C{slots} is free (held until the outcome),
    waiting at most C{hook.timeout} for it.

    @param sent: called when it has its slot and is sent (at once, before
        this returns, when a slot is free).

    @return: a Deferred firing with the backend's L{Reply}, or failing with
        L{DeliveryError} (kind L{BUSY_KIND}: no slot in time, never sent);
        cancelling it cancels the wait or the request under way.
    """
    return _Request(poster, hook, clock, url, message_id, body, slots, sent).result
