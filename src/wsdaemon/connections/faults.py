"""
Faults on purpose: what a rules file or the admin API may do to one
connection so that a test sees how the client under test copes.

    drop           the TCP connection ends at once, no closing handshake
                   (the client sees 1006, "abnormal closure")
    pause_reading  the daemon stops reading the client for a while (its
                   messages wait in the kernel's buffers, then TCP's window
                   fills and its sends block or buffer)
    hold_writes    everything for the client (replies, pushes) waits, then
                   goes out in order (the client sees a silent server, then
                   a burst)
    fragmented     one message sent as up to N frames (continuation frames)
    ping           a ping with a payload; the answer is the round trip, or
                   None when no pong came in time (then the connection is
                   dropped, as servers with keep-alive timeouts do)

L{ConnectionFaults} is mixed into the route protocol; the session offers it
to strategies as L{wsdaemon.interfaces.IConnectionFaults}.
"""

from __future__ import annotations

import math
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

__all__ = ["ConnectionFaults"]

_log = Logger(namespace="wsdaemon.faults")

#: Pings awaiting their pong, per connection.
MAX_PENDING_PINGS = 16


class ConnectionFaults:
    """
    Mixed into L{wsdaemon.connections.protocol.RouteProtocol}: needs its
    C{transport}, C{factory} (with C{clock}), C{state}, C{session}, and its
    C{_paused}/C{_max_backlog} flow control.
    """

    transport: Any
    factory: Any
    state: Any
    session: Any
    STATE_OPEN: Any
    STATE_CLOSED: Any
    wasNotCleanReason: str | None
    _paused: bool
    _max_backlog: int
    _journal: Any
    # The protocol's and Autobahn's (annotations only: nothing shadowed).
    sendMessage: Any
    sendPing: Any
    sendFrame: Any
    _count_out: Any

    #: Reading is paused on purpose (flow control must not resume it).
    _held_reading = False
    #: Reading is held by the strategy (IFlowControl.hold_reading).
    _reading_held_by_strategy = False
    #: Messages held back: (payload, binary, frames) in order.
    _held_writes: list[tuple[bytes, bool, int]] | None = None
    _held_bytes = 0
    _fault_calls: set[IDelayedCall] | None = None
    _pings: dict[bytes, tuple[float, Deferred[float | None], IDelayedCall]] | None = None

    def _later(self, seconds: float, action: Any, *args: Any) -> None:
        calls = self._fault_calls
        if calls is None:
            calls = self._fault_calls = set()

        def fire() -> None:
            calls.discard(call)
            action(*args)

        call = self.factory.clock.callLater(seconds, fire)
        calls.add(call)

    def _stop_faults(self) -> None:
        """
        The connection closed: cancel every timer, fail waiting pings.
        """
        for call in self._fault_calls or ():
            if call.active():
                call.cancel()
        self._fault_calls = None
        pings, self._pings = self._pings, None
        for _, d, call in (pings or {}).values():
            if call.active():
                call.cancel()
            d.callback(None)
        self._held_writes = None

    # -- the faults ------------------------------------------------------------------

    def drop(self, why: str = "on purpose") -> None:
        """
        End the TCP connection without a closing handshake; the close is
        journalled and logged as the daemon's drop and C{why} (Autobahn
        would call it the peer's).
        """
        transport = self.transport
        if transport is not None:
            if not self.wasNotCleanReason:
                self.wasNotCleanReason = f"the daemon dropped the connection {why}"
            transport.abortConnection()

    def pause_reading(self, seconds: float) -> None:
        transport = self.transport
        if transport is None or self.state == self.STATE_CLOSED:
            return
        self._held_reading = True
        transport.pauseProducing()
        self._later(seconds, self._resume_reading)

    def _resume_reading(self) -> None:
        self._held_reading = False
        transport = self.transport
        if (transport is not None and not self._paused and self.state != self.STATE_CLOSED
                and not self._reading_held_by_strategy):
            transport.resumeProducing()

    def hold_writes(self, seconds: float) -> None:
        if self._held_writes is None:
            self._held_writes = []
            self._held_bytes = 0
        self._later(seconds, self._release_writes)

    def _hold(self, payload: bytes, binary: bool, frames: int = 1) -> None:
        """
        Keep a message back; past the route's C{max_outbound_buffer} the
        connection is dropped, as for a client that does not read.
        """
        assert self._held_writes is not None
        self._held_writes.append((payload, binary, frames))
        self._held_bytes += len(payload)
        if self._max_backlog and self._held_bytes > self._max_backlog:
            _log.warn("dropping {peer}: {count} bytes held back by hold_writes",
                      peer=str(getattr(self, "peer", "?")), count=self._held_bytes)
            self._held_writes = None
            self.drop("with more than max_outbound_buffer held back by hold_writes")

    def _release_writes(self) -> None:
        held, self._held_writes = self._held_writes, None
        for payload, binary, frames in held or ():
            if self.state != self.STATE_OPEN:
                return
            if frames > 1:
                self._send_frames(payload, binary, frames)
            else:
                self.sendMessage(payload, binary)

    def send_fragmented(self, message: str | bytes, frames: int) -> bool:
        if self.state != self.STATE_OPEN:
            return False
        binary = isinstance(message, bytes)
        payload = message if isinstance(message, bytes) else message.encode("utf-8")
        if self._held_writes is not None:
            self._hold(payload, binary, frames)
        else:
            self._send_frames(payload, binary, frames)
        return True

    def _send_frames(self, payload: bytes, binary: bool, frames: int) -> None:
        """
        One message as up to C{frames} non-empty frames of even size (never
        compressed: a fragmented message may be sent plain).
        """
        size = max(1, math.ceil(len(payload) / max(1, frames)))
        chunks = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
        last = len(chunks) - 1
        for index, chunk in enumerate(chunks):
            self.sendFrame(opcode=(2 if binary else 1) if index == 0 else 0, payload=chunk,
                           fin=index == last)
        self._count_out(payload, binary)

    def ping(self, payload: bytes, timeout: float) -> Deferred[float | None]:
        d: Deferred[float | None] = Deferred()
        if self.state != self.STATE_OPEN:
            d.callback(None)
            return d
        pings = self._pings
        if pings is None:
            pings = self._pings = {}
        if payload in pings or len(pings) >= MAX_PENDING_PINGS:
            raise ValueError(f"at most {MAX_PENDING_PINGS} pings may wait for their pongs, "
                             "each with a payload of its own")
        clock = self.factory.clock
        call = clock.callLater(timeout, self._no_pong, payload)
        pings[payload] = (clock.seconds(), d, call)
        self.sendPing(payload)
        journal, session = self._journal, self.session
        if journal is not None and session is not None:
            journal.message(session, "ping", payload, True)
        return d

    def journal_note(self, text: str) -> None:
        """
        A strategy's note on this connection, journalled as a C{step} entry.
        """
        journal, session = self._journal, self.session
        if journal is not None and session is not None:
            journal.message(session, "step", text, False)

    def _no_pong(self, payload: bytes) -> None:
        entry = (self._pings or {}).pop(payload, None)
        if entry is None:
            return
        _log.info("no pong from {peer} within its time: dropping the connection",
                  peer=str(getattr(self, "peer", "?")))
        entry[1].callback(None)
        self.drop("with no pong to its ping in time")

    def onPong(self, payload: bytes) -> None:
        journal, session = self._journal, self.session
        if journal is not None and session is not None:
            journal.message(session, "pong", payload, True)
        entry = (self._pings or {}).pop(payload, None)
        if entry is None:
            return
        started, d, call = entry
        if call.active():
            call.cancel()
        d.callback(self.factory.clock.seconds() - started)
