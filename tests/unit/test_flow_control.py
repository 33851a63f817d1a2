"""
IFlowControl on the daemon's sessions: a strategy's producer is paused when
the client falls behind and resumed when it catches up (a route on
StringTransport, the client's transport driving it as Twisted would).
"""

from __future__ import annotations

from zope.interface.verify import verifyObject

from tests.unit.test_protocol import backlogged_client
from wsdaemon.interfaces import IFlowControl


class Producer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


def test_a_registered_producer_is_paused_and_resumed_with_the_client() -> None:
    """Paused once when the client falls behind (however many writes find
    the buffer full), resumed when it catches up, and a backlog that stops
    growing is not dropped."""
    client, session = backlogged_client()
    assert IFlowControl.providedBy(session) and verifyObject(IFlowControl, session)
    producer = Producer()
    session.register_producer(producer)  # type: ignore[attr-defined]
    transport_producer = client.transport.producer
    transport_producer.pauseProducing()
    transport_producer.pauseProducing()
    session.send(b"x" * 900)
    transport_producer.resumeProducing()
    assert producer.calls == ["pause", "resume"]
    assert not client.transport.disconnecting


def test_registered_while_behind_it_is_paused_at_once_and_forgotten_at_close() -> None:
    """A producer registered while the client is behind is paused straight
    away; once the connection has closed, none is kept or registered."""
    client, session = backlogged_client()
    client.transport.producer.pauseProducing()
    producer = Producer()
    session.register_producer(producer)  # type: ignore[attr-defined]
    assert producer.calls == ["pause"]
    client.disconnect()
    assert client.protocol._producer is None  # noqa: SLF001 - what the close forgot
    late = Producer()
    session.register_producer(late)  # type: ignore[attr-defined]
    assert late.calls == [] and client.protocol._producer is None  # noqa: SLF001


def test_a_strategy_holds_reading_across_the_clients_own_backpressure() -> None:
    """hold_reading(True) stops reading the client; the client catching up
    (backpressure resuming) does not start it again; hold_reading(False)
    does."""
    client, session = backlogged_client()
    transport = client.transport
    session.hold_reading(True)  # type: ignore[attr-defined]
    assert transport.producerState == "paused"
    transport.producer.pauseProducing()
    transport.producer.resumeProducing()
    assert transport.producerState == "paused"
    session.hold_reading(False)  # type: ignore[attr-defined]
    assert transport.producerState == "producing"
