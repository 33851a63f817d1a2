"""
One connection to Redis that stays made: made again after every loss or
failed attempt, however long Redis is away.

txredisapi's own reconnection stops for good when Redis accepts a
connection but does not answer the SELECT (or AUTH) in time, or answers it
C{BUSY}: a stall longer than about twice the timeout (a slow fork, a long
script, C{DEBUG SLEEP}, C{CLIENT PAUSE}) left a daemon disconnected until
it was restarted. So each connection is made with C{reconnect=False}, and
made again here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from wsdaemon.config import BrokerSettings
from wsdaemon.errors import BrokerUnavailable

__all__ = ["Connector", "RedisConnection", "txredisapi_connector"]

#: Makes one connection: given the reply timeout, a Deferred firing with a
#: connected txredisapi handler (C{execute_command}, C{eval},
#: C{whenDisconnected}, C{disconnect}), or failing.
Connector = Callable[[float], "Deferred[Any]"]


def txredisapi_connector(settings: BrokerSettings) -> Connector:
    """
    @return: a L{Connector} to C{settings}' Redis: connect, AUTH, SELECT,
        each bounded by txredisapi (the connect and reply timeouts); no
        reconnection of its own.
    """

    def connect(reply_timeout: float) -> Deferred[Any]:
        d: Deferred[Any] = txredisapi.Connection(
            host=settings.host, port=settings.port, dbid=settings.db,
            password=settings.password, reconnect=False, convertNumbers=False,
            connectTimeout=settings.timeout, replyTimeout=reply_timeout)
        return d

    return connect


def _why(failure: Failure) -> str:
    return failure.getErrorMessage() or "timed out"


class RedisConnection:
    """
    One connection to Redis, made again after every loss or failed attempt
    (after 0.1 s, then twice as long each time, at most L{max_delay}) until
    L{stop}: however long Redis is away, the daemon reconnects when it is
    back.

    @param connect: makes one attempt (see L{Connector}).
    @param give_up_after: seconds after which an attempt that neither
        connected nor failed is abandoned (txredisapi bounds each step; this
        is in case one is not).
    @param on_up: called once connected.
    @param on_down: called with why, on each failed attempt and loss.
    """

    first_delay = 0.1
    max_delay = 1.0

    def __init__(self, connect: Callable[[], Deferred[Any]], clock: IReactorTime,
                 give_up_after: float, on_up: Callable[[], None],
                 on_down: Callable[[str], None]) -> None:
        self.handler: Any = None
        self._connect = connect
        self._clock = clock
        self._give_up_after = give_up_after
        self._on_up = on_up
        self._on_down = on_down
        self._failures = 0
        self._attempt: Deferred[Any] | None = None
        self._watchdog: IDelayedCall | None = None
        self._retry: IDelayedCall | None = None
        self._waiting: list[Deferred[Any]] = []
        self._stopped = False

    def start(self) -> None:
        self._try()

    def when_connected(self) -> Deferred[Any]:
        """
        @return: a Deferred firing with the handler once connected (at once
            if it is); cancel it to stop waiting.
        """
        if self.handler is not None:
            return succeed(self.handler)
        if self._stopped:
            return fail(BrokerUnavailable("the Redis link is stopping"))

        def cancelled(d: Deferred[Any]) -> None:
            if d in self._waiting:
                self._waiting.remove(d)

        d: Deferred[Any] = Deferred(cancelled)
        self._waiting.append(d)
        return d

    def stop(self) -> Deferred[Any]:
        self._stopped = True
        for call in (self._retry, self._watchdog):
            if call is not None and call.active():
                call.cancel()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(BrokerUnavailable("the Redis link is stopping"))
        handler, self.handler = self.handler, None
        if handler is None:
            return succeed(None)
        return maybeDeferred(handler.disconnect)

    def _try(self) -> None:
        self._retry = None
        if self._stopped or self.handler is not None or self._attempt is not None:
            return
        attempt = maybeDeferred(self._connect)
        self._attempt = attempt
        self._watchdog = self._clock.callLater(self._give_up_after, self._abandon, attempt)
        attempt.addCallbacks(self._made, self._failed, callbackArgs=(attempt,),
                             errbackArgs=(attempt,))

    def _abandon(self, attempt: Deferred[Any]) -> None:
        self._watchdog = None
        if self._attempt is attempt:
            self._attempt = None
            self._down_and_retry(f"no connection within {self._give_up_after:g} s")

    def _settled(self, attempt: Deferred[Any]) -> bool:
        """
        @return: whether C{attempt} is still the one under way (now done).
        """
        if self._attempt is not attempt:
            return False
        self._attempt = None
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None
        return not self._stopped

    def _made(self, handler: Any, attempt: Deferred[Any]) -> None:
        if not self._settled(attempt):
            # Abandoned or stopped meanwhile: not wanted any more.
            maybeDeferred(handler.disconnect).addErrback(lambda _: None)
            return
        self.handler = handler
        self._failures = 0
        handler.whenDisconnected().addBoth(self._lost, handler)
        if self.handler is not handler:
            return  # lost already
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(handler)
        self._on_up()

    def _failed(self, failure: Failure, attempt: Deferred[Any]) -> None:
        if self._settled(attempt):
            self._down_and_retry(_why(failure))

    def _lost(self, _: object, handler: Any) -> None:
        if self.handler is not handler:
            return
        self.handler = None
        if not self._stopped:
            self._down_and_retry("connection lost")

    def _down_and_retry(self, why: str) -> None:
        self._on_down(why)
        delay = min(self.max_delay, self.first_delay * 2 ** min(self._failures, 16))
        self._failures += 1
        self._retry = self._clock.callLater(delay, self._try)
