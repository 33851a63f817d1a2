"""
A route connection's lean setup (wsdaemon.connections.setup): the same
attributes as Autobahn's own _connectionMade gives, without running it; the
factory's options as they are when the connection is made; Autobahn's own
setup when the start-up check finds a difference or a missing name; the
opening handshake's timer armed only for a straight-upgraded handshake that
waits, never for one held on purpose; TCP_NODELAY on for a straight
upgrade.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from autobahn.twisted.resource import WebSocketResource
from autobahn.websocket import protocol as autobahn_protocol
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from zope.interface import implementer

from tests import wsframes as ws
from tests.unit.test_protocol import SETTINGS, Client, ProgrammableStrategy, echo, make_factory
from tests.unit.test_upgrade import Transport, Turns
from wsdaemon import internals
from wsdaemon.connections import setup, upgrade
from wsdaemon.connections.protocol import RouteFactory, RouteProtocol
from wsdaemon.connections.route import Route
from wsdaemon.connections.upgrade import HandshakePacer
from wsdaemon.interfaces import IHandshakeHook, IHandshakePolicy, IReplyStrategy
from wsdaemon.internals import Reach
from wsdaemon.records import HandshakeAnswer, HandshakePlan, HandshakeRequest
from wsdaemon.server.web import build_site

TIMED = replace(SETTINGS, open_handshake_timeout=7.0)


class Timers:
    """Stands in for Autobahn's batched timer: records what is armed."""

    def __init__(self) -> None:
        self.armed: list[tuple[float, Any]] = []
        self.ever: list[tuple[float, Any]] = []

    def call_later(self, delay: float, f: Any) -> Any:
        self.armed.append((delay, f))
        self.ever.append((delay, f))
        timers = self

        class Call:
            def cancel(self) -> None:
                timers.armed.remove((delay, f))

        return Call()


@pytest.fixture
def lean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup, "_reach", [Reach("setup")])
    monkeypatch.setattr(upgrade, "_reach", [Reach("upgrade")])


@pytest.fixture
def autobahns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup, "_reach", [Reach("setup", ("WebSocketServerFactory.x",))])
    monkeypatch.setattr(upgrade, "_reach", [Reach("upgrade")])


def _no_autobahn_setup(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    ran: list[object] = []
    original = autobahn_protocol.WebSocketServerProtocol._connectionMade

    def spy(self: Any) -> None:
        if isinstance(self, RouteProtocol):  # not the other speed paths' probes
            ran.append(self)
        original(self)

    monkeypatch.setattr(autobahn_protocol.WebSocketServerProtocol, "_connectionMade", spy)
    return ran


def comparable(protocol: Any) -> dict[str, Any]:
    return {name: (value if isinstance(value, (type(None), bool, int, float, str, bytes,
                                               list, tuple, dict)) else type(value))
            for name, value in vars(protocol).items()
            if name not in _PER_CONNECTION}


#: What differs on every connection (random ids and keys, objects), and the
#: UTF-8 validator a route's connection makes only if used.
_PER_CONNECTION = ("_session_id", "_client_id", "http_response_data", "http_request_data",
                   "http_headers", "websocket_key", "_wskey", "transport", "utf8validator")


def test_the_check_passes_on_the_installed_autobahn(lean: None) -> None:
    """On the installed Autobahn, a probe set up the lean way equals
    Autobahn's own; the start-up line says the path is on."""
    assert internals.check_setup(setup._lean_probe).usable
    assert setup.describe() == "connections set up from a snapshot of their options"


def test_a_route_connection_is_set_up_without_autobahns_loop_and_the_same(
        lean: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the check passed, Autobahn's _connectionMade does not run, and
    the open connection has the same attributes as one it set up."""
    ran = _no_autobahn_setup(monkeypatch)
    ours = Client(make_factory(ProgrammableStrategy(echo)))
    assert ran == [] and ours.status == 101
    monkeypatch.setattr(setup, "_reach", [Reach("setup", why="off")])
    theirs = Client(make_factory(ProgrammableStrategy(echo)))
    assert len(ran) == 1 and theirs.status == 101
    assert comparable(ours.protocol) == comparable(theirs.protocol)
    ours.send(ws.TEXT, b"hi")
    assert [f.payload for f in ours.frames()] == [b"hi"]


def test_a_route_connection_makes_no_utf8_validator_it_does_not_use(lean: None) -> None:
    """Routes validate text with their own decoder (utf8validateIncoming
    off): no Autobahn validator is made per connection, one is made if
    something asks for it; with the option on, one is made at setup."""
    from autobahn.websocket.utf8validator import Utf8Validator

    factory = make_factory(ProgrammableStrategy(echo))
    client = Client(factory)
    assert "utf8validator" not in vars(client.protocol)
    client.send(ws.TEXT, "h\u00e9".encode())
    assert [f.payload for f in client.frames()] == ["h\u00e9".encode()]
    assert isinstance(client.protocol.utf8validator, Utf8Validator)
    assert client.protocol.utf8validator is client.protocol.utf8validator
    factory.setProtocolOptions(utf8validateIncoming=True)
    validating = Client(factory)
    assert isinstance(vars(validating.protocol)["utf8validator"], Utf8Validator)


def test_autobahns_setup_runs_when_the_check_fails(autobahns: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Without what the lean setup uses, Autobahn's own sets up every
    connection (and it works)."""
    ran = _no_autobahn_setup(monkeypatch)
    client = Client(make_factory(ProgrammableStrategy(echo)))
    assert len(ran) == 1 and client.status == 101
    assert setup.describe().startswith("Autobahn's own connection setup (missing ")


def test_new_connections_take_the_options_as_changed(lean: None) -> None:
    """A change of options (a reload) reaches the next connection: the
    snapshot is taken again."""
    factory = make_factory(ProgrammableStrategy(echo))
    first = Client(factory)
    factory.setProtocolOptions(maxMessagePayloadSize=77)
    second = Client(factory)
    assert (first.protocol.maxMessagePayloadSize, second.protocol.maxMessagePayloadSize) \
        == (1024, 77)


def test_an_option_set_on_the_connection_itself_is_kept(lean: None) -> None:
    """As in Autobahn: an option the connection already has is not
    overwritten from the factory."""
    factory = make_factory(ProgrammableStrategy(echo))
    protocol: Any = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    protocol.maxMessagePayloadSize = 5
    protocol.makeConnection(Transport())
    assert protocol.maxMessagePayloadSize == 5 and protocol.maxFramePayloadSize == 1024


def test_the_check_names_what_a_probe_sets_differently(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lean setup that forgot an attribute, or gave it another value, is
    refused at start-up, naming it."""
    state = dict(setup._PLAIN_STATE)
    del state["triggered"]
    state["wasClean"] = True
    monkeypatch.setattr(setup, "_PLAIN_STATE", state)
    reach = internals.check_setup(setup._lean_probe)
    assert not reach.usable
    assert "triggered" in reach.describe() and "wasClean" in reach.describe()


def test_the_check_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """An Autobahn without a name the lean setup uses: the path is off."""
    monkeypatch.delattr(autobahn_protocol, "TrafficStats")
    reach = internals.check_setup(setup._lean_probe)
    assert reach.missing == ("autobahn.websocket.protocol.TrafficStats",)


# -- the opening handshake's timer, on the straight upgrade --------------------------


@implementer(IReplyStrategy, IHandshakeHook)
class Asking(ProgrammableStrategy):
    """Takes part in the handshake: answers when told to."""

    def __init__(self) -> None:
        super().__init__(echo)
        self.pending: list[Deferred[HandshakeAnswer]] = []

    def connecting(self, request: HandshakeRequest) -> Deferred[HandshakeAnswer]:
        d: Deferred[HandshakeAnswer] = Deferred()
        self.pending.append(d)
        return d

    def abandoned(self, session_id: str) -> None:
        pass


@implementer(IReplyStrategy, IHandshakePolicy)
class Holding(ProgrammableStrategy):
    """Holds the next handshake on purpose."""

    handshake_plan = HandshakePlan(hang_next=1)


def straight(strategy: Any) -> tuple[RouteProtocol, Transport, Timers]:
    """A handshake for C{strategy}'s route, read whole by the site's channel."""
    route = Route(path="/t", section="route:/t", strategy_name="test", strategy=strategy,
                  protocol=TIMED)
    factory = RouteFactory(route, clock=Clock())
    timers = Timers()
    factory._batched_timer = timers
    root = Resource()
    root.putChild(b"t", WebSocketResource(factory))
    site = build_site(root, 5.0)
    site.handshake_pacer = HandshakePacer(Turns().call_later, 1000)
    transport = Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    channel = site.buildProtocol(transport.getPeer())
    channel.callLater = Clock().callLater  # type: ignore[attr-defined]
    transport.protocol = channel
    channel.makeConnection(transport)
    channel.dataReceived(ws.handshake_request("/t"))
    assert isinstance(transport.protocol, RouteProtocol)
    return transport.protocol, transport, timers


def handshake_timers(timers: Timers, ever: bool = False) -> list[float]:
    """The opening handshake timers armed now (or ever)."""
    return [delay for delay, f in (timers.ever if ever else timers.armed)
            if getattr(f, "__func__", None) is RouteProtocol.onOpenHandshakeTimeout]


def test_a_handshake_answered_at_once_arms_no_timer(lean: None) -> None:
    """Read whole and answered in the same call: no opening handshake timer
    was ever armed (Autobahn arms one per connection and cancels it)."""
    protocol, transport, timers = straight(ProgrammableStrategy(echo))
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    assert protocol.openHandshakeTimeoutCall is None
    assert handshake_timers(timers, ever=True) == []


def test_a_handshake_that_waits_gets_its_timer(lean: None) -> None:
    """A strategy taking part in the handshake: the answer waits, the
    opening handshake's timer is armed, and it ends a handshake left
    unanswered."""
    strategy = Asking()
    protocol, transport, timers = straight(strategy)
    assert transport.value() == b"" and len(strategy.pending) == 1
    assert handshake_timers(timers) == [7.0]
    [(_, fire)] = [(d, f) for d, f in timers.armed if d == 7.0]
    fire()
    assert transport.disconnecting and protocol.wasOpenHandshakeTimeout


def test_an_answered_waiting_handshake_cancels_its_timer(lean: None) -> None:
    """Once the strategy answers, the timer goes (as in Autobahn)."""
    strategy = Asking()
    protocol, transport, timers = straight(strategy)
    strategy.pending[0].callback(HandshakeAnswer())
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    assert handshake_timers(timers) == []


def test_a_held_handshake_gets_no_timer(lean: None) -> None:
    """hang_next: held on purpose, never timed out by the daemon (as when
    Autobahn armed the timer and the hold cancelled it)."""
    protocol, transport, timers = straight(Holding(echo))
    assert transport.value() == b""
    assert protocol.factory.handshake.held == {protocol}
    assert handshake_timers(timers) == []


def test_twisted_webs_way_arms_the_timer_as_autobahn_does(lean: None) -> None:
    """A handshake in pieces (twisted.web's way): the timer is armed as the
    connection is made, and cancelled once answered."""
    route = Route(path="/t", section="route:/t", strategy_name="test",
                  strategy=ProgrammableStrategy(echo), protocol=TIMED)
    factory = RouteFactory(route, clock=Clock())
    timers = Timers()
    factory._batched_timer = timers
    protocol: Any = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport = Transport()
    protocol.makeConnection(transport)
    assert handshake_timers(timers) == [7.0]
    protocol.dataReceived(ws.handshake_request("/t"))
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    assert handshake_timers(timers) == [] and handshake_timers(timers, ever=True) == [7.0]


@implementer(ITCPTransport)
class NoDelayTransport(Transport):
    """Records TCP_NODELAY as a TCP transport would set it."""

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.nodelay: list[bool] = []

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay.append(enabled)


def test_a_straight_upgraded_connection_has_tcp_nodelay(lean: None) -> None:
    """TCP_NODELAY is on for a WebSocket connection handed straight to its
    route: Autobahn's own attempt fails silently (its tcpNoDelay option is
    not copied yet when it tries), and twisted.web's channel sets it only
    from Twisted 24.10: the route's protocol sets it once the option is
    known (on the declared floor, 24.7, nothing else would)."""
    protocol = RouteProtocol()
    assert not hasattr(protocol, "tcpNoDelay")  # why Autobahn's attempt fails
    factory = make_factory(ProgrammableStrategy(echo))
    root = Resource()
    root.putChild(b"t", WebSocketResource(factory))
    site = build_site(root, 5.0)
    site.handshake_pacer = HandshakePacer(Turns().call_later, 1000)
    transport = NoDelayTransport()
    channel = site.buildProtocol(transport.getPeer())
    channel.callLater = Clock().callLater  # type: ignore[attr-defined]
    transport.protocol = channel
    channel.makeConnection(transport)
    channel.dataReceived(ws.handshake_request("/t"))
    assert isinstance(transport.protocol, RouteProtocol)
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    assert transport.nodelay and all(transport.nodelay)
