"""
The proxy strategy's upstream side, in memory: the upstream is an Autobahn
client protocol on a L{StringTransport}, fed the bytes a server would send.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import (
    ConnectError,
    ConnectionDone,
    ConnectionRefusedError,
    DNSLookupError,
    TimeoutError,
)
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from wsdaemon.connections.session import Session
from wsdaemon.records import HandshakeAnswer, HandshakeRefused, HandshakeRequest, MessageLimits
from wsdaemon.strategies.proxy.recording import read_recording
from wsdaemon.strategies.proxy.strategy import ProxySettings, ProxyStrategy
from wsdaemon.testing import RecordingSession

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LIMITS = MessageLimits(max_message_size=4096, max_frame_size=1024, max_fragments=8)


class Transport(StringTransport):
    """Like a TCP transport, unregistering no producer is no error (Autobahn does it)."""

    def unregisterProducer(self) -> None:
        self.producer = None


class Upstream:
    """One proxied handshake: the strategy, the upstream protocol and what it wrote."""

    def __init__(self, headers: dict[str, str] | None = None,
                 pass_headers: tuple[str, ...] = ("authorization", "user-agent"),
                 limits: MessageLimits = LIMITS, record: Path | None = None,
                 session_id: str = "s1") -> None:
        self.reactor = MemoryReactorClock()
        settings = ProxySettings("ws://upstream.test:9000/feed", pass_headers, record, 1 << 20,
                                 4.0)
        self.strategy = ProxyStrategy(settings, self.reactor)
        self.session_id = session_id
        self.request = HandshakeRequest(session_id=session_id, path="/live", query="",
                                        headers=headers or {}, subprotocols=(),
                                        peer="tcp4:127.0.0.1:5000", limits=limits)
        self.answer: Deferred[HandshakeAnswer] = self.strategy.connecting(self.request)
        self.outcome: list[Any] = []
        self.answer.addBoth(self.outcome.append)
        host, port, factory, _, _ = self.reactor.tcpClients[-1]
        self.protocol: Any = factory.buildProtocol(IPv4Address("TCP", host, port))
        self.transport = Transport()
        self.protocol.makeConnection(self.transport)
        self.request_bytes = self.transport.value()
        self.transport.clear()

    def respond(self, status: bytes = b"101 Switching Protocols",
                accept: bytes | None = None) -> None:
        key = re.search(rb"Sec-WebSocket-Key: (\S+)", self.request_bytes)
        assert key is not None
        right = base64.b64encode(hashlib.sha1(key.group(1) + GUID).digest())
        self.protocol.dataReceived(
            b"HTTP/1.1 " + status + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + (accept or right) + b"\r\n\r\n")

    def lose(self) -> None:
        if self.transport.disconnecting:
            self.protocol.connectionLost(Failure(ConnectionDone()))

    def open(self) -> RecordingSession:
        self.respond()
        assert isinstance(self.outcome[0], HandshakeAnswer)
        session = RecordingSession(session_id=self.session_id, route="/live")
        self.strategy.connection_opened(session)
        return session

    def close_sent(self) -> int | None:
        """The close code in the first close frame the proxy sent upstream (masked)."""
        data = self.transport.value()
        while data:
            opcode, length = data[0] & 0x0F, data[1] & 0x7F
            start = 2
            if length == 126:
                (length,) = struct.unpack("!H", data[2:4])
                start = 4
            mask, start = data[start:start + 4], start + 4
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[start:start + length]))
            if opcode == 8:
                code: int = struct.unpack("!H", payload[:2])[0]
                return code
            data = data[start + length:]
        return None


def frame(payload: bytes, opcode: int = 2, fin: bool = True, length: int | None = None) -> bytes:
    """An unmasked frame, as a server sends it; C{length} may claim more than is there."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([size])
    elif size < 1 << 16:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


def fragments(count: int, opcode: int = 1) -> bytes:
    return b"".join(frame(b"x", opcode if i == 0 else 0, fin=i == count - 1)
                    for i in range(count))


@pytest.fixture
def logged() -> Any:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def lines(events: list[LogEvent]) -> str:
    return "\n".join(formatEvent(e) for e in events)


def test_upstream_messages_at_the_route_limits_go_through() -> None:
    """A message of exactly max_message_size in frames of max_frame_size, and
    one of exactly max_fragments frames, reach the client."""
    upstream = Upstream()
    session = upstream.open()
    upstream.protocol.dataReceived(b"".join(
        frame(b"a" * 1024, 2 if i == 0 else 0, fin=i == 3) for i in range(4)))
    upstream.protocol.dataReceived(fragments(8))
    assert session.sent == [b"a" * 4096, "x" * 8]
    assert session.closed is None and upstream.close_sent() is None


@pytest.mark.parametrize(("data", "limit"), [
    # 300 MiB announced, 10 bytes sent: refused on the frame's header.
    (frame(b"0123456789", length=300 * 1024 * 1024), "max_message_size"),
    (b"".join(frame(b"a" * 1024, 2 if i == 0 else 0, fin=False) for i in range(4))
     + frame(b"a", 0), "max_message_size"),
    (frame(b"a" * 1025), "max_frame_size"),
    (fragments(9), "max_fragments"),
], ids=["300-MiB-header", "message-4097", "frame-1025", "fragments-9"])
def test_an_upstream_message_over_the_route_limits_closes_both_sides_with_1009(
        data: bytes, limit: str, logged: list[LogEvent]) -> None:
    """Over the route's message, frame or fragment limit (by one byte or one
    frame): nothing reaches the client, the client is closed with 1009 and a
    reason naming the limit, the upstream with 1009, and a line is logged."""
    upstream = Upstream()
    session = upstream.open()
    upstream.protocol.dataReceived(data)
    assert session.sent == []
    assert session.closed == (1009, f"upstream message over {limit}")
    assert upstream.close_sent() == 1009
    assert f"over the route's {limit}" in lines(logged)
    # The upstream's answer to the close changes nothing.
    upstream.protocol.dataReceived(frame(struct.pack("!H", 1009), opcode=8))
    upstream.lose()
    assert session.closed == (1009, f"upstream message over {limit}")


def test_a_message_over_the_limits_before_the_client_is_open() -> None:
    """An upstream that greets with a message over the limits while the
    client's handshake is still being answered: the client, once open, is
    closed with 1009."""
    upstream = Upstream()
    upstream.respond()
    upstream.protocol.dataReceived(frame(b"a" * 1025))
    session = RecordingSession(session_id="s1", route="/live")
    upstream.strategy.connection_opened(session)
    assert session.sent == [] and session.closed == (1009, "upstream message over "
                                                           "max_frame_size")


@pytest.mark.parametrize(("status", "accept", "expected"), [
    (b"101 Switching Protocols", b"d3JvbmcgYWNjZXB0IGtleSE=", 502),
    (b"200 OK", None, 502),
    (b"302 Found", None, 502),
    (b"403 Forbidden", None, 403),
    (b"503 Service Unavailable", None, 503),
], ids=["wrong-accept", "200", "302", "403", "503"])
def test_a_failed_upstream_handshake_is_a_502_unless_the_upstream_refused(
        status: bytes, accept: bytes | None, expected: int, logged: list[LogEvent]) -> None:
    """An upstream that answers with a wrong Sec-WebSocket-Accept, or any
    status that is not an HTTP error, makes the client's handshake fail with
    502; the upstream's own 4xx/5xx refusals are passed on."""
    upstream = Upstream()
    upstream.respond(status, accept)
    upstream.lose()
    (failure,) = upstream.outcome
    assert isinstance(failure, Failure) and failure.check(HandshakeRefused)
    assert failure.value.status == expected
    assert "upstream" in lines(logged)


def test_non_ascii_header_values_reach_the_upstream_as_the_client_sent_them(
        logged: list[LogEvent]) -> None:
    """Autobahn hands header values decoded as ISO-8859-1: passed on, they
    are the client's UTF-8 bytes again (not encoded twice); a value that is
    not UTF-8 cannot be passed on as it was, and is left out, logged by name."""
    sent = {"authorization": "Bearer café".encode().decode("latin-1"),
            "user-agent": "agent ☃".encode().decode("latin-1"),
            "cookie": "k=\xe9"}
    upstream = Upstream(sent, pass_headers=("authorization", "user-agent", "cookie"))
    assert b"Bearer caf\xc3\xa9\r\n" in upstream.request_bytes
    assert b"agent \xe2\x98\x83\r\n" in upstream.request_bytes
    assert b"\xc3\x83" not in upstream.request_bytes
    assert b"k=" not in upstream.request_bytes
    assert "cookie" in lines(logged) and "k=" not in lines(logged)


def test_recorded_conversations_are_named_by_session(tmp_path: Path) -> None:
    """A recorded conversation is named after its session: two proxies
    (two workers) recording to one file at the same moment never share a
    name, and each conversation's events stay its own."""
    path = tmp_path / "r.jsonl"
    for session_id in ("s1", "s2"):
        upstream = Upstream(record=path, session_id=session_id)
        upstream.open()
        upstream.protocol.dataReceived(frame(session_id.encode()))
    events = list(read_recording(path))
    assert [(e["event"], e["conversation"]) for e in events] == [
        ("open", "s1"), ("message", "s1"), ("open", "s2"), ("message", "s2")]
    assert [e["base64"] for e in events if e["event"] == "message"] == [
        base64.b64encode(b"s1").decode(), base64.b64encode(b"s2").decode()]


class Closes:
    """What a real L{Session} writes to, as far as closing goes."""

    def __init__(self) -> None:
        self.closed: tuple[int, str] | None = None

    def close_with(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def drop(self) -> None:
        self.closed = (1006, "")

    def sendMessage(self, payload: bytes, isBinary: bool) -> None:
        pass


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                  1013, 1014, 3000, 4999])
def test_an_upstream_close_reaches_the_client_with_its_code(code: int) -> None:
    """The upstream closes with any code a server may send (1012 service
    restart, 1013 try again later, 1014 bad gateway among them): the client
    is closed with the same code and reason, not 1011."""
    upstream = Upstream()
    upstream.respond()
    writer = Closes()
    session = Session("s1", "/live", "tcp4:127.0.0.1:5000", 0.0, writer)  # type: ignore[arg-type]
    upstream.strategy.connection_opened(session)
    upstream.protocol.dataReceived(frame(struct.pack("!H", code) + b"later", opcode=8))
    upstream.protocol.connectionLost(Failure(ConnectionDone()))  # the server ends TCP
    assert writer.closed == (code, "later")


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000,
                                  4999])
def test_a_client_close_reaches_the_upstream_with_its_code(code: int) -> None:
    """The client closes with any code (1001 going away, 1011 among them):
    the upstream is closed with the same code, not 1000."""
    upstream = Upstream()
    session = upstream.open()
    upstream.strategy.connection_closed(session, code, "bye")
    assert upstream.close_sent() == code


def test_a_client_close_without_a_code_reaches_the_upstream_without_one() -> None:
    """A client's close frame with no code (1005 on our side) is passed on
    as a close frame with no code; a dropped client drops the upstream."""
    upstream = Upstream()
    session = upstream.open()
    upstream.strategy.connection_closed(session, 1005, "")
    assert upstream.transport.value()[:2] == b"\x88\x80"  # close, masked, no payload
    dropped = Upstream()
    dropped.strategy.connection_closed(dropped.open(), 1006, "")
    assert dropped.transport.value() == b"" and dropped.transport.disconnecting


@pytest.mark.parametrize(("failure", "why"), [
    (ConnectionRefusedError(), "connection refused"),
    (TimeoutError(), "no connection within connect_timeout"),
    (DNSLookupError(), "host name not found"),
    (ConnectError(), "cannot connect"),
], ids=["refused", "timeout", "dns", "other"])
def test_an_unreachable_upstream_is_named_with_why(
        failure: Exception, why: str, logged: list[LogEvent]) -> None:
    """The client's 502 names the upstream (scheme, host, port; not its path
    or query, which may hold a token) and why, in a fixed phrase; the log
    also has the error itself."""
    reactor = MemoryReactorClock()
    settings = ProxySettings("ws://upstream.test:9000/feed?token=secret", ("user-agent",),
                             None, 1 << 20, 4.0)
    strategy = ProxyStrategy(settings, reactor)
    request = HandshakeRequest(session_id="s1", path="/live", query="", headers={},
                               subprotocols=(), peer="tcp4:127.0.0.1:5000", limits=LIMITS)
    outcome: list[Any] = []
    strategy.connecting(request).addBoth(outcome.append)
    _, _, factory, _, _ = reactor.tcpClients[-1]
    factory.clientConnectionFailed(None, Failure(failure))
    (refused,) = outcome
    assert isinstance(refused, Failure) and refused.check(HandshakeRefused)
    assert refused.value.status == 502
    assert refused.value.reason == f"upstream ws://upstream.test:9000 unreachable: {why}"
    assert f"unreachable: {why}" in lines(logged)
