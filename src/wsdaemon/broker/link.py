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

The connections are kept open here, not by txredisapi: its own
reconnection stops for good when Redis accepts a connection but does not
answer the SELECT (or AUTH) in time, or answers it C{BUSY} -- a stall
longer than about twice the timeout (a slow fork, a long script,
C{DEBUG SLEEP}, C{CLIENT PAUSE}) left a daemon disconnected until it was
restarted. Each connection is made with C{reconnect=False} and made again
by L{_Connection}, after a short backoff, for as long as the link runs,
whatever the outage; while the link is down a PING probes Redis a few times
a second, so the daemon is healthy again moments after Redis answers.
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
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.broker.scripts import SCRIPTS
from wsdaemon.config import BrokerSettings
from wsdaemon.errors import BrokerOutcomeUnknown, BrokerUnavailable

__all__ = ["BrokerOutcomeUnknown", "BrokerSettings", "BrokerUnavailable", "Connector",
           "RedisLink"]

_log = Logger(namespace="wsdaemon.broker")

#: Events the stream keeps, about (also in scripts.py's emit()).
EVENTS_KEPT = 100000

#: Errors that mean "Redis cannot be reached now" (not "Redis said no").
_OUTAGE = (txredisapi.ConnectionError, TimeoutError, CancelledError, ConnectionError)
#: Error replies that mean "Redis cannot take a command now" (it did not run it).
_NOT_NOW = ("LOADING", "BUSY", "MASTERDOWN")

#: Makes one connection: given the reply timeout, a Deferred firing with a
#: connected txredisapi handler (C{execute_command}, C{eval},
#: C{whenDisconnected}, C{disconnect}), or failing.
Connector = Callable[[float], "Deferred[Any]"]


def _txredisapi_connector(settings: BrokerSettings) -> Connector:
    def connect(reply_timeout: float) -> Deferred[Any]:
        d: Deferred[Any] = txredisapi.Connection(
            host=settings.host, port=settings.port, dbid=settings.db,
            password=settings.password, reconnect=False, convertNumbers=False,
            connectTimeout=settings.timeout, replyTimeout=reply_timeout)
        return d

    return connect


def _refused_for_now(failure: Failure) -> bool:
    return bool(failure.check(txredisapi.ResponseError)) \
        and str(failure.value).startswith(_NOT_NOW)


def _never_sent(failure: Failure) -> bool:
    # txredisapi raises this before writing anything.
    return bool(failure.check(txredisapi.ConnectionError)) \
        and str(failure.value) == "Not connected"


def _why(failure: Failure) -> str:
    return failure.getErrorMessage() or "timed out"


class _Connection:
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
        self._connect = connect or _txredisapi_connector(settings)
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
        self._commands: _Connection | None = None
        self._events: _Connection | None = None
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
                       which: str) -> _Connection:
            # Connecting, then AUTH and SELECT: each bounded by txredisapi.
            return _Connection(lambda: self._connect(reply_timeout), self._clock,
                               s.timeout + 2 * reply_timeout + 1.0, on_up,
                               lambda why: self._unreachable(which, why))

        self._commands = connection(s.timeout, self._probe, "commands")
        self._events = connection(self.block + s.timeout, self._read, "events")
        self._commands.start()
        self._events.start()
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

    def script(self, name: str, *args: Any) -> Deferred[Any]:
        """
        Run one of L{wsdaemon.broker.scripts.SCRIPTS} with the key prefix
        and C{args} as its ARGV (EVALSHA, loading it again after a restart).
        """
        return self._send(name, lambda handler: handler.eval(
            SCRIPTS[name], keys=[], args=[self.prefix, *args]))

    def publish(self, event: dict[str, Any]) -> Deferred[Any]:
        """
        Append one event to the stream every daemon reads (capped like the
        scripts' own events).
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
                       "other routes keep serving; reconnecting until it answers", why=why)
        self.up = False
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
            # the queue loads when it (re)synchronises.
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
