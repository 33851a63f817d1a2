"""
The site's HTTP channel (wsdaemon.connections.upgrade): a plain WebSocket
handshake goes straight to its route's protocol and is answered exactly as
through twisted.web; anything unusual takes twisted.web's way; requests are
paced per reactor turn, in arrival order; without the private names it
uses, every request takes twisted.web's way.
"""

from __future__ import annotations

from typing import Any

import pytest
from autobahn.twisted.resource import WebSocketResource
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from tests import wsframes as ws
from tests.unit.test_protocol import (
    SETTINGS,
    LenientTransport,
    ProgrammableStrategy,
    echo,
    make_factory,
)
from wsdaemon import internals
from wsdaemon.connections import upgrade
from wsdaemon.connections.protocol import RouteProtocol
from wsdaemon.connections.upgrade import HandshakePacer, UpgradeChannel
from wsdaemon.internals import Reach
from wsdaemon.server.web import build_site


class Transport(LenientTransport):
    """A TCP-like transport: its protocol can be swapped, as tcp.Server's."""

    protocol: Any = None
    disconnected = False


class Turns:
    """Reactor turns by hand: what is scheduled for the next turn runs on
    L{turn}, and what that schedules waits for the turn after (as in the
    reactor; task.Clock would run it at once)."""

    def __init__(self) -> None:
        self.pending: list[Any] = []

    def call_later(self, delay: float, f: Any, *args: Any) -> object:
        assert delay == 0
        self.pending.append((f, args))
        return (f, args)

    def turn(self) -> None:
        pending, self.pending = self.pending, []
        for f, args in pending:
            f(*args)


class Site:
    """A site with one route at /t (and /a/b), on a clock; counts renders."""

    def __init__(self, per_turn: int = 1000) -> None:
        self.clock = Clock()
        self.turns = Turns()
        self.factory = make_factory(ProgrammableStrategy(echo))
        root = Resource()
        self.resource = WebSocketResource(self.factory)
        self.renders = 0
        original = self.resource.render

        def counted(request: Any) -> Any:
            self.renders += 1
            return original(request)

        self.resource.render = counted  # type: ignore[method-assign]
        root.putChild(b"t", self.resource)
        inner = Resource()
        inner.putChild(b"b", self.resource)
        root.putChild(b"a", inner)
        self.site = build_site(root, 5.0)
        self.site.handshake_pacer = HandshakePacer(self.turns.call_later, per_turn)

    def connect(self) -> tuple[UpgradeChannel, Transport]:
        transport = Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        channel = self.site.buildProtocol(transport.getPeer())
        assert isinstance(channel, UpgradeChannel)
        channel.callLater = self.clock.callLater  # type: ignore[assignment]
        transport.protocol = channel
        channel.makeConnection(transport)
        return channel, transport


def answer(site: Site, request: bytes, pieces: int = 1) -> tuple[bytes, Transport]:
    channel, transport = site.connect()
    step = -(-len(request) // pieces)
    for i in range(0, len(request), step):
        channel.dataReceived(request[i:i + step])
    return transport.value(), transport


def comparable(response: bytes) -> list[bytes]:
    """The response's lines, less the parts that differ on every handshake."""
    head = response.partition(b"\r\n\r\n")[0]
    return [line for line in head.split(b"\r\n")
            if not line.lower().startswith((b"sec-websocket-accept", b"set-cookie", b"date"))]


@pytest.fixture
def straight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upgrade, "_reach", [Reach("upgrade")])


@pytest.fixture
def twisted_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upgrade, "_reach",
                        [Reach("upgrade", ("twisted.internet.tcp.Server.protocol",))])


def test_a_plain_handshake_goes_straight_to_the_route(straight: None) -> None:
    """A whole GET for the route's path never becomes a twisted.web Request:
    the route's protocol answers 101 and then echoes."""
    site = Site()
    response, transport = answer(site, ws.handshake_request("/t?x=1", origin="http://localhost:1"))
    assert response.startswith(b"HTTP/1.1 101 ")
    assert site.renders == 0
    assert isinstance(transport.protocol, RouteProtocol)
    transport.clear()
    transport.protocol.dataReceived(ws.client_frame(ws.TEXT, b"hi"))
    assert [f.payload for f in ws.parse_frames(transport.value())] == [b"hi"]


REQUESTS = [
    ws.handshake_request("/t"),
    ws.handshake_request("/a/b", origin="http://127.0.0.1:8080"),
    ws.handshake_request("/t", origin="http://evil.example"),  # 403
    ws.handshake_request("/t", extra="Sec-WebSocket-Protocol: chat, superchat\r\n"),
    ws.handshake_request("/t", extra="Cookie: a=1\r\nCookie: b=2\r\n"),
    ws.handshake_request("/t").replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
    ws.handshake_request("/t").replace(b"Upgrade: websocket\r\n", b""),  # not an upgrade
]


@pytest.mark.parametrize("request_", REQUESTS,
                         ids=[f"request-{n}" for n in range(len(REQUESTS))])
def test_answers_are_the_same_both_ways(request_: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Accepted, refused by onConnect (origin), refused by Autobahn (a bad
    version, no Upgrade): the same status and headers straight as through
    twisted.web."""
    monkeypatch.setattr(upgrade, "_reach", [Reach("upgrade")])
    straight_site = Site()
    fast, _ = answer(straight_site, request_)
    monkeypatch.setattr(upgrade, "_reach", [Reach("upgrade", ("x.y",))])
    slow_site = Site()
    slow, _ = answer(slow_site, request_)
    assert straight_site.renders == 0 and slow_site.renders == 1
    assert comparable(fast) == comparable(slow)
    assert fast.split(b" ", 2)[1] == slow.split(b" ", 2)[1]


UNUSUAL = [
    ws.handshake_request("/%74"),  # percent-encoded: twisted.web decodes it
    ws.handshake_request("/t/below"),  # under the route: twisted.web's traversal
    ws.handshake_request("/t").replace(b"GET", b"POST"),
    ws.handshake_request("/t").replace(b"HTTP/1.1", b"HTTP/1.0"),
    ws.handshake_request("/t", extra="X-Odd: a\x01b\r\n"),  # a control character
    ws.handshake_request("/t", extra="Bad Name: x\r\n"),  # not a token
    ws.handshake_request("/t", extra="Content-Length: 0\r\n"),  # a body
    ws.handshake_request("/t", extra="X-Big: " + "a" * 17000 + "\r\n"),  # over the cap
    ws.handshake_request("/t", extra="".join(f"X-{i}: 1\r\n" for i in range(501))),
]


@pytest.mark.parametrize("request_", UNUSUAL,
                         ids=[f"unusual-{n}" for n in range(len(UNUSUAL))])
def test_anything_unusual_takes_twisted_webs_way(request_: bytes, straight: None) -> None:
    """What twisted.web might read otherwise (or refuse) is left to it."""
    site = Site()
    channel, transport = site.connect()
    assert not channel._upgrade(request_)
    assert transport.protocol is channel


def test_a_request_in_pieces_takes_twisted_webs_way(straight: None) -> None:
    """Headers that arrive in several reads are parsed by twisted.web, and
    the handshake still succeeds."""
    site = Site()
    response, transport = answer(site, ws.handshake_request("/t"), pieces=3)
    assert response.startswith(b"HTTP/1.1 101 ") and site.renders == 1
    assert isinstance(transport.protocol, RouteProtocol)


def test_other_pages_are_twisted_webs(straight: None) -> None:
    """A path that is not a route is answered by twisted.web (404)."""
    response, _ = answer(Site(), b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 404 ")


def test_without_the_private_names_every_request_takes_twisted_webs_way(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A WebSocketResource that keeps its factory elsewhere (a newer
    Autobahn): the check names it, the path stays off and says why, and
    handshakes still succeed through twisted.web."""
    original = WebSocketResource.__init__

    def elsewhere(self: Any, factory: Any) -> None:
        original(self, factory)
        self.factory_elsewhere = self.__dict__.pop("_factory")

    monkeypatch.setattr(WebSocketResource, "__init__", elsewhere)
    reach = internals.check_upgrade()
    assert reach.missing == ("autobahn.twisted.resource.WebSocketResource._factory",)
    monkeypatch.setattr(upgrade, "_reach", [])
    assert upgrade.enable(reach) is reach
    assert upgrade.describe() == ("every handshake through twisted.web (missing "
                                  "autobahn.twisted.resource.WebSocketResource._factory)")
    monkeypatch.setattr(WebSocketResource, "__init__", original)
    site = Site()
    response, _ = answer(site, ws.handshake_request("/t"))
    assert response.startswith(b"HTTP/1.1 101 ") and site.renders == 1


def test_requests_are_paced_per_turn_in_arrival_order(straight: None) -> None:
    """With 2 per turn, 5 handshakes arriving in one turn: 2 answered, 3
    wait unread; the next turn answers the next 2 in arrival order, then
    the last; an open connection's messages are never held."""
    site = Site(per_turn=2)
    clients = [site.connect() for _ in range(5)]
    for channel, _ in clients:
        channel.dataReceived(ws.handshake_request("/t"))
    answered = [bool(t.value()) for _, t in clients]
    assert answered == [True, True, False, False, False]
    # Waiting clients, which wait for their answer, are not paused (no
    # epoll_ctl calls); one that sends more is, until its turn.
    assert [t.producerState for _, t in clients[2:]] == ["producing"] * 3
    clients[3][0].dataReceived(b"early")
    assert [t.producerState for _, t in clients[2:]] == ["producing", "paused", "producing"]
    assert site.site.handshake_pacer.waiting == 3
    open_transport = clients[0][1]
    open_transport.clear()
    open_transport.protocol.dataReceived(ws.client_frame(ws.TEXT, b"not held"))
    assert [f.payload for f in ws.parse_frames(open_transport.value())] == [b"not held"]
    site.turns.turn()
    assert [bool(t.value()) for _, t in clients] == [True, True, True, True, False]
    assert [t.producerState for _, t in clients[2:4]] == ["producing"] * 2
    assert clients[3][1].value().startswith(b"HTTP/1.1 101 ")  # early bytes and all
    site.turns.turn()
    assert all(t.value().startswith(b"HTTP/1.1 101 ") for _, t in clients[1:])
    assert site.site.handshake_pacer.waiting == 0


def test_a_waiting_request_waits_once_and_its_client_may_leave(straight: None) -> None:
    """More bytes from a waiting connection join what it waits with (it is
    queued once: the queue is bounded by the connections); one that went
    away meanwhile is skipped."""
    site = Site(per_turn=1)
    first, _ = site.connect()
    first.dataReceived(ws.handshake_request("/t"))
    waiting, transport = site.connect()
    leaving, gone = site.connect()
    request = ws.handshake_request("/t")
    waiting.dataReceived(request[:20])
    waiting.dataReceived(request[20:])
    leaving.dataReceived(ws.handshake_request("/t"))
    assert site.site.handshake_pacer.waiting == 2
    gone.disconnected = True
    leaving.connectionLost(None)
    site.turns.turn()
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    site.turns.turn()
    assert gone.value() == b"" and site.site.handshake_pacer.waiting == 0


def test_the_pacer_lets_through_at_most_its_bound_per_turn() -> None:
    """At the bound: per_turn admitted, the next refused until the turn
    ends; a bound below 1 means 1."""
    turns = Turns()
    pacer = HandshakePacer(turns.call_later, 3)
    assert [pacer.admit() for _ in range(4)] == [True, True, True, False]
    assert len(turns.pending) == 1  # one call per turn, not per request
    turns.turn()
    assert pacer.admit()
    assert HandshakePacer(turns.call_later, 0).per_turn == 1
    assert upgrade.HANDSHAKES_PER_TURN == 8


def test_the_site_uses_the_channel() -> None:
    """The daemon's site is paced and upgrades straight."""
    assert build_site(Resource(), 5.0).protocol is UpgradeChannel
    assert SETTINGS.open_handshake_timeout == 0


def test_one_timer_per_connection_the_header_deadline(straight: None) -> None:
    """Twisted's idle timer is not armed (the header deadline covers it):
    a connection that sends nothing is cut at the deadline, and so is an
    idle one after a page."""
    site = Site()
    channel, transport = site.connect()
    assert [call.getTime() for call in site.clock.getDelayedCalls()] == [5.0]
    site.clock.advance(5)
    assert transport.disconnecting
    channel, transport = site.connect()
    channel.dataReceived(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 404 ")
    assert len(site.clock.getDelayedCalls()) == 1
