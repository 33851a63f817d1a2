"""
Delivering one event: signed, timed out, and sent again (with backoff) only
while it certainly never reached the backend.

Each attempt is signed afresh (a new C{webhook-timestamp}) under the same
C{webhook-id}, so a backend may use the id to recognise a repeat. An attempt
that may have reached the backend (a timeout, a connection lost after the
request was written) is never repeated: the backend could otherwise see a
client's message twice.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from wsdaemon.strategies.webhook.client import AnswerTooBig, Poster, Reply, never_reached
from wsdaemon.strategies.webhook.options import WebhookSettings
from wsdaemon.strategies.webhook.signing import signature_headers

__all__ = ["DeliveryError", "deliver"]


class DeliveryError(Exception):
    """
    An event got no answer from the backend.

    @ivar kind: C{unreachable} (never reached it, retries spent),
        C{timeout}, C{too_big} (the answer over C{max_response}) or
        C{failed} (the connection broke after the request went).
    """

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind
        self.why = why


class _Attempts:
    def __init__(self, poster: Poster, settings: WebhookSettings, clock: IReactorTime,
                 url: str, message_id: str, body: bytes) -> None:
        self.poster = poster
        self.settings = settings
        self.clock = clock
        self.url = url
        self.message_id = message_id
        self.body = body
        self.result: Deferred[Reply] = Deferred(self._cancel)
        self.current: Deferred[Reply] | None = None
        self.timer: IDelayedCall | None = None
        self.timed_out = False
        self.cancelled = False
        #: The route's request slots: one is held from the first attempt
        #: to the outcome (None: no route-wide bound).
        self.slots: DeferredSemaphore | None = None
        self.waiting: Deferred[Any] | None = None
        self.holding = False

    def begin(self, slots: DeferredSemaphore | None) -> None:
        """Start once the route has a request slot free (at once, usually)."""
        if slots is None:
            self.start()
            return
        self.slots = slots
        waiting: Deferred[Any] = slots.acquire()
        self.waiting = waiting
        waiting.addCallbacks(self._slot, self._no_slot)

    def _slot(self, _: object) -> None:
        self.waiting = None
        self.holding = True
        self.start()

    def _no_slot(self, failure: Failure) -> None:
        self.waiting = None
        failure.trap(CancelledError)  # cancelled while waiting: nothing sent

    def _release(self) -> None:
        if self.holding and self.slots is not None:
            self.holding = False
            self.slots.release()

    def start(self, attempt: int = 0) -> None:
        self.timer = None
        if self.cancelled:
            return
        headers = signature_headers(self.settings.secrets, self.message_id,
                                    int(self.clock.seconds()), self.body)
        headers["content-type"] = "application/json"
        self.timed_out = False
        try:
            d = self.poster(self.url, headers, self.body)
        except Exception:
            d = Deferred()
            d.errback(Failure())
        self.current = d
        self.timer = self.clock.callLater(self.settings.timeout, self._time_out, d)
        d.addCallbacks(self._answered, self._failed, errbackArgs=(attempt,))

    def _time_out(self, d: Deferred[Reply]) -> None:
        self.timer = None
        self.timed_out = True
        d.cancel()

    def _stop_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _answered(self, reply: Reply) -> None:
        self._stop_timer()
        self.current = None
        self._release()
        if not self.cancelled:
            self.result.callback(reply)

    def _failed(self, failure: Failure, attempt: int) -> None:
        self._stop_timer()
        self.current = None
        if self.cancelled:
            self._release()
            return
        settings = self.settings
        if self.timed_out:
            error = DeliveryError("timeout", f"no answer within {settings.timeout:g}s "
                                             "(timeout)")
        elif failure.check(AnswerTooBig):
            error = DeliveryError("too_big", f"the answer is over {settings.max_response} "
                                             "bytes (max_response)")
        elif never_reached(failure):
            if attempt < settings.retries:
                delay = settings.retry_backoff * 2 ** attempt
                self.timer = self.clock.callLater(delay, self.start, attempt + 1)
                return
            error = DeliveryError("unreachable", f"cannot reach it after {attempt + 1} "
                                                 f"attempts ({failure.getErrorMessage()})")
        else:
            name = getattr(failure.type, "__name__", "error")
            error = DeliveryError("failed", f"{name}: {failure.getErrorMessage()}")
        self._release()
        self.result.errback(error)

    def _cancel(self, _: Any) -> None:
        self.cancelled = True
        self._stop_timer()
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.cancel()
        current, self.current = self.current, None
        if current is not None:
            current.cancel()
        self._release()


def deliver(poster: Poster, settings: WebhookSettings, clock: IReactorTime, url: str,
            message_id: str, body: bytes,
            slots: DeferredSemaphore | None = None) -> Deferred[Reply]:
    """
    @param slots: the route's request slots (C{max_requests}): the first
        attempt waits for one, and C{timeout} counts from then.
    @return: a Deferred firing with the backend's L{Reply} (any status), or
        failing with L{DeliveryError}; cancelling it cancels the attempt
        under way (or the wait for a slot).
    """
    attempts = _Attempts(poster, settings, clock, url, message_id, body)
    attempts.begin(slots)
    return attempts.result
