"""
How C{wsdaemon-operator} (L{wsdaemon.support.terminal}) reaches the
operator channel: the channel's greeting told from whatever else answers at
the URL, and when to give up saying what answered instead.

It speaks protocol 2 (conversations) only: a greeting of another protocol
(the retired operator queue's had none) ends it at once with an error line
that says so, exit status 1. Before the channel has greeted it once,
nothing listening (on a terminal at once, from a pipe after L{PATIENCE}
seconds of tries), an HTTP answer instead of a WebSocket, a first message
that is not the greeting (at once) or a WebSocket that says nothing (after
L{PATIENCE} seconds) ends it with status 1 and one error line saying what
was found; afterwards it reconnects by itself, however long it takes. A
refused or revoked token ends it with status 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Protocol

from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.application.internet import backoffPolicy
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from zope.interface import implementer

from wsdaemon.escaping import visible
from wsdaemon.support.channel import PROTOCOL_VERSION, TOKEN_REVOKED

__all__ = ["NOT_THE_CHANNEL", "OTHER_PROTOCOL", "PATIENCE", "Attempts", "Reach",
           "TerminalClient", "greeting"]

#: Seconds the console tries to reach the operator channel before it gives
#: up (from a pipe; on a terminal a failed connection ends it at once), and
#: waits for the channel's greeting on each connection.
PATIENCE = 4.0
#: Characters of a wrong first message quoted in the error.
QUOTED = 100
NOT_THE_CHANNEL = "is not wsdaemon's operator channel"
#: The start of what a greeting of another protocol is described as.
OTHER_PROTOCOL = "this daemon's operator channel speaks"
_WHERE = " (the channel is at the [operator] section's path, /operator by default)"

_REFUSED = re.compile(r"[\[(](401|403)\b")
# HTTP answers below 500 worth another try (the server is busy).
_TRANSIENT = frozenset({408, 429})


class Console(Protocol):
    """What the connection needs of the console it feeds."""

    err: Any
    stopping: bool
    connected_once: bool

    def connected(self, send: Callable[[dict[str, Any]], None]) -> None: ...

    def disconnected(self, reason: str) -> None: ...

    def event(self, event: dict[str, Any]) -> None: ...

    def complain(self, text: str) -> None: ...


def _other_protocol(protocol: object) -> str:
    if isinstance(protocol, int) and not isinstance(protocol, bool) \
            and protocol > PROTOCOL_VERSION:
        return (f"{OTHER_PROTOCOL} a newer protocol ({protocol}) than this wsdaemon-operator "
                f"(protocol {PROTOCOL_VERSION}): use the wsdaemon-operator installed with "
                "the daemon")
    return (f"{OTHER_PROTOCOL} an older protocol (its greeting has no \"protocol\": "
            f"{PROTOCOL_VERSION}: the operator queue's, retired); this wsdaemon-operator "
            f"speaks protocol {PROTOCOL_VERSION} (conversations): upgrade the daemon, or use "
            "the wsdaemon-operator installed with it")


def greeting(payload: bytes, is_binary: bool) -> dict[str, Any] | str:
    """
    @return: the channel's greeting (its C{hello} event of protocol 2), or
        what the first message was instead, escaped, for the error line
        (starting with L{OTHER_PROTOCOL} for a greeting of another protocol).
    """
    if is_binary:
        return f"its first message was binary ({len(payload)} bytes), not the channel's greeting"
    text = payload.decode("utf-8", "replace")
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        event = None
    if isinstance(event, dict) and event.get("type") == "hello" \
            and isinstance(event.get("operator"), str):
        if event.get("protocol") != PROTOCOL_VERSION:
            return _other_protocol(event.get("protocol"))
        if isinstance(event.get("conversations"), list) and isinstance(event.get("total"), int):
            return event
    quoted = visible(text[:QUOTED]) + ("..." if len(text) > QUOTED else "")
    return f'its first message was "{quoted}", not the channel\'s greeting'


def _http_status(protocol: WebSocketClientProtocol) -> tuple[int, str] | None:
    """
    @return: the status and reason of the server's answer to the opening
        handshake, if it was an HTTP answer.
    """
    parts = str(getattr(protocol, "http_status_line", "") or "").split(None, 2)
    if len(parts) < 2 or not (parts[1].isascii() and parts[1].isdigit()):
        return None
    return int(parts[1]), visible(parts[2] if len(parts) > 2 else "")


class Reach:
    """
    Until the operator channel has greeted the console once: what answered
    at the URL instead, and when to give up saying so (exit status 1).
    Afterwards the console reconnects by itself, however long it takes.
    """

    def __init__(self, url: str, clock: IReactorTime, console: Console,
                 stop: Callable[[int], None], *, retry: bool) -> None:
        self.url = url
        self._clock = clock
        self._console = console
        self._stop = stop
        self._retry = retry
        self._found = f"cannot connect to {visible(url)}: no answer"
        self._give_up_at = clock.seconds() + PATIENCE
        self._deadline: IDelayedCall = clock.callLater(PATIENCE, self.give_up)
        self._reconnect_after = backoffPolicy(initialDelay=0.5, maxDelay=5.0)

    @property
    def reached(self) -> bool:
        return self._console.connected_once

    def failed(self, why: str) -> None:
        """
        A connection failed, or was refused in a way worth another try.
        """
        self._found = f"cannot connect to {visible(self.url)}: {visible(why)}"

    def not_the_channel(self, what: str, *, at_once: bool) -> None:
        """
        Something else answered: C{what} (escaped) says what.
        """
        self._found = f"{visible(self.url)} {NOT_THE_CHANNEL}: {what}{_WHERE}"
        if at_once:
            self.give_up()

    def other_protocol(self, what: str) -> None:
        """
        The channel greeted in a protocol this console does not speak: the
        end, at once, whether it was reached before or not.
        """
        if self._console.stopping:
            return
        if self._deadline.active():
            self._deadline.cancel()
        self._console.err.write(f"error: {what}\n")
        self._console.err.flush()
        self._stop(1)

    def greeted(self) -> None:
        if self._deadline.active():
            self._deadline.cancel()

    def give_up(self) -> None:
        if self.reached or self._console.stopping:
            return
        self._console.err.write(f"error: {self._found}\n")
        self._console.err.flush()
        self._stop(1)

    def retry_delay(self, attempt: int) -> float:
        """
        L{ClientService}'s retry policy. Before the channel was reached it
        counts time, not attempts: the service starts counting again after
        each TCP connection, so a server that accepts and then refuses
        would be tried for ever.
        """
        if self.reached:
            return float(self._reconnect_after(attempt))
        left = self._give_up_at - self._clock.seconds()
        if not self._retry or left <= 0:
            self._clock.callLater(0, self.give_up)
            return PATIENCE
        return min(0.25 * 1.5 ** min(attempt, 10), 1.0, left)


class TerminalClient(WebSocketClientProtocol):
    """
    One connection to the channel; C{main} sets C{console} and C{reach} on a
    subclass, the factory's C{refused()} ends the program with status 2.
    """

    console: Console
    reach: Reach
    _opened = False
    _greeted = False
    _why: str | None = None
    _waiting: IDelayedCall | None = None

    def onOpen(self) -> None:
        self._opened = True
        self.reach.not_the_channel(
            f"it accepted a WebSocket connection but sent no greeting within {PATIENCE:g} s",
            at_once=False)
        self._waiting = self.factory.reactor.callLater(PATIENCE, self._leave,
                                                       "no greeting from the channel")

    def _leave(self, why: str) -> None:
        # After the channel was reached once; before, the reach gives up.
        self._waiting = None
        self._why = why
        self.dropConnection(abort=True)

    def _first(self, payload: bytes, isBinary: bool) -> None:
        found = greeting(payload, isBinary)
        if isinstance(found, str):
            if found.startswith(OTHER_PROTOCOL):
                self.reach.other_protocol(found)
                self._leave(found)
            elif self.reach.reached:
                self._leave(f"{self.reach.url} {NOT_THE_CHANNEL} now: {found}")
            else:
                self.reach.not_the_channel(found, at_once=True)
            return
        self._greeted = True
        if self._waiting is not None and self._waiting.active():
            self._waiting.cancel()
        self.console.connected(
            lambda request: self.sendMessage(json.dumps(request).encode("utf-8"), False))
        self.reach.greeted()
        self.console.event(found)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            if not self._greeted:
                self._first(payload, isBinary)
                return
            try:
                event = json.loads(payload)
            except ValueError:
                return
            if isinstance(event, dict):
                self.console.event(event)
        except Exception as e:
            self.console.complain(f"could not show what the daemon sent ({type(e).__name__})")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._waiting is not None and self._waiting.active():
            self._waiting.cancel()
        text = self._why or reason or f"code {code}"
        status = None if self._opened else _http_status(self)
        if (status is not None and status[0] in (401, 403)) or _REFUSED.search(text) \
                or code == TOKEN_REVOKED:
            why = "revoked the token" if code == TOKEN_REVOKED else "refused the token"
            self.console.err.write(f"error: the daemon {why}\n")
            self.console.err.flush()
            self.factory.refused()
            return
        if not self.console.connected_once:
            if status is not None and status[0] < 500 and status[0] not in _TRANSIENT:
                self.reach.not_the_channel(
                    f"it answered HTTP {status[0]} {status[1]}".rstrip()
                    + " instead of accepting a WebSocket connection", at_once=True)
            elif not self._opened:
                self.reach.failed(text)  # never got in: the retry policy decides
            return
        self.console.disconnected(text)


@implementer(IStreamClientEndpoint)
class Attempts:
    """
    The endpoint, telling the reach why connecting failed, so that a
    console that never got in can say why.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, reach: Reach) -> None:
        self._endpoint = endpoint
        self._reach = reach

    def connect(self, protocol_factory: Any) -> Any:
        def failed(failure: Any) -> Any:
            self._reach.failed(failure.getErrorMessage())
            return failure

        return self._endpoint.connect(protocol_factory).addErrback(failed)
