"""
The daemon's connections to Redis: one for commands and scripts, one for
the blocking read of the event stream; timeouts on every call, and the
link's health (for logs, C{/healthz} and C{/metrics}).

Calls made while Redis is unreachable fail after C{timeout} seconds instead
of waiting for it to come back, so a caller can tell its user, and the
failure says which of two things happened: L{BrokerUnavailable}, the call
was not done (never sent, or refused for now: C{LOADING}, C{BUSY}); or
L{BrokerOutcomeUnknown}, it was sent and no answer came back, so it may
have been done.

Both connections are L{RedisConnection}s, made again after a short
backoff for as long as the link runs, whatever the outage (not by
txredisapi, which gives up for good after some stalls); while the link is
down a PING probes Redis a few times a second, so the daemon is healthy
again moments after Redis answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    TimeoutError,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.broker.connection import Connector, RedisConnection, txredisapi_connector
from wsdaemon.config import BrokerSettings
from wsdaemon.errors import BrokerOutcomeUnknown, BrokerUnavailable

__all__ = ["BrokerOutcomeUnknown", "BrokerSettings", "BrokerUnavailable", "Connector",
           "RedisLink", "unless_outage"]

_log = Logger(namespace="wsdaemon.broker")

#: Events the stream keeps, about.
EVENTS_KEPT = 100000

#: Errors that mean "Redis cannot be reached now" (not "Redis said no").
_OUTAGE = (txredisapi.ConnectionError, TimeoutError, CancelledError, ConnectionError)
#: Error replies that mean "Redis cannot take a command now" (it did not run it).
_NOT_NOW = ("LOADING", "BUSY", "MASTERDOWN")


def _refused_for_now(failure: Failure) -> bool:
    return bool(failure.check(txredisapi.ResponseError)) \
        and str(failure.value).startswith(_NOT_NOW)


def _never_sent(failure: Failure) -> bool:
    # txredisapi raises this before writing anything.
    return bool(failure.check(txredisapi.ConnectionError)) \
        and str(failure.value) == "Not connected"


def _why(failure: Failure) -> str:
    return failure.getErrorMessage() or "timed out"


def unless_outage(what: str) -> Callable[[Failure], None]:
    """
    @return: an errback that logs a failure of C{what} with its traceback,
        unless it is Redis being away (L{BrokerUnavailable}): the link logs
        an outage once, not once per call.
    """

    def errback(failure: Failure) -> None:
        if not failure.check(BrokerUnavailable):
            _log.failure("redis: {what} failed", failure=failure, what=what)

    return errback


class RedisLink:
    """
    @param clock: timeouts, retries and the block of the stream read.
    @param connect: makes one connection (tests pass their own); by default
        txredisapi, to C{settings}' host.
    """

    #: Longest a blocking stream read waits for new events, in seconds.
    block = 2.0
    #: Events read at most per stream read.
    batch = 1000
    #: Seconds between PINGs while Redis cannot be used (the health probe).
    probe_interval = 0.25
    #: Seconds before reading the event stream again after a failed read
    #: (Redis loading its data, a lost connection: the read then waits for
    #: the connection to be made again).
    reread_after = 0.25

    def __init__(self, settings: BrokerSettings, clock: IReactorTime,
                 connect: Connector | None = None) -> None:
        self.settings = settings
        self.daemon_id = settings.daemon_id
        self._clock = clock
        self._connect = connect or txredisapi_connector(settings)
        self.prefix = settings.prefix
        self.events_key = settings.prefix + "events"
        self.up = False
        # Both connections must work for the link to be up: commands (the
        # conversations' scripts, pushes) and the event stream (what others did).
        self._ok = {"commands": False, "events": False}
        self.down_since: float | None = None
        #: When the link last became up (None while it is down).
        self.up_since: float | None = None
        self.outages = 0
        self.calls_failed = 0
        self._started = False
        self._stopping = False
        self._commands: RedisConnection | None = None
        self._events: RedisConnection | None = None
        self._pinger: LoopingCall | None = None
        self._probing = False
        self._probe_call: IDelayedCall | None = None
        self._reading = False
        self._read_again: IDelayedCall | None = None
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

        def connection(reply_timeout: float, on_up: Callable[[], None],
                       which: str) -> RedisConnection:
            # Connecting, then AUTH and SELECT: each bounded by txredisapi.
            return RedisConnection(lambda: self._connect(reply_timeout), self._clock,
                               s.timeout + 2 * reply_timeout + 1.0, on_up,
                               lambda why: self._unreachable(which, why))

        self._commands = connection(s.timeout, self._probe, "commands")
        self._events = connection(self.block + s.timeout, self._read, "events")
        self._commands.start()
        self._events.start()
        self._read()
        # A PING now and then keeps the health current even on a daemon
        # that makes no other calls (push only, no conversations).
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
        for call in (self._probe_call, self._read_again):
            if call is not None and call.active():
                call.cancel()
        waits = [conn.stop() for conn in (self._commands, self._events) if conn is not None]
        return DeferredList(waits, consumeErrors=True)

    # -- calls -----------------------------------------------------------------

    def call(self, *args: Any) -> Deferred[Any]:
        """
        Run one Redis command.

        @raise BrokerUnavailable: (in the Deferred) when Redis could not
            take it within the timeout (L{BrokerOutcomeUnknown}: it was
            sent, and may have been done).
        """
        return self._send(str(args[0]), lambda handler: handler.execute_command(*args))

    def publish(self, event: dict[str, Any]) -> Deferred[Any]:
        """
        Append one event to the stream every daemon reads (capped like the
        conversations' commits, L{wsdaemon.support.redis_scripts}).
        """
        return self.call("XADD", self.events_key, "MAXLEN", "~", EVENTS_KEPT, "*", "e",
                         json.dumps(event, ensure_ascii=False))

    def _send(self, what: str, send: Callable[[Any], Deferred[Any]],
              counted: bool = True) -> Deferred[Any]:
        """
        Send on the commands connection, waiting for it (within the
        timeout) if it is being made again.
        """
        if self._commands is None:
            self.start()
        assert self._commands is not None
        sent = [False]

        def go(handler: Any) -> Deferred[Any]:
            sent[0] = True
            return maybeDeferred(send, handler)

        d: Deferred[Any] = self._commands.when_connected()
        d.addCallback(go)
        d.addTimeout(self.settings.timeout, self._clock)

        def worked(result: Any) -> Any:
            self._reachable("commands")
            return result

        def failed(failure: Failure) -> Any:
            if _refused_for_now(failure):
                problem: Exception = BrokerUnavailable(
                    f"Redis cannot take {what} now: {failure.getErrorMessage()}")
            elif failure.check(*_OUTAGE):
                problem = (BrokerOutcomeUnknown if sent[0] and not _never_sent(failure)
                           else BrokerUnavailable)(
                    f"Redis did not answer {what} within {self.settings.timeout:g} s")
            else:
                return failure
            if counted:
                self.calls_failed += 1
            self._unreachable("commands", f"{what}: {_why(failure)}")
            raise problem

        d.addCallbacks(worked, failed)
        return d

    # -- health ----------------------------------------------------------------

    def _probe(self) -> None:
        """
        PING now and, while Redis cannot be used, again every
        L{probe_interval}: the link is up again as soon as it answers.
        """
        if self._probing or self._stopping:
            return
        self._probing = True
        d = self._send("PING", lambda handler: handler.execute_command("PING"), counted=False)
        d.addBoth(self._probed)

    def _probed(self, _: object) -> None:
        self._probing = False
        if self._stopping or self._ok["commands"]:
            return
        if self._probe_call is None or not self._probe_call.active():
            self._probe_call = self._clock.callLater(self.probe_interval, self._probe)

    def _reachable(self, which: str) -> None:
        self._ok[which] = True
        if self.up or not all(self._ok.values()):
            return
        was_down = self.down_since
        self.up = True
        self.up_since = self._clock.seconds()
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
            _log.error("redis: unreachable ({why}); operator routes (conversations) and "
                       "cross-daemon push wait for it, other routes keep serving; "
                       "reconnecting until it answers", why=why)
        self.up = False
        self.up_since = None
        if which == "commands":
            self._probe()

    def status(self) -> dict[str, Any]:
        down_for = None
        if self.down_since is not None:
            down_for = round(self._clock.seconds() - self.down_since, 3)
        return {"backend": "redis", "up": self.up, "down_for": down_for,
                "outages": self.outages, "calls_failed": self.calls_failed,
                "daemon_id": self.daemon_id}

    # -- the event stream ----------------------------------------------------------

    def _read(self) -> None:
        """
        Read the stream, once at a time: at once when the connection is
        (re)made, so that its health is known now, then blocking for new
        events.
        """
        if self._stopping or self._reading or self._events is None:
            return
        if self._read_again is not None and self._read_again.active():
            self._read_again.cancel()
        self._reading = True
        d = self._events.when_connected()
        d.addCallback(self._send_read)
        d.addCallbacks(self._got, self._read_failed)

    def _send_read(self, handler: Any) -> Deferred[Any]:
        s = self.settings
        if self._last_id is None:
            # Start after the newest event: what came before is in the state
            # the conversations load when they (re)synchronise.
            d: Deferred[Any] = handler.execute_command(
                "XREVRANGE", self.events_key, "+", "-", "COUNT", 1)
            timeout = s.timeout
        elif self._ok["events"]:
            d = handler.execute_command(
                "XREAD", "COUNT", self.batch, "BLOCK", int(self.block * 1000),
                "STREAMS", self.events_key, self._last_id)
            timeout = self.block + s.timeout
        else:
            d = handler.execute_command(
                "XREAD", "COUNT", self.batch, "STREAMS", self.events_key, self._last_id)
            timeout = s.timeout
        d.addTimeout(timeout, self._clock)
        starting = self._last_id is None
        return d.addCallback(lambda reply: (starting, reply))

    def _got(self, result: tuple[bool, Any]) -> None:
        self._reading = False
        starting, reply = result
        if starting:
            self._last_id = reply[0][0] if reply else "0-0"
            self._reachable("events")
        else:
            self._reachable("events")
            if reply:
                self._handle(reply[0][1])
        self._read()

    def _handle(self, entries: list[Any]) -> None:
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

    def _read_failed(self, failure: Failure) -> None:
        self._reading = False
        if self._stopping:
            return
        delay = self.reread_after
        if _refused_for_now(failure) or failure.check(*_OUTAGE):
            self._unreachable("events", f"event stream: {_why(failure)}")
        else:
            _log.failure("redis: reading the event stream failed", failure=failure)
            delay = 1.0
        self._read_again = self._clock.callLater(delay, self._read)
