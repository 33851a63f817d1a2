"""
Flow control for one client connection: registered as its transport's push
producer, it learns when the client stops reading (our writes pile up in
the transport) and when it catches up. The protocol then stops reading that
client, and drops it once C{max_outbound_buffer} more bytes wait for it; a
producer a strategy registered (L{wsdaemon.interfaces.IFlowControl}) is
paused and resumed with it.
Routes and the operator channel use it alike: the protocol needs
C{_paused}, C{_backlog}, C{transport} and C{state}.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

__all__ = ["Backpressure", "Pausable"]


class Pausable(Protocol):
    """
    What flow control needs of a connection (a route's or the operator
    channel's protocol).
    """

    _paused: bool
    _backlog: int
    #: Reading paused on purpose (a fault): flow control leaves it paused.
    _held_reading: bool
    transport: Any
    state: Any
    STATE_CLOSED: Any


@implementer(IPushProducer)
class Backpressure:
    """
    Registered on a connection's transport: told when the client stops
    reading (our writes pile up) and when it drains them.
    """

    def __init__(self, protocol: Pausable) -> None:
        self.protocol = protocol

    def pauseProducing(self) -> None:
        protocol = self.protocol
        if protocol._paused:
            return  # called again on each write while the buffer stays full
        protocol._paused = True
        protocol._backlog = 0
        transport: Any = protocol.transport
        if transport is not None:
            transport.pauseProducing()  # stop reading: no more work from it
        # A strategy's source (a process's output), on routes only.
        source = getattr(protocol, "_producer", None)
        if source is not None:
            source.pauseProducing()

    def resumeProducing(self) -> None:
        protocol = self.protocol
        protocol._paused = False
        protocol._backlog = 0
        transport: Any = protocol.transport
        if (transport is not None and protocol.state != protocol.STATE_CLOSED
                and not protocol._held_reading
                and not getattr(protocol, "_reading_held_by_strategy", False)):
            transport.resumeProducing()
        source = getattr(protocol, "_producer", None)
        if source is not None:
            source.resumeProducing()

    def stopProducing(self) -> None:
        self.protocol._paused = False
