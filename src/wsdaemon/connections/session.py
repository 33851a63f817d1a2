"""
A client's connection as strategies see it.
"""

from __future__ import annotations

from typing import Protocol

from autobahn.exception import Disconnected
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from wsdaemon.interfaces import IConnectionFaults, IFlowControl, IJournalNotes, ISession
from wsdaemon.records import SENDABLE_CLOSE_CODES, SENDABLE_CLOSE_CODES_TEXT, HandshakeRequest

__all__ = ["Session", "Writer"]

_log = Logger(namespace="wsdaemon.session")


class Writer(Protocol):
    """
    What a session needs of its connection (L{RouteProtocol}).
    """

    def sendMessage(self, payload: bytes, isBinary: bool) -> None: ...

    def close_with(self, code: int, reason: str) -> None: ...

    def drop(self) -> None: ...

    def pause_reading(self, seconds: float) -> None: ...

    def hold_writes(self, seconds: float) -> None: ...

    def send_fragmented(self, message: str | bytes, frames: int) -> bool: ...

    def ping(self, payload: bytes, timeout: float) -> Deferred[float | None]: ...

    def register_producer(self, producer: IPushProducer) -> None: ...

    def hold_reading(self, held: bool) -> None: ...

    def journal_note(self, text: str) -> None: ...

    def handshake_request(self) -> HandshakeRequest: ...


@implementer(ISession, IConnectionFaults, IFlowControl, IJournalNotes)
class Session:
    """
    The strategy-facing side of one L{RouteProtocol}.

    It holds no reference to the protocol after the connection closes, so a
    strategy keeping a session around keeps no transport alive.
    """

    __slots__ = ("session_id", "client_id", "route", "peer", "connected_at", "_protocol")

    def __init__(
        self,
        session_id: str,
        route: str,
        peer: str,
        connected_at: float,
        protocol: Writer,
        client_id: str | None = None,
    ) -> None:
        self.session_id = session_id
        self.client_id = client_id or session_id
        self.route = route
        self.peer = peer
        self.connected_at = connected_at
        self._protocol: Writer | None = protocol

    def __repr__(self) -> str:
        return f"<Session {self.session_id} {self.route} {self.peer}>"

    @property
    def is_open(self) -> bool:
        return self._protocol is not None

    def send(self, message: str | bytes) -> bool:
        protocol = self._protocol
        if protocol is None:
            return False
        try:
            if type(message) is str:
                protocol.sendMessage(message.encode("utf-8"), False)
            elif isinstance(message, bytes | bytearray | memoryview):
                protocol.sendMessage(bytes(message), True)
            else:
                raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
        except Disconnected:
            return False
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        protocol = self._protocol
        if protocol is None:
            return
        if code not in SENDABLE_CLOSE_CODES:
            raise ValueError(f"close code {code} may not be sent; use {SENDABLE_CLOSE_CODES_TEXT}")
        self._protocol = None
        protocol.close_with(code, reason)

    # -- faults on purpose (IConnectionFaults) -----------------------------

    def drop(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.drop()

    def pause_reading(self, seconds: float) -> None:
        if self._protocol is not None:
            self._protocol.pause_reading(seconds)

    def hold_writes(self, seconds: float) -> None:
        if self._protocol is not None:
            self._protocol.hold_writes(seconds)

    def send_fragmented(self, message: str | bytes, frames: int) -> bool:
        protocol = self._protocol
        if protocol is None:
            return False
        try:
            return protocol.send_fragmented(message, frames)
        except Disconnected:
            return False

    def ping(self, payload: bytes, timeout: float) -> Deferred[float | None]:
        if self._protocol is None:
            return succeed(None)
        return self._protocol.ping(payload, timeout)

    def note(self, text: str) -> None:
        if self._protocol is not None:
            self._protocol.journal_note(text)

    @property
    def handshake(self) -> HandshakeRequest | None:
        """
        The opening handshake the client connected with (path, query,
        headers, subprotocols offered), made when asked (a scripted route's
        rules ask); None once the connection is closed.
        """
        protocol = self._protocol
        return protocol.handshake_request() if protocol is not None else None

    # -- flow control (IFlowControl) ----------------------------------------

    def register_producer(self, producer: IPushProducer) -> None:
        if self._protocol is not None:
            self._protocol.register_producer(producer)

    def hold_reading(self, held: bool) -> None:
        if self._protocol is not None:
            self._protocol.hold_reading(held)

    def detach(self) -> None:
        """
        Called by the protocol once the connection is closed.
        """
        self._protocol = None
