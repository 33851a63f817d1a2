"""
The terminal console: C{wsdaemon-operator URL --token-file FILE}
(C{python -m wsdaemon.support.terminal} too).

It answers conversations over the operator channel (protocol 2): events are
printed as they arrive and commands read one per line
(L{wsdaemon.support.console.ConversationConsole}). On a terminal the line
has editing and history (prompt_toolkit) and events are printed above it,
never into it; from a pipe it reads plain lines (so it can be scripted).
Commands run one at a time: each waits for the daemon's answer, and none is
sent before the channel's greeting (so none reaches a client route as a
client's message). It reconnects by itself when the daemon restarts; at the
end of piped input it exits once every command has been answered, with
status 1 if any failed (2 if the token was refused or revoked). What it does
when it never reaches the channel, or reaches a daemon speaking another
protocol, is L{wsdaemon.support.terminal_channel}'s.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.application.internet import ClientService
from twisted.internet import stdio
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.protocols.basic import LineReceiver

from wsdaemon.support.console import HELP, ConversationConsole, Output
from wsdaemon.support.terminal_channel import (
    NOT_THE_CHANNEL,
    PATIENCE,
    Attempts,
    Reach,
    TerminalClient,
    greeting,
)

__all__ = ["NOT_THE_CHANNEL", "PATIENCE", "TerminalConsole", "greeting", "main", "read_token"]


class TerminalConsole(ConversationConsole):
    """
    The conversations' console, with the end of piped input held until the
    channel's first greeting: a script that ends before the daemon answers
    still has its commands (and the greeting's follow-ups) done first.
    """

    def __init__(self, out: Output, err: Output, stop: Callable[[int], None], *,
                 clock: IReactorTime, tz: tzinfo | None = None) -> None:
        super().__init__(out, err, stop, clock=clock, tz=tz)
        self._ended_early = False

    def input_ended(self) -> None:
        if not self.connected_once:
            self._ended_early = True
            return
        super().input_ended()

    def event(self, event: dict[str, Any]) -> None:
        super().event(event)
        if self._ended_early and event.get("type") == "hello":
            self._ended_early = False
            super().input_ended()


class _Lines(LineReceiver):
    delimiter = b"\n"

    def __init__(self, console: ConversationConsole) -> None:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsdaemon-operator",
        description="Answer wsdaemon's conversations from a terminal or a script "
                    "(the daemon's operator channel, protocol 2).",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="the operator channel, e.g. ws://127.0.0.1:8080/operator")
    parser.add_argument("--token-file", type=Path,
                        help="file holding your token (else $WSDAEMON_OPERATOR_TOKEN)")
    parser.add_argument("--plain", action="store_true",
                        help="read plain lines even from a terminal (no line editing)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
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

    console = TerminalConsole(_Stdout(), sys.stderr, stop, clock=the_reactor)
    reach = Reach(args.url, the_reactor, console, stop, retry=not interactive)
    factory: Any = WebSocketClientFactory(args.url, reactor=the_reactor,
                                          headers={"Authorization": f"Bearer {token}"})
    factory.setProtocolOptions(autoPingInterval=20, autoPingTimeout=10)
    factory.protocol = type("Client", (TerminalClient,), {"console": console, "reach": reach})
    factory.refused = lambda: stop(2)
    service = ClientService(Attempts(endpoint, reach), factory,
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


def _prompt(console: ConversationConsole) -> None:
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
