"""
The terminal console: C{wsdaemon-operator URL --token-file FILE}.

It prints client messages as they arrive and reads commands, one per line,
from a terminal or a pipe (so it can be scripted). Commands run one at a
time: each waits for the daemon's answer. It reconnects by itself when the
daemon restarts; at the end of piped input it exits once every command has
been answered, with status 1 if any failed (2 if the token was refused).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import stdio
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.protocols.basic import LineReceiver

__all__ = ["Console", "main"]

HELP = """\
commands:
  list                       show the open items
  reply TEXT                 answer the oldest unclaimed item
  reply #ID TEXT             answer that item (an id prefix is enough)
  claim #ID | release #ID    take an item / give it back
  push CLIENT TEXT           send to one client (kept for it while it is away)
  broadcast ROUTE TEXT       send to every client connected to ROUTE
  transcript [CLIENT]        show a conversation (everyone's without CLIENT)
  export FILE [CLIENT]       write a transcript as JSON Lines to FILE
  wait [N]                   wait until N (default 1) items are waiting unclaimed
  help | quit"""


def describe(item: dict[str, Any]) -> str:
    who = f" by {item['operator']}" if item.get("operator") else ""
    online = "" if item.get("online", True) else " (offline)"
    return (f"#{item['item_id']} {item['route']} {item['client_id']}{online} "
            f"[{item['state']}{who}]: {item['text']}")


def parse_command(line: str) -> dict[str, Any] | str:
    """
    @return: the request to send, or a local action ("help", "quit", "export ...").
    @raise ValueError: saying how the command is used.
    """
    words = line.split(None, 1)
    if not words:
        raise ValueError("empty command")
    verb, rest = words[0].lower(), (words[1] if len(words) > 1 else "").strip()

    def item_and_text(text: str) -> tuple[str | None, str]:
        if text.startswith("#"):
            head, _, tail = text.partition(" ")
            return head[1:], tail.strip()
        return None, text

    if verb in ("list", "ls"):
        return {"type": "list"}
    if verb == "reply":
        item, text = item_and_text(rest)
        if not text:
            raise ValueError("usage: reply [#ID] TEXT")
        return {"type": "reply", "text": text, **({"item": item} if item else {})}
    if verb in ("claim", "release"):
        item, extra = item_and_text(rest)
        if not item or extra:
            raise ValueError(f"usage: {verb} #ID")
        return {"type": verb, "item": item}
    if verb in ("push", "broadcast"):
        target, _, text = rest.partition(" ")
        if not target or not text.strip():
            raise ValueError(f"usage: {verb} {'CLIENT' if verb == 'push' else 'ROUTE'} TEXT")
        key = "client" if verb == "push" else "route"
        return {"type": verb, key: target, "text": text.strip()}
    if verb == "transcript":
        return {"type": "transcript", **({"client": rest} if rest else {})}
    if verb == "export":
        if not rest:
            raise ValueError("usage: export FILE [CLIENT]")
        return f"export {rest}"
    if verb == "wait":
        if rest and not rest.isdigit():
            raise ValueError("usage: wait [N]")
        return f"wait {rest or 1}"
    if verb in ("help", "?"):
        return "help"
    if verb in ("quit", "exit"):
        return "quit"
    raise ValueError(f"unknown command {verb!r}; type help")


class Console:
    """
    The console's logic, apart from I/O: commands in, requests out, events
    and answers printed.

    @param send: sends one JSON request to the daemon.
    @param stop: ends the program with an exit status.
    """

    def __init__(self, out: TextIO, err: TextIO, stop: Callable[[int], None]) -> None:
        self.out = out
        self.err = err
        self._stop = stop
        self._send: Callable[[dict[str, Any]], None] | None = None
        self._commands: deque[str] = deque()
        self._waiting: dict[str, Any] | None = None
        self._next_id = 1
        self._input_done = False
        self._wait_for = 0
        self.stopping = False
        self.items: dict[str, dict[str, Any]] = {}
        self.failures = 0

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def complain(self, text: str) -> None:
        self.failures += 1
        self.err.write(f"error: {text}\n")
        self.err.flush()

    # -- connection ------------------------------------------------------------

    def connected(self, send: Callable[[dict[str, Any]], None]) -> None:
        self._send = send

    def disconnected(self, reason: str) -> None:
        self._send = None
        if self.stopping:
            return
        if self._waiting is not None:
            self.complain(f"connection lost before the answer to {self._waiting['type']}; "
                          "check with `list`")
            self._waiting = None
        self.say(f"-- disconnected ({reason}); reconnecting...")

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "hello":
            self.say(f"-- connected as {event['operator']}; {len(event['items'])} open item(s)")
            self.items = {item["item_id"]: item for item in event["items"]}
            for item in event["items"]:
                self.say("   " + describe(item))
            self._next_command()
        elif kind == "resync":
            # After a Redis outage the daemon reloads the queue: take its list.
            self.items = {item["item_id"]: item for item in event["items"]}
            self.say(f"-- queue resynchronised; {len(self.items)} open item(s)")
        elif kind in ("item", "updated"):
            item = event["item"]
            self.say(("new  " if kind == "item" else "upd  ") + describe(item))
            if item["state"] in ("queued", "claimed"):
                self.items[item["item_id"]] = item
            else:
                self.items.pop(item["item_id"], None)
            if self._wait_for:
                self._next_command()
        elif kind in ("ok", "error") and self._waiting is not None \
                and event.get("id") == self._waiting["id"]:
            request, self._waiting = self._waiting, None
            if kind == "ok":
                self._answered(request, event)
            else:
                self.complain(str(event.get("error")))
            self._next_command()
        elif kind == "error":
            self.complain(str(event.get("error")))

    def _answered(self, request: dict[str, Any], answer: dict[str, Any]) -> None:
        kind = request["type"]
        if kind == "list":
            self.say(f"{len(answer['items'])} open item(s), {answer['operators_online']} "
                     "operator(s) online")
            for item in answer["items"]:
                self.say("   " + describe(item))
        elif kind == "reply":
            self.say(f"ok: answered #{answer['item']['item_id']} "
                     f"({answer['delivered']} connection(s) now)")
        elif kind in ("claim", "release"):
            self.say(f"ok: {kind}ed " + describe(answer["item"]))
        elif kind in ("push", "broadcast"):
            self.say(f"ok: {kind} reached {answer['delivered']} connection(s)")
        elif kind == "transcript":
            export = request.get("_export")
            if export:
                with open(export, "w", encoding="utf-8") as f:
                    for entry in answer["entries"]:
                        f.write(json.dumps(entry, ensure_ascii=False) + "\n")
                self.say(f"ok: wrote {len(answer['entries'])} line(s) to {export}")
            else:
                for entry in answer["entries"]:
                    arrow = "<- client" if entry["direction"] == "in" else f"-> {entry['sender']}"
                    self.say(f"{entry['at']:.3f} {entry['client_id']} {arrow}: {entry['body']}")

    # -- commands --------------------------------------------------------------

    def line(self, line: str) -> None:
        if line.strip() and not line.lstrip().startswith("#"):
            self._commands.append(line.strip())
            self._next_command()

    def input_ended(self) -> None:
        self._input_done = True
        self._next_command()

    def _unclaimed(self) -> int:
        return sum(1 for item in self.items.values() if item["state"] == "queued")

    def _next_command(self) -> None:
        if self._wait_for and self._unclaimed() >= self._wait_for:
            self._wait_for = 0
        while (self._waiting is None and not self._wait_for and self._commands
               and self._send is not None):
            line = self._commands.popleft()
            try:
                command = parse_command(line)
            except ValueError as e:
                self.complain(str(e))
                continue
            if command == "help":
                self.say(HELP)
                continue
            if command == "quit":
                self._commands.clear()
                self._input_done = True
                break
            if isinstance(command, str) and command.startswith("wait "):
                wanted = int(command.split()[1])
                if self._unclaimed() < wanted:
                    self._wait_for = wanted
                continue
            request: dict[str, Any]
            if isinstance(command, str):  # export FILE [CLIENT]
                target, _, client = command[len("export "):].partition(" ")
                request = {"type": "transcript", "_export": target,
                           **({"client": client.strip()} if client.strip() else {})}
            else:
                request = command
            request["id"] = self._next_id
            self._next_id += 1
            self._waiting = request
            self._send({k: v for k, v in request.items() if not k.startswith("_")})
        if (self._input_done and not self._commands and self._waiting is None
                and not self._wait_for):
            self._stop(1 if self.failures else 0)


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
        if _REFUSED.search(text):
            self.console.err.write("error: the daemon refused the token\n")
            self.console.err.flush()
            self.factory.refused()
            return
        self.console.disconnected(text)


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
    args = parser.parse_args(argv)
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

    console = Console(sys.stdout, sys.stderr, stop)
    factory: Any = WebSocketClientFactory(args.url,
                                          headers={"Authorization": f"Bearer {token}"})
    factory.setProtocolOptions(autoPingInterval=20, autoPingTimeout=10)
    factory.protocol = type("Client", (_Client,), {"console": console})
    factory.refused = lambda: stop(2)
    service = ClientService(endpoint, factory,
                            retryPolicy=backoffPolicy(initialDelay=0.5, maxDelay=5.0))
    service.startService()
    stdio.StandardIO(_Lines(console))
    the_reactor.run()
    sys.exit(status[0])


if __name__ == "__main__":
    main()
