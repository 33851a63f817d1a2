"""
A route of the real daemon in memory: a strategy, the protocol that serves
it, clients on string transports and the clock. No socket, no reactor.
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from wsdaemon.config import ProtocolSettings
from wsdaemon.connections.protocol import RouteFactory, RouteProtocol
from wsdaemon.connections.route import Route
from wsdaemon.interfaces import IOptionCheck, IReplyStrategy, IStrategyFactory
from wsdaemon.strategies.api import OptionContext, StrategyContext

__all__ = ["HarnessClient", "StrategyHarness"]

_TEXT, _BINARY, _CLOSE, _PING, _PONG, _CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0

#: Autobahn's own timers run on the global reactor, not on the harness's
#: clock: they are off unless a test turns them on.
_QUIET = ProtocolSettings(open_handshake_timeout=0, close_handshake_timeout=0,
                          auto_ping_interval=0)


class StrategyHarness:
    """
    One route serving a strategy, in memory: clients connect, send and
    read through the daemon's own protocol (handshake hooks, origins,
    message limits, close codes), and time passes only when the test
    advances C{clock}.

    @ivar clock: the strategy's and the route's clock (a L{Clock}).
    @ivar strategy: what C{factory.create} built.
    """

    def __init__(self, factory: IStrategyFactory, options: Mapping[str, str] | None = None,
                 config_dir: Path | str = ".", route: str = "/test",
                 **protocol: Any) -> None:
        """
        Build the strategy as the daemon does: the factory's option check
        first (when it has one), then C{create}.

        @param protocol: route settings, named as in the config file
            (C{max_message_size=1024}, C{max_connections=2}, ...).
        @raise OptionError: if the options are wrong, as the daemon would
            report it at start.
        """
        self.clock = Clock()
        config_dir = Path(config_dir)
        given = MappingProxyType(dict(options or {}))
        checked = None
        if IOptionCheck.providedBy(factory):
            checker: Any = factory
            checked = checker.check(given, OptionContext(config_dir=config_dir, route=route))
        context = StrategyContext(clock=self.clock, config_dir=config_dir, route=route,
                                  checked=checked)
        self.strategy: IReplyStrategy = factory.create(given, context)
        self.route = route
        self._factory = RouteFactory(
            Route(path=route, strategy=self.strategy, protocol=replace(_QUIET, **protocol),
                  strategy_name=factory.name, section=f"route:{route}"),
            clock=self.clock)
        self._ports = iter(range(40000, 65536))

    def connect(self, query: str = "", headers: Mapping[str, str] | None = None,
                subprotocols: Iterable[str] = ()) -> HarnessClient:
        """
        Open a connection to the route (the handshake runs now; a handshake
        hook that answers later is waited for on the clock).

        @param query: the request's query string, without C{?}.
        @param headers: more request headers (e.g. C{Origin}, C{Cookie}).
        @return: the client, open when its C{status} is 101.
        """
        return HarnessClient(self._factory, self.route, next(self._ports), query,
                             dict(headers or {}), tuple(subprotocols))


class _Transport(StringTransport):
    """Like TCP transports, tolerates unregistering without a producer."""

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


class HarnessClient:
    """
    A WebSocket client on an in-memory transport: what the daemon wrote
    is read whenever an attribute below is looked at.

    @ivar received: the messages received, in order: C{str} for text,
        C{bytes} for binary.
    """

    def __init__(self, factory: RouteFactory, route: str, port: int, query: str,
                 headers: dict[str, str], subprotocols: tuple[str, ...]) -> None:
        self.received: list[str | bytes] = []
        self._status: int | None = None
        self._response: dict[str, str] = {}
        self._closed: tuple[int, str] | None = None
        self._close_sent = False
        self._lost = False
        self._pending = b""
        self._fragments: list[bytes] = []
        self._fragment_opcode = _TEXT
        self._transport = _Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        protocol = factory.buildProtocol(self._transport.getPeer())
        assert isinstance(protocol, RouteProtocol)
        self._protocol: RouteProtocol = protocol
        protocol.makeConnection(self._transport)
        protocol.dataReceived(_handshake(route, query, headers, subprotocols))
        self._read()

    @property
    def status(self) -> int | None:
        """The handshake's HTTP status (101: open), None while it is pending."""
        self._read()
        return self._status

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the daemon chose, or None."""
        self._read()
        return self._response.get("sec-websocket-protocol")

    @property
    def closed(self) -> tuple[int, str] | None:
        """
        How the connection ended: the close code and reason the daemon sent
        (1006 and "" when it dropped the connection without one); None
        while it is open or the handshake is pending.
        """
        self._read()
        return self._closed

    @property
    def is_open(self) -> bool:
        self._read()
        return self._status == 101 and self._closed is None and not self._lost

    def send(self, message: str | bytes) -> None:
        """Send a text (C{str}) or binary (C{bytes}) message."""
        if isinstance(message, str):
            self._write(_frame(_TEXT, message.encode()))
        else:
            self._write(_frame(_BINARY, bytes(message)))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; C{closed} then holds the daemon's answer."""
        self._close_sent = True
        self._write(_frame(_CLOSE, struct.pack("!H", code) + reason.encode()))

    def disconnect(self) -> None:
        """Lose the connection without a closing handshake."""
        self._lose()

    def _write(self, data: bytes) -> None:
        if self._lost:
            raise RuntimeError("the connection is closed")
        self._protocol.dataReceived(data)
        self._read()

    def _lose(self) -> None:
        if not self._lost:
            self._lost = True
            self._protocol.connectionLost(Failure(ConnectionDone()))

    def _read(self) -> None:
        data = self._transport.value()
        self._transport.clear()
        self._pending += data
        if self._status is None:
            head, sep, rest = self._pending.partition(b"\r\n\r\n")
            if not sep:
                return
            self._status, self._response = _parse_response(head)
            self._pending = rest
        replies = self._frames()
        if replies and not self._lost:
            self._protocol.dataReceived(replies)
            self._read()
            return
        if self._transport.disconnecting and not self._lost:
            if self._status == 101 and self._closed is None:
                self._closed = (1006, "")
            self._lose()

    def _frames(self) -> bytes:
        """
        Take in the complete frames read so far.

        @return: what the client answers (pongs, its half of a close).
        """
        answers = b""
        while (parsed := _parse_frame(self._pending)) is not None:
            opcode, fin, payload, self._pending = parsed
            if opcode == _CLOSE:
                if self._closed is None:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    self._closed = (code, payload[2:].decode("utf-8", "replace"))
                if not self._close_sent:
                    self._close_sent = True
                    answers += _frame(_CLOSE, payload[:2])
            elif opcode == _PING:
                answers += _frame(_PONG, payload)
            elif opcode in (_TEXT, _BINARY, _CONTINUATION):
                if opcode != _CONTINUATION:
                    self._fragment_opcode = opcode
                self._fragments.append(payload)
                if fin:
                    whole = b"".join(self._fragments)
                    self._fragments = []
                    self.received.append(whole.decode() if self._fragment_opcode == _TEXT
                                         else whole)
        return answers


def _handshake(route: str, query: str, headers: Mapping[str, str],
               subprotocols: tuple[str, ...]) -> bytes:
    target = quote(route, safe="/") + (f"?{query}" if query else "")
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade",
             f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
             "Sec-WebSocket-Version: 13"]
    if subprotocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _parse_response(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), fields


def _frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked frame, as a client sends it."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", size)
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", size)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _parse_frame(data: bytes) -> tuple[int, bool, bytes, bytes] | None:
    """
    @return: the first complete (unmasked, server) frame's opcode, fin and
        payload, and the bytes after it; None if no frame is complete yet.
    """
    if len(data) < 2:
        return None
    size, start = data[1] & 0x7F, 2
    if size == 126:
        if len(data) < 4:
            return None
        size, start = struct.unpack("!H", data[2:4])[0], 4
    elif size == 127:
        if len(data) < 10:
            return None
        size, start = struct.unpack("!Q", data[2:10])[0], 10
    if len(data) < start + size:
        return None
    return data[0] & 0x0F, bool(data[0] & 0x80), data[start:start + size], data[start + size:]
