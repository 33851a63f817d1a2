"""
The terminal console: C{wsdaemon-operator URL --token-file FILE}.

It prints client messages as they arrive and reads commands, one per line.
On a terminal the line has editing and history (prompt_toolkit) and events
are printed above it, never into it; from a pipe it reads plain lines (so it
can be scripted). Commands run one at a time: each waits for the daemon's
answer. It reconnects by itself when the daemon restarts; at the end of
piped input it exits once every command has been answered, with status 1 if
any failed (2 if the token was refused or revoked). If the daemon cannot be
reached at all it says why and exits with status 1 (on a terminal at once,
from a pipe after a few tries).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import stdio
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from wsdaemon.strategies.operator.commands import HELP, TOKEN_REVOKED, Console

__all__ = ["Console", "main"]

#: Connection attempts before giving up, if none ever succeeded.
PIPED_ATTEMPTS = 5

_REFUSED = re.compile(r"[\[(](401|403)\b")


class _Client(WebSocketClientProtocol):
    console: Console

    def onOpen(self) -> None:
        self.console.connected(
            lambda request: self.sendMessage(json.dumps(request).encode("utf-8"), False))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            return
        if isinstance(event, dict):
            self.console.event(event)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        text = reason or f"code {code}"
        if _REFUSED.search(text) or code == TOKEN_REVOKED:
            why = "revoked the token" if code == TOKEN_REVOKED else "refused the token"
            self.console.err.write(f"error: the daemon {why}\n")
            self.console.err.flush()
            self.factory.refused()
            return
        if not self.console.connected_once:
            self.factory.last_error = text  # never got in: the retry policy decides
            return
        self.console.disconnected(text)


@implementer(IStreamClientEndpoint)
class _Attempts:
    """
    The endpoint, remembering why connecting failed, so that a console that
    never got in can say why.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, factory: Any) -> None:
        self._endpoint = endpoint
        self._factory = factory

    def connect(self, protocol_factory: Any) -> Any:
        def failed(failure: Any) -> Any:
            self._factory.last_error = failure.getErrorMessage()
            return failure

        return self._endpoint.connect(protocol_factory).addErrback(failed)


class _Lines(LineReceiver):
    delimiter = b"\n"

    def __init__(self, console: Console) -> None:
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
    parser = argparse.ArgumentParser(
        prog="wsdaemon-operator",
        description="Answer wsdaemon's operator queue from a terminal (or a script).",
        epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
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

    console = Console(_Stdout(), sys.stderr, stop)
    factory: Any = WebSocketClientFactory(args.url,
                                          headers={"Authorization": f"Bearer {token}"})
    factory.setProtocolOptions(autoPingInterval=20, autoPingTimeout=10)
    factory.protocol = type("Client", (_Client,), {"console": console})
    factory.refused = lambda: stop(2)
    factory.last_error = "no answer"
    backoff = backoffPolicy(initialDelay=0.5, maxDelay=5.0)
    attempts = 1 if interactive else PIPED_ATTEMPTS

    def retry(attempt: int) -> float:
        if not console.connected_once and attempt >= attempts:
            sys.stderr.write(f"error: cannot connect to {args.url}: {factory.last_error}\n")
            the_reactor.callLater(0, stop, 1)
        return float(backoff(attempt))

    service = ClientService(_Attempts(endpoint, factory), factory, retryPolicy=retry)
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


def _prompt(console: Console) -> None:
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
