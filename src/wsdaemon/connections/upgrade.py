"""
The HTTP side of a WebSocket handshake, kept cheap and fair in a reconnect
storm (issue #26): a deploy, a network blip or a load balancer failover
reconnects every client at once.

L{UpgradeChannel} is the site's HTTP channel (with the header deadline of
L{HandshakeDeadlineChannel}) and adds two things:

  - Pacing: new HTTP requests, handshakes all of them on a WebSocket
    daemon, are handled at most L{HANDSHAKES_PER_TURN} per reactor turn;
    the others wait, in arrival order, for the next turns (a client
    sending more meanwhile is not read until then). Messages of open
    connections are read in every turn, so during a storm a client's echo
    waits behind at most that many handshakes
    instead of behind every handshake in flight (hundreds, a few hundred
    µs each). Nobody waits unboundedly: each connection waits at most once
    per request, and at most the header deadline (C{open_handshake_timeout}),
    past which it is cut as a too slow one is.
  - A straight upgrade: a complete C{GET} request for a WebSocket route's
    exact path, read at once, with well-formed headers within Twisted's
    caps (L{HTTPChannel.totalHeadersSize}, L{HTTPChannel.maxHeaders}) and
    no body, is handed to the route's Autobahn protocol as it came.
    Twisted's way builds a C{Request}, its header objects and the resource
    traversal, and Autobahn's C{WebSocketResource} then turns all of it back
    into bytes for Autobahn to parse once more: about a sixth of a
    handshake's CPU here. Anything else (another method or path, a
    percent-encoded path, a header Twisted would refuse or that Autobahn
    might read differently, a request in pieces, TLS) takes Twisted's way,
    unchanged. Autobahn checks the handshake itself either way, and
    C{onConnect} (origin, identity, limits) runs the same.

The straight upgrade reaches two private names (L{wsdaemon.internals},
C{UPGRADE}): the route's factory inside C{WebSocketResource} and the TCP
transport's C{protocol}, which C{WebSocketResource} itself swaps. Without
them every request takes Twisted's way.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.resource import Resource

from wsdaemon.connections.limits import HandshakeDeadlineChannel
from wsdaemon.connections.setup import ARM_LATER, arm_if_waiting
from wsdaemon.internals import Reach, check_upgrade

__all__ = ["HANDSHAKES_PER_TURN", "HandshakePacer", "UpgradeChannel", "describe", "enable"]

_log = Logger(namespace="wsdaemon.upgrade")

#: HTTP requests (handshakes) handled per reactor turn at most, by default.
#: At a few hundred µs each, an open connection's message waits a few ms
#: behind them at worst.
HANDSHAKES_PER_TURN = 8

#: A request line and headers as Twisted accepts them without a doubt: a
#: token for each name, no control characters (but tab) in values.
_REQUEST = re.compile(
    rb"GET (?P<target>/[!-~]*) HTTP/1\.1\r\n"
    rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r\n)*"
)
#: Headers that announce a body, or ask for an interim answer: Twisted's way.
_BODY = re.compile(rb"(?im)^(?:content-length|transfer-encoding|expect):")

_reach: list[Reach] = []


def enable(reach: Reach | None = None) -> Reach:
    """
    Check once (L{wsdaemon.internals.check_upgrade}) whether the straight
    upgrade has the names it uses; without them it stays off.

    @return: the check's result.
    """
    if not _reach:
        _reach.append(reach if reach is not None else check_upgrade())
        if not _reach[0].usable:
            _log.warn("speed path upgrade off, twisted.web reads every handshake: {why}",
                      why=_reach[0].describe())
    return _reach[0]


def describe() -> str | None:
    """
    @return: what the start-up log says of this path (None: on).
    """
    reach = enable()
    return None if reach.usable else f"every handshake through twisted.web ({reach.describe()})"


class HandshakePacer:
    """
    Lets at most C{per_turn} HTTP requests through per reactor turn; the
    others wait in arrival order (each waiting connection once, with what
    it sent: one read's bytes, more than that is not read meanwhile) and
    go first in the next turns.

    @param call_later: schedules a call for the next reactor turn
        (C{IReactorTime.callLater}).
    """

    def __init__(self, call_later: Callable[..., Any],
                 per_turn: int = HANDSHAKES_PER_TURN) -> None:
        self.per_turn = max(1, per_turn)
        self._call_later = call_later
        self._count = 0
        self._turn: Any = None
        self._waiting: deque[Callable[[], None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def admit(self) -> bool:
        """
        @return: whether a request may be handled now (counting it); if
            not, L{wait} with how to handle it later.
        """
        if self._count >= self.per_turn or self._waiting:
            return False
        self._count += 1
        self._next_turn_soon()
        return True

    def wait(self, resume: Callable[[], None]) -> None:
        """
        Call C{resume} in a later turn, after those already waiting.
        """
        self._waiting.append(resume)
        self._next_turn_soon()

    def _next_turn_soon(self) -> None:
        if self._turn is None:
            self._turn = self._call_later(0, self._next_turn)

    def _next_turn(self) -> None:
        self._turn = None
        self._count = 0
        waiting = self._waiting
        while waiting and self._count < self.per_turn:
            resume = waiting.popleft()
            self._count += 1
            try:
                resume()
            except Exception:
                _log.failure("a paced HTTP request failed")
        if self._count:
            self._next_turn_soon()


class UpgradeChannel(HandshakeDeadlineChannel):
    """
    The site's HTTP channel: paced (L{HandshakePacer}, one per site) and
    with the straight upgrade of WebSocket handshakes.
    """

    _first = True
    _held: bytes | None = None
    _paused = False

    def connectionMade(self) -> None:
        # Twisted's idle timer (a minute, armed per connection and cancelled
        # at the request) is covered by the header deadline, which is
        # shorter and armed at the same times: one timer per connection, not
        # two.
        self.timeOut = None
        super().connectionMade()

    def _pacer(self) -> HandshakePacer:
        site: Any = getattr(self, "site", None)
        pacer: HandshakePacer | None = getattr(site, "handshake_pacer", None)
        if pacer is None:
            pacer = HandshakePacer(self.callLater,
                                   getattr(site, "handshakes_per_turn", HANDSHAKES_PER_TURN))
            if site is not None:
                site.handshake_pacer = pacer
        return pacer

    def dataReceived(self, data: bytes) -> None:
        if self._held is not None:
            # A client does not send more before its answer, as a rule; one
            # that does is not read until its turn (one read's bytes kept).
            self._held += data
            if not self._paused:
                self._paused = True
                transport: Any = self.transport
                transport.pauseProducing()
            return
        if not self._pacer().admit():
            # Kept, without pausing the transport: two epoll_ctl calls saved
            # for the usual client, which waits for its answer.
            self._held = data
            self._pacer().wait(self._resume)
            return
        self._handle(data)

    def _resume(self) -> None:
        data, self._held = self._held, None
        transport: Any = self.transport
        if data is None or transport is None or getattr(transport, "disconnected", False):
            return
        if self._paused:
            self._paused = False
            transport.resumeProducing()
        self._handle(data)

    def _handle(self, data: bytes) -> None:
        if self._first:
            self._first = False
            if self._upgrade(data):
                return
        super().dataReceived(data)

    def _upgrade(self, data: bytes) -> bool:
        """
        Hand a whole, plain WebSocket handshake for a route straight to the
        route's protocol.

        @return: whether it was (if not, Twisted's way reads C{data}).
        """
        reach = _reach[0] if _reach else enable()
        if not reach.usable:
            return False
        end = data.find(b"\r\n\r\n")
        if end < 0 or end + 4 > self.totalHeadersSize:
            return False
        head = data[:end + 2]
        match = _REQUEST.fullmatch(head)
        if (match is None or head.count(b"\r\n") - 1 > self.maxHeaders
                or _BODY.search(head) is not None):
            return False
        resource = self._route_at(match["target"].partition(b"?")[0])
        factory = getattr(resource, "_factory", None)
        transport: Any = self.transport
        if (factory is None or transport is None or isinstance(transport, ProtocolWrapper)
                or ISSLTransport.providedBy(transport)
                or getattr(transport, "protocol", None) is not self):
            return False
        protocol = factory.buildProtocol(transport.getPeer())
        if protocol is None:
            return False
        # What WebSocketResource.render does once Twisted has parsed it all;
        # the opening handshake's timer only if the answer waits (setup).
        self._disarm()
        self.setTimeout(None)
        self.transport = None
        transport.protocol = protocol
        protocol.__dict__[ARM_LATER] = True
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        arm_if_waiting(protocol)
        return True

    def _route_at(self, path: bytes) -> WebSocketResource | None:
        """
        @return: the WebSocket resource at exactly C{path} in the site's
            current tree, else None (Twisted's traversal decides then).
        """
        if b"%" in path:
            return None
        site: Any = getattr(self, "site", None)
        node: Any = getattr(site, "resource", None)
        for segment in path[1:].split(b"/"):
            if (node is None or getattr(node, "isLeaf", False)
                    or type(node).getChildWithDefault is not Resource.getChildWithDefault):
                return None
            children = getattr(node, "children", None)
            node = children.get(segment) if isinstance(children, dict) else None
        return node if isinstance(node, WebSocketResource) else None

    def connectionLost(self, reason: Any = None) -> None:
        self._held = None
        super().connectionLost(reason)
