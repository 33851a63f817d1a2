"""
The terminal console: C{wsdaemon-operator URL --token-file FILE}.

It prints client messages as they arrive and reads commands, one per line.
On a terminal the line has editing and history (prompt_toolkit) and events
are printed above it, never into it; from a pipe it reads plain lines (so it
can be scripted). Commands run one at a time: each waits for the daemon's
answer, and none is sent before the channel's greeting (so none reaches a
client route as a client's message). It reconnects by itself when the daemon
restarts; at the end of piped input it exits once every command has been
answered, with status 1 if any failed (2 if the token was refused or
revoked). If it never reaches the operator channel it says what it found
instead and exits with status 1: nothing listening (on a terminal at once,
from a pipe after L{PATIENCE} seconds of tries), an HTTP answer instead of a
WebSocket, a first message that is not the channel's greeting (at once), or
a WebSocket that says nothing (after L{PATIENCE} seconds).

It speaks what the channel's greeting says: the operator queue's protocol,
or with C{"protocol": 2} conversations (issue 22), whose console
(L{wsdaemon.support.console.ConversationConsole}) is loaded by name when
that greeting comes, as the strategy registry loads built-ins: the queue's
package does not depend on the support component, its sibling layer.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import stdio
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from wsdaemon.strategies.operator.commands import HELP, TOKEN_REVOKED, Console
from wsdaemon.strategies.operator.display import visible

__all__ = ["Console", "Switch", "main"]

#: Seconds the console tries to reach the operator channel before it gives
#: up (from a pipe; on a terminal a failed connection ends it at once), and
#: waits for the channel's greeting on each connection.
PATIENCE = 4.0
#: Characters of a wrong first message quoted in the error.
QUOTED = 100
NOT_THE_CHANNEL = "is not wsdaemon's operator channel"
_WHERE = " (the channel is at the [operator] section's path, /operator by default)"

#: The greeting's C{protocol} for conversations, and the console that speaks it.
CONVERSATIONS_PROTOCOL = 2
CONVERSATIONS_CONSOLE = "wsdaemon.support.console:ConversationConsole"
#: Its command language's help (the layer above: found by name, as the console).
CONVERSATIONS_HELP = "wsdaemon.support.console_commands:HELP"

_REFUSED = re.compile(r"[\[(](401|403)\b")
# HTTP answers below 500 worth another try (the server is busy).
_TRANSIENT = frozenset({408, 429})


def greeting(payload: bytes, is_binary: bool) -> dict[str, Any] | str:
    """
    @return: the channel's greeting (its C{hello} event), or what the first
        message was instead, escaped, for the error line.
    """
    if is_binary:
        return f"its first message was binary ({len(payload)} bytes), not the channel's greeting"
    text = payload.decode("utf-8", "replace")
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        event = None
    if (isinstance(event, dict) and event.get("type") == "hello"
            and isinstance(event.get("operator"), str) and isinstance(event.get("items"), list)
            and isinstance(event.get("total"), int)
            and isinstance(event.get("operators_online"), int)):
        return event
    if (isinstance(event, dict) and event.get("type") == "hello"
            and event.get("protocol") == CONVERSATIONS_PROTOCOL
            and isinstance(event.get("operator"), str)
            and isinstance(event.get("conversations"), list)
            and isinstance(event.get("total"), int)):
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


class _Reach:
    """
    Until the operator channel has greeted the console once: what answered
    at the URL instead, and when to give up saying so (exit status 1).
    Afterwards the console reconnects by itself, however long it takes.
    """

    def __init__(self, url: str, clock: IReactorTime, console: Console | Switch,
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


class Switch:
    """
    The console, chosen by the channel's greeting: the queue's L{Console},
    or for C{"protocol": 2} the conversations' console. Lines typed before
    the greeting wait, then go to the one chosen, in order.
    """

    def __init__(self, out: Any, err: Any, stop: Callable[[int], None],
                 clock: IReactorTime) -> None:
        self.out = out
        self.err = err
        self._stop = stop
        self._clock = clock
        self.current: Any = Console(out, err, stop)
        self._chosen = False
        self._send: Callable[[dict[str, Any]], None] | None = None
        self._lines: list[str] = []
        self._ended = False

    @property
    def stopping(self) -> bool:
        return bool(self.current.stopping)

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self.current.stopping = value

    @property
    def connected_once(self) -> bool:
        return bool(self.current.connected_once)

    def complain(self, text: str) -> None:
        self.current.complain(text)

    def connected(self, send: Callable[[dict[str, Any]], None]) -> None:
        self._send = send
        if self._chosen:
            self.current.connected(send)

    def disconnected(self, reason: str) -> None:
        self.current.disconnected(reason)

    def event(self, event: dict[str, Any]) -> None:
        if self._chosen or event.get("type") != "hello":
            self.current.event(event)
            return
        self._chosen = True
        if event.get("protocol") == CONVERSATIONS_PROTOCOL:
            module, _, name = CONVERSATIONS_CONSOLE.partition(":")
            kind = getattr(importlib.import_module(module), name)
            self.current = kind(self.out, self.err, self._stop, clock=self._clock)
        if self._send is not None:
            self.current.connected(self._send)
        self.current.event(event)
        lines, self._lines = self._lines, []
        for line in lines:
            self.current.line(line)
        if self._ended:
            self.current.input_ended()

    def line(self, line: str) -> None:
        if self._chosen:
            self.current.line(line)
        else:
            self._lines.append(line)

    def input_ended(self) -> None:
        if self._chosen:
            self.current.input_ended()
        else:
            self._ended = True


class _Client(WebSocketClientProtocol):
    console: Console | Switch
    reach: _Reach
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
            if self.reach.reached:
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
class _Attempts:
    """
    The endpoint, telling the reach why connecting failed, so that a
    console that never got in can say why.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, reach: _Reach) -> None:
        self._endpoint = endpoint
        self._reach = reach

    def connect(self, protocol_factory: Any) -> Any:
        def failed(failure: Any) -> Any:
            self._reach.failed(failure.getErrorMessage())
            return failure

        return self._endpoint.connect(protocol_factory).addErrback(failed)


class _Lines(LineReceiver):
    delimiter = b"\n"

    def __init__(self, console: Console | Switch) -> None:
        self.console = console

    def lineReceived(self, line: bytes) -> None:
        self.console.line(line.decode("utf-8", "replace").rstrip("\r"))

    def connectionLost(self, reason: Any = None) -> None:
        self.console.input_ended()


def read_token(path: Path | None) -> str:
    """
    The token: the first line of the file that is neither blank nor a
    comment, else the WSDAEMON_OPERATOR_TOKEN environment variable.
    """
    if path is not None:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.strip().startswith("#"):
                return line.strip()
        raise ValueError(f"{path} holds no token")
    token = os.environ.get("WSDAEMON_OPERATOR_TOKEN", "")
    if not token:
        raise ValueError("give --token-file FILE or set WSDAEMON_OPERATOR_TOKEN")
    return token


def _endpoint(reactor: Any, url: str) -> IStreamClientEndpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"expected a ws:// or wss:// URL, got {url!r}")
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, parts.hostname, port)
    if parts.scheme == "wss":
        endpoint = wrapClientTLS(optionsForClientTLS(parts.hostname), endpoint)
    return endpoint


def main(argv: list[str] | None = None) -> None:
    module, _, name = CONVERSATIONS_HELP.partition(":")
    conversations_help = getattr(importlib.import_module(module), name)
    parser = argparse.ArgumentParser(
        prog="wsdaemon-operator",
        description="Answer wsdaemon's conversations (or its deprecated operator queue) from a "
                    "terminal or a script; the channel's greeting says which it serves, and "
                    "`help` once connected shows its commands.",
        epilog=(f"with conversations ([operator] model = conversations, the default):\n"
                f"{conversations_help}\n\n"
                f"with the operator queue (model = queue, deprecated):\n{HELP}"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="the operator channel, e.g. ws://127.0.0.1:8080/operator")
    parser.add_argument("--token-file", type=Path,
                        help="file holding your token (else $WSDAEMON_OPERATOR_TOKEN)")
    parser.add_argument("--plain", action="store_true",
                        help="read plain lines even from a terminal (no line editing)")
    args = parser.parse_args(argv)
    interactive = sys.stdin.isatty() and not args.plain
    if interactive:
        # prompt_toolkit runs on asyncio: so does Twisted, then.
        import asyncio

        from twisted.internet import asyncioreactor

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # what _prompt's task runs on
        asyncioreactor.install(loop)
    from twisted.internet import reactor

    try:
        token = read_token(args.token_file)
        endpoint = _endpoint(reactor, args.url)
    except (OSError, ValueError) as e:
        parser.exit(2, f"wsdaemon-operator: {e}\n")

    status = [0]
    the_reactor: Any = reactor

    def stop(code: int) -> None:
        status[0] = code
        console.stopping = True
        service.stopService()
        if the_reactor.running:
            the_reactor.callLater(0, the_reactor.stop)

    console: Any = Switch(_Stdout(), sys.stderr, stop, the_reactor)
    reach = _Reach(args.url, the_reactor, console, stop, retry=not interactive)
    factory: Any = WebSocketClientFactory(args.url, reactor=the_reactor,
                                          headers={"Authorization": f"Bearer {token}"})
    factory.setProtocolOptions(autoPingInterval=20, autoPingTimeout=10)
    factory.protocol = type("Client", (_Client,), {"console": console, "reach": reach})
    factory.refused = lambda: stop(2)
    service = ClientService(_Attempts(endpoint, reach), factory,
                            retryPolicy=reach.retry_delay)
    service.startService()
    if interactive:
        the_reactor.callWhenRunning(_prompt, console)
    else:
        stdio.StandardIO(_Lines(console))
    the_reactor.run()
    sys.exit(status[0])


class _Stdout:
    """
    Writes to whatever C{sys.stdout} is now: under prompt_toolkit's
    C{patch_stdout} that prints above the line being typed.
    """

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _prompt(console: Console | Switch) -> None:
    """
    Read command lines with editing and history until end of input.
    """
    import asyncio

    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.patch_stdout import patch_stdout

    async def read_lines() -> None:
        session: PromptSession[str] = PromptSession(history=InMemoryHistory())
        with patch_stdout():
            while not console.stopping:
                try:
                    line = await session.prompt_async("operator> ")
                except (EOFError, KeyboardInterrupt):
                    console.line("quit")
                    return
                console.line(line)

    def done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            sys.stderr.write(f"error: the command line failed: {task.exception()!r}\n")
            console.line("quit")

    asyncio.ensure_future(read_lines()).add_done_callback(done)


if __name__ == "__main__":
    main()
