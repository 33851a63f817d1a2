"""
Direct writes on a real loopback TCP connection: small writes go straight
to the socket (nothing buffered, no writability registration), large ones
leave what the kernel did not take to Twisted, and the byte stream arrives
whole and in order either way. Other transports are written as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest_twisted
from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport

from wsdaemon.connections.directwrite import write_now

BIG = 8 * 1024 * 1024


class Writer(protocol.Protocol):
    def connectionMade(self) -> None:
        self.factory.connected.callback(self)  # type: ignore[attr-defined]


class Reader(protocol.Protocol):
    def __init__(self, expected: int, done: Deferred[bytes]) -> None:
        self.expected = expected
        self.done = done
        self.chunks: list[bytes] = []
        self.length = 0

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.length += len(data)
        if self.length >= self.expected and not self.done.called:
            self.done.callback(b"".join(self.chunks))


@pytest_twisted.inlineCallbacks
def test_small_writes_go_straight_out_and_large_ones_stay_in_order() -> Iterator[Any]:
    """Small: nothing buffered, no writer registered. Large: the rest buffered, order kept."""
    factory = protocol.Factory.forProtocol(Writer)
    factory.connected = Deferred()  # type: ignore[attr-defined]
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    pieces = [b"first;", bytes(range(256)) * (BIG // 256), b";last"]
    done: Deferred[bytes] = Deferred()
    client = protocol.ClientCreator(reactor, Reader, sum(map(len, pieces)), done)
    connection = yield client.connectTCP("127.0.0.1", port.getHost().port)
    try:
        writer = yield factory.connected  # type: ignore[attr-defined]
        transport = writer.transport
        write_now(transport, pieces[0])
        assert transport.dataBuffer == b"" and transport._tempDataLen == 0
        assert transport not in reactor.getWriters()
        write_now(transport, pieces[1])  # more than the kernel takes at once
        assert transport._tempDataLen > 0 and transport in reactor.getWriters()
        write_now(transport, pieces[2])  # queued behind, never ahead
        received = yield done
        assert received == b"".join(pieces)
    finally:
        connection.transport.loseConnection()
        yield port.stopListening()


def test_other_transports_are_written_as_usual() -> None:
    """A transport that is not plain TCP gets transport.write."""
    transport = StringTransport()
    write_now(transport, b"hello")
    assert transport.value() == b"hello"
