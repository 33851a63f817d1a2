"""
The route protocol on an in-memory transport: handshake policy, replies in
every form, strategy failures, close codes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, globalLogPublisher
from zope.interface import implementer

from tests import wsframes as ws
from wsdaemon.config import ProtocolSettings
from wsdaemon.connections.protocol import RouteFactory, RouteProtocol
from wsdaemon.connections.route import Route
from wsdaemon.interfaces import IReplyStrategy, ISession

# Autobahn's own timers run on the global reactor; keep them out of unit tests.
SETTINGS = ProtocolSettings(open_handshake_timeout=0, close_handshake_timeout=0,
                            auto_ping_interval=0, max_message_size=1024, max_frame_size=1024)


@implementer(IReplyStrategy)
class ProgrammableStrategy:
    """Answers with whatever C{self.answer(message)} returns; records calls."""

    def __init__(self, answer: Callable[[ISession, str | bytes], object]) -> None:
        self.answer = answer
        self.events: list[tuple[str, object]] = []

    def connection_opened(self, session: ISession) -> None:
        self.events.append(("opened", session.session_id))

    def message_received(self, session: ISession, message: str | bytes) -> object:
        self.events.append(("message", message))
        return self.answer(session, message)

    def connection_closed(self, session: ISession, code: int | None, reason: str) -> None:
        self.events.append(("closed", code))


def make_factory(strategy: IReplyStrategy, settings: ProtocolSettings = SETTINGS,
                 clock: Clock | None = None) -> RouteFactory:
    route = Route(path="/t", section="route:/t", strategy_name="test", strategy=strategy,
                  protocol=settings)
    return RouteFactory(route, clock=clock or Clock())


class LenientTransport(StringTransport):
    """Like TCP transports, tolerates unregistering without a producer."""

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


class Client:
    """One in-memory connection to a factory."""

    def __init__(self, factory: RouteFactory, origin: str | None = None,
                 extra: str = "") -> None:
        self.transport = LenientTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        proto = factory.buildProtocol(self.transport.getPeer())
        assert isinstance(proto, RouteProtocol)
        self.protocol = proto
        proto.makeConnection(self.transport)
        proto.dataReceived(ws.handshake_request("/t", origin=origin, extra=extra))
        data = self.transport.value()
        self.transport.clear()
        self.response, rest = ws.split_response(data)
        assert rest == b""

    @property
    def status(self) -> int:
        return int(self.response.split(b" ", 2)[1])

    def send(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.protocol.dataReceived(ws.client_frame(opcode, payload, fin))

    def frames(self) -> list[ws.Frame]:
        frames = ws.parse_frames(self.transport.value())
        self.transport.clear()
        return frames

    def disconnect(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionDone()))


def echo(session: ISession, message: str | bytes) -> object:
    return message


def test_handshake_and_echo() -> None:
    """Text comes back as text, binary as binary, through the strategy."""
    strategy = ProgrammableStrategy(echo)
    client = Client(make_factory(strategy))
    assert client.status == 101
    client.send(ws.TEXT, "你好，世界".encode())
    client.send(ws.BINARY, b"\x00\xff")
    client.send(ws.TEXT, b"")
    frames = client.frames()
    assert [(f.opcode, f.payload) for f in frames] == [
        (ws.TEXT, "你好，世界".encode()), (ws.BINARY, b"\x00\xff"), (ws.TEXT, b"")]
    assert strategy.events[1:] == [("message", "你好，世界"), ("message", b"\x00\xff"),
                                   ("message", "")]


def test_several_replies_in_order() -> None:
    """A list reply sends every message, in order."""
    client = Client(make_factory(ProgrammableStrategy(lambda s, m: ["one", b"two", "three"])))
    client.send(ws.TEXT, b"go")
    assert [f.payload for f in client.frames()] == [b"one", b"two", b"three"]


def test_no_reply() -> None:
    """A strategy returning None sends nothing."""
    client = Client(make_factory(ProgrammableStrategy(lambda s, m: None)))
    client.send(ws.TEXT, b"go")
    assert client.frames() == []


def test_deferred_reply_arrives_later() -> None:
    """Deferred reply arrives later."""
    pending: list[Deferred[object]] = []

    def later(session: ISession, message: str | bytes) -> object:
        d: Deferred[object] = Deferred()
        pending.append(d)
        return d

    client = Client(make_factory(ProgrammableStrategy(later)))
    client.send(ws.TEXT, b"question")
    assert client.frames() == []
    pending[0].callback(["answer", b"\x01"])
    assert [(f.opcode, f.payload) for f in client.frames()] == [
        (ws.TEXT, b"answer"), (ws.BINARY, b"\x01")]


def test_push_through_session_at_any_time() -> None:
    """A strategy can push through the session at any time; after the close send() says False."""
    sessions: list[ISession] = []
    strategy = ProgrammableStrategy(echo)
    strategy.connection_opened = sessions.append  # type: ignore[method-assign]
    client = Client(make_factory(strategy))
    assert sessions[0].send("pushed") is True
    assert [f.payload for f in client.frames()] == [b"pushed"]
    client.disconnect()
    assert sessions[0].is_open is False
    assert sessions[0].send("too late") is False


@pytest.fixture
def logged() -> list[LogEvent]:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def test_strategy_exception_closes_that_client_with_1011(logged: list[LogEvent]) -> None:
    """A failing strategy closes only its client, with 1011, and is logged with context."""

    def fail_on_boom(session: ISession, message: str | bytes) -> object:
        if message == "boom":
            raise RuntimeError("kaput")
        return message

    factory = make_factory(ProgrammableStrategy(fail_on_boom))
    victim, bystander = Client(factory), Client(factory)
    victim.send(ws.TEXT, b"boom")
    frames = victim.frames()
    assert frames[-1].opcode == ws.CLOSE and frames[-1].close_code == 1011
    bystander.send(ws.TEXT, b"still fine")
    assert [f.payload for f in bystander.frames()] == [b"still fine"]
    failures = [e for e in logged if e.get("log_failure") is not None
                and "strategy" in e.get("log_format", "")]
    assert failures and failures[0]["route"] == "/t" and failures[0]["where"] == "message_received"
    assert isinstance(failures[0]["log_failure"].value, RuntimeError)


def test_failed_deferred_reply_closes_with_1011(logged: list[LogEvent]) -> None:
    """Failed deferred reply closes with 1011."""
    pending: list[Deferred[object]] = []
    client = Client(make_factory(ProgrammableStrategy(lambda s, m: pending.append(Deferred())
                                                      or pending[-1])))
    client.send(ws.TEXT, b"q")
    pending[0].errback(ValueError("later failure"))
    assert client.frames()[-1].close_code == 1011


def test_wrong_reply_type_closes_with_1011(logged: list[LogEvent]) -> None:
    """Wrong reply type closes with 1011."""
    client = Client(make_factory(ProgrammableStrategy(lambda s, m: 42)))
    client.send(ws.TEXT, b"q")
    assert client.frames()[-1].close_code == 1011


def test_closed_callback_gets_code() -> None:
    """Closed callback gets code."""
    strategy = ProgrammableStrategy(echo)
    client = Client(make_factory(strategy))
    client.send(ws.CLOSE, b"\x0f\xa0bye")  # 4000
    assert client.frames()[-1].opcode == ws.CLOSE  # the closing handshake is answered
    client.disconnect()
    assert strategy.events[-1] == ("closed", 4000)


def test_oversized_message_closes_with_1009() -> None:
    """Oversized message closes with 1009."""
    client = Client(make_factory(ProgrammableStrategy(echo)))
    client.send(ws.BINARY, b"x" * 1025)
    assert client.frames()[-1].close_code == 1009


def test_oversized_fragmented_message_closes_with_1009() -> None:
    """Oversized fragmented message closes with 1009."""
    client = Client(make_factory(ProgrammableStrategy(echo)))
    for _ in range(3):
        client.send(ws.CONTINUATION if _ else ws.TEXT, b"x" * 400, fin=False)
    assert client.frames()[-1].close_code == 1009


def test_invalid_utf8_closes_with_1007() -> None:
    """Invalid UTF-8 closes with 1007."""
    strategy = ProgrammableStrategy(echo)
    client = Client(make_factory(strategy))
    client.send(ws.TEXT, b"\xc3\x28")
    assert client.frames()[-1].close_code == 1007
    assert ("message", b"\xc3\x28") not in strategy.events


def test_origin_refused_with_403() -> None:
    """Origin refused with 403."""
    strategy = ProgrammableStrategy(echo)
    client = Client(make_factory(strategy), origin="http://evil.example")
    assert client.status == 403
    assert strategy.events == []


def test_origin_allowed_and_missing() -> None:
    """Origin allowed and missing."""
    local = "http://localhost:5173"
    assert Client(make_factory(ProgrammableStrategy(echo)), origin=local).status == 101
    assert Client(make_factory(ProgrammableStrategy(echo))).status == 101
    strict = replace(SETTINGS, origins=SETTINGS.origins.with_allow_missing(False))
    assert Client(make_factory(ProgrammableStrategy(echo), strict)).status == 403


def test_max_connections_is_exact() -> None:
    """With max_connections = 2 the third handshake gets 503; a slot frees on close."""
    factory = make_factory(ProgrammableStrategy(echo), replace(SETTINGS, max_connections=2))
    first, second = Client(factory), Client(factory)
    assert (first.status, second.status) == (101, 101)
    third = Client(factory)
    assert third.status == 503
    third.disconnect()
    first.disconnect()
    assert Client(factory).status == 101
    assert factory.connections == 2


DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"


def test_compression_off_by_default() -> None:
    """Compression off by default."""
    client = Client(make_factory(ProgrammableStrategy(echo)), extra=DEFLATE)
    assert client.status == 101
    assert b"permessage-deflate" not in client.response.lower()


def test_compression_on_when_configured() -> None:
    """Compression on when configured."""
    factory = make_factory(ProgrammableStrategy(echo), replace(SETTINGS, compression=True))
    client = Client(factory, extra=DEFLATE)
    assert b"permessage-deflate" in client.response.lower()


def test_session_knows_route_peer_and_time() -> None:
    """Session knows route peer and time."""
    sessions: list[ISession] = []
    strategy = ProgrammableStrategy(echo)
    strategy.connection_opened = sessions.append  # type: ignore[method-assign]
    clock = Clock()
    clock.advance(1234.5)
    Client(make_factory(strategy, clock=clock))
    session = sessions[0]
    assert session.route == "/t"
    assert "127.0.0.1" in session.peer
    assert session.connected_at == 1234.5
    assert len(session.session_id) == 32


def test_strategy_may_close_with_code() -> None:
    """Strategy may close with code."""
    def close_it(session: ISession, message: str | bytes) -> object:
        session.close(4001, "go away")
        return None

    client = Client(make_factory(ProgrammableStrategy(close_it)))
    client.send(ws.TEXT, b"x")
    frame = client.frames()[-1]
    assert frame.close_code == 4001 and frame.payload[2:] == b"go away"


def test_message_rate_limit_closes_with_1008() -> None:
    """Over max_message_rate (a bucket of that many messages) the client gets 1008."""
    clock = Clock()
    factory = make_factory(ProgrammableStrategy(echo), replace(SETTINGS, max_message_rate=5),
                           clock=clock)
    client = Client(factory)
    for _ in range(5):
        client.send(ws.TEXT, b"x")
    assert [f.payload for f in client.frames()] == [b"x"] * 5
    client.send(ws.TEXT, b"one too many")
    assert client.frames()[-1].close_code == 1008
    assert factory.stats.refusals == {"max_message_rate": 1}


def test_message_rate_refills_with_time() -> None:
    """Message rate refills with time."""
    clock = Clock()
    client = Client(make_factory(ProgrammableStrategy(echo),
                                 replace(SETTINGS, max_message_rate=2), clock=clock))
    for _ in range(10):
        client.send(ws.TEXT, b"x")
        client.send(ws.TEXT, b"y")
        clock.advance(1)
    assert all(f.opcode == ws.TEXT for f in client.frames())


def test_too_many_fragments_closes_with_1009() -> None:
    """Too many fragments closes with 1009."""
    client = Client(make_factory(ProgrammableStrategy(echo), replace(SETTINGS, max_fragments=10)))
    client.send(ws.TEXT, b"a", fin=False)
    for _ in range(20):
        client.send(ws.CONTINUATION, b"a", fin=False)
    assert client.frames()[-1].close_code == 1009


def test_connection_caps_total_and_per_ip() -> None:
    """Connection caps total and per IP."""
    from wsdaemon.connections.limits import ConnectionLimits

    limits = ConnectionLimits(total=3, per_ip=2)
    factory = make_factory(ProgrammableStrategy(echo))
    factory.limits = limits
    first, second = Client(factory), Client(factory)
    assert (first.status, second.status) == (101, 101)
    assert Client(factory).status == 429  # a third from the same address
    other = LenientTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 1))
    proto = factory.buildProtocol(other.getPeer())
    proto.makeConnection(other)
    proto.dataReceived(ws.handshake_request("/t"))
    assert other.value().startswith(b"HTTP/1.1 101")
    elsewhere = LenientTransport(peerAddress=IPv4Address("TCP", "10.0.0.10", 1))
    proto = factory.buildProtocol(elsewhere.getPeer())
    proto.makeConnection(elsewhere)
    proto.dataReceived(ws.handshake_request("/t"))
    assert elsewhere.value().startswith(b"HTTP/1.1 503")
    first.disconnect()
    assert limits.open == 2
    assert Client(factory).status == 101


def backlogged_client() -> tuple[Client, ISession]:
    """A client whose connection allows 1000 bytes of backlog, and its session."""
    sessions: list[ISession] = []
    strategy = ProgrammableStrategy(echo)
    strategy.connection_opened = sessions.append  # type: ignore[method-assign]
    client = Client(make_factory(strategy, replace(SETTINGS, max_outbound_buffer=1000)))
    return client, sessions[0]


def test_slow_reader_is_dropped_after_the_backlog() -> None:
    """When the transport says its buffer is full, reading stops; past
    max_outbound_buffer more bytes the connection is aborted."""
    client, session = backlogged_client()
    producer = client.transport.producer
    assert producer is not None and client.transport.streaming
    producer.pauseProducing()
    assert client.transport.producerState == "paused"  # we stopped reading it
    for _ in range(9):
        session.send(b"x" * 100)
    assert not client.transport.disconnecting
    session.send(b"x" * 200)
    assert client.transport.disconnecting
    assert client.protocol.factory.stats.refusals == {"slow_reader": 1}


def test_reader_catching_up_resets_the_backlog() -> None:
    """A client that catches up (resumeProducing) starts a fresh backlog."""
    client, session = backlogged_client()
    producer = client.transport.producer
    for _ in range(5):
        producer.pauseProducing()
        session.send(b"x" * 900)
        producer.resumeProducing()
        assert client.transport.producerState == "producing"
    assert not client.transport.disconnecting


def test_repeated_pause_signals_do_not_reset_the_backlog() -> None:
    """Twisted calls pauseProducing on every write while its buffer stays full."""
    client, session = backlogged_client()
    producer = client.transport.producer
    for _ in range(11):
        producer.pauseProducing()
        session.send(b"x" * 100)
    assert client.transport.disconnecting
