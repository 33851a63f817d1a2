"""
The daemon's connections to Redis: one for commands and scripts, one for
the blocking read of the event stream; timeouts on every call, and the
link's health (for logs, C{/healthz} and C{/metrics}).

Calls made while Redis is unreachable fail after C{timeout} seconds instead
of waiting for it to come back (txredisapi would hold them forever), so a
caller can tell its user; the connections themselves reconnect on their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet.defer import CancelledError, Deferred, DeferredList, TimeoutError, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.broker.scripts import SCRIPTS
from wsdaemon.config import BrokerSettings
from wsdaemon.errors import BrokerUnavailable

__all__ = ["BrokerSettings", "BrokerUnavailable", "RedisLink"]

_log = Logger(namespace="wsdaemon.broker")

#: Events the stream keeps, about (also in scripts.py's emit()).
EVENTS_KEPT = 100000

#: Errors that mean "Redis cannot be reached now" (not "Redis said no").
_OUTAGE = (txredisapi.ConnectionError, TimeoutError, CancelledError, ConnectionError)


class RedisLink:
    """
    @param clock: timeouts, retries and the block of the stream read.
    @param daemon_id: this daemon's name among the others.
    """

    #: Longest a blocking stream read waits for new events, in seconds.
    block = 2.0
    #: Events read at most per stream read.
    batch = 1000

    def __init__(self, settings: BrokerSettings, clock: IReactorTime) -> None:
        self.settings = settings
        self.daemon_id = settings.daemon_id
        self._clock = clock
        self.prefix = settings.prefix
        self.events_key = settings.prefix + "events"
        self.up = False
        # Both connections must work for the link to be up: commands (the
        # queue's scripts, pushes) and the event stream (what others did).
        self._ok = {"commands": False, "events": False}
        self.down_since: float | None = None
        self.outages = 0
        self.calls_failed = 0
        self._started = False
        self._stopping = False
        self._pool: Any = None
        self._reader: Any = None
        self._retry: Any = None
        self._pinger: LoopingCall | None = None
        self._last_id: str | None = None
        self._event_handlers: list[Callable[[list[dict[str, Any]]], None]] = []
        self._recovery_handlers: list[Callable[[], None]] = []

    # -- life ------------------------------------------------------------------

    def on_events(self, handler: Callable[[list[dict[str, Any]]], None]) -> None:
        """
        Call C{handler} with each batch of events read from the stream, in
        stream order (the daemon's own events included).
        """
        self._event_handlers.append(handler)

    def on_recovery(self, handler: Callable[[], None]) -> None:
        """
        Call C{handler} when Redis is reachable again after an outage (and
        once at the start): the place to catch up on what was missed.
        """
        self._recovery_handlers.append(handler)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        s = self.settings
        common = dict(host=s.host, port=s.port, dbid=s.db, password=s.password,
                      reconnect=True, convertNumbers=False, connectTimeout=s.timeout)
        self._pool = txredisapi.lazyConnectionPool(poolsize=1, replyTimeout=s.timeout, **common)
        self._reader = txredisapi.lazyConnection(replyTimeout=self.block + s.timeout, **common)
        for handler in (self._pool, self._reader):
            # txredisapi backs off up to 10 s between attempts; after an
            # outage, come back within about a second instead.
            handler._factory.initialDelay = 0.2
            handler._factory.maxDelay = 1.0
        self._read()
        # A PING now and then keeps the health current even on a daemon
        # that makes no other calls (push only, no operator queue).
        self._pinger = LoopingCall(self._ping)
        self._pinger.clock = self._clock
        self._pinger.start(s.heartbeat, now=True)

    def _ping(self) -> None:
        self.call("PING").addErrback(lambda _: None)  # _guard logged and counted it

    def stop(self) -> Deferred[Any]:
        if self._stopping:
            return succeed(None)
        self._stopping = True
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        waits = [conn.disconnect() for conn in (self._pool, self._reader) if conn is not None]
        return DeferredList(waits, consumeErrors=True)

    # -- calls -----------------------------------------------------------------

    def call(self, *args: Any) -> Deferred[Any]:
        """
        Run one Redis command.

        @raise BrokerUnavailable: (in the Deferred) when Redis did not
            answer within the timeout.
        """
        if self._pool is None:
            self.start()
        d: Deferred[Any] = self._pool.execute_command(*args)
        return self._guard(d, args[0])

    def script(self, name: str, *args: Any) -> Deferred[Any]:
        """
        Run one of L{wsdaemon.broker.scripts.SCRIPTS} with the key prefix
        and C{args} as its ARGV (EVALSHA, loading it again after a restart).
        """
        if self._pool is None:
            self.start()
        d: Deferred[Any] = self._pool.eval(SCRIPTS[name], keys=[],
                                          args=[self.prefix, *args])
        return self._guard(d, name)

    def publish(self, event: dict[str, Any]) -> Deferred[Any]:
        """
        Append one event to the stream every daemon reads (capped like the
        scripts' own events).
        """
        return self.call("XADD", self.events_key, "MAXLEN", "~", EVENTS_KEPT, "*", "e",
                         json.dumps(event, ensure_ascii=False))

    def _guard(self, d: Deferred[Any], what: str) -> Deferred[Any]:
        d.addTimeout(self.settings.timeout, self._clock)

        def worked(result: Any) -> Any:
            self._reachable("commands")
            return result

        def failed(failure: Failure) -> Any:
            if failure.check(*_OUTAGE):
                self.calls_failed += 1
                self._unreachable("commands",
                                  f"{what}: {failure.getErrorMessage() or 'timed out'}")
                raise BrokerUnavailable(
                    f"Redis did not answer {what} within {self.settings.timeout:g} s")
            return failure

        d.addCallbacks(worked, failed)
        return d

    # -- health ----------------------------------------------------------------

    def _reachable(self, which: str) -> None:
        self._ok[which] = True
        if self.up or not all(self._ok.values()):
            return
        was_down = self.down_since
        self.up = True
        self.down_since = None
        if was_down is None:
            _log.info("redis: connected to {host}:{port} (prefix {prefix!r})",
                      host=self.settings.host, port=self.settings.port, prefix=self.prefix)
        else:
            _log.warn("redis: reachable again after {seconds:.1f} s",
                      seconds=self._clock.seconds() - was_down)
        for handler in list(self._recovery_handlers):
            try:
                handler()
            except Exception:
                _log.failure("redis: catching up after a reconnect failed")

    def _unreachable(self, which: str, why: str) -> None:
        if self._stopping:
            return
        self._ok[which] = False
        if self.up or self.down_since is None:
            self.outages += 1
            self.down_since = self._clock.seconds()
            _log.error("redis: unreachable ({why}); queue and cross-daemon push wait for it, "
                       "other routes keep serving", why=why)
        self.up = False

    def status(self) -> dict[str, Any]:
        down_for = None
        if self.down_since is not None:
            down_for = round(self._clock.seconds() - self.down_since, 3)
        return {"backend": "redis", "up": self.up, "down_for": down_for,
                "outages": self.outages, "calls_failed": self.calls_failed,
                "daemon_id": self.daemon_id}

    # -- the event stream ----------------------------------------------------------

    def _read(self) -> None:
        if self._stopping:
            return
        if self._last_id is None:
            # Start after the newest event: what came before is in the state
            # the queue loads when it (re)synchronises.
            d: Deferred[Any] = self._reader.execute_command(
                "XREVRANGE", self.events_key, "+", "-", "COUNT", 1)
            d.addTimeout(self.settings.timeout, self._clock)
            d.addCallbacks(self._got_start, self._read_failed)
            return
        d = self._reader.execute_command(
            "XREAD", "COUNT", self.batch, "BLOCK", int(self.block * 1000),
            "STREAMS", self.events_key, self._last_id)
        d.addTimeout(self.block + self.settings.timeout, self._clock)
        d.addCallbacks(self._got_events, self._read_failed)

    def _got_start(self, reply: Any) -> None:
        self._last_id = reply[0][0] if reply else "0-0"
        self._reachable("events")
        self._read()

    def _got_events(self, reply: Any) -> None:
        self._reachable("events")
        if reply:
            entries = reply[0][1]
            events = []
            for entry_id, fields in entries:
                self._last_id = entry_id
                try:
                    events.append(json.loads(fields[1]))
                except (ValueError, IndexError):
                    _log.warn("redis: skipped a malformed event {id}", id=entry_id)
            for handler in list(self._event_handlers):
                try:
                    handler(events)
                except Exception:
                    _log.failure("redis: handling {count} event(s) failed", count=len(events))
        self._read()

    def _read_failed(self, failure: Failure) -> None:
        if self._stopping:
            return
        if failure.check(*_OUTAGE):
            self._unreachable("events",
                              f"event stream: {failure.getErrorMessage() or 'timed out'}")
        else:
            _log.failure("redis: reading the event stream failed", failure=failure)
        self._retry = self._clock.callLater(min(1.0, self.settings.timeout), self._read)
