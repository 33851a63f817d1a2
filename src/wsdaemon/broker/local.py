"""
Pushing to clients: the in-process bus.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from wsdaemon.broker.bus import IPushBus
from wsdaemon.connections.index import PushTarget, SessionIndex

__all__ = ["LocalPushBus"]


@implementer(IPushBus)
class LocalPushBus:
    """
    Delivers to this daemon's own connections. The frame is built once and
    written to every target (Autobahn's prepared messages); connections that
    negotiated compression compress it themselves.
    """

    def __init__(self, index: SessionIndex) -> None:
        self._index = index

    def publish(self, target: PushTarget, message: str | bytes) -> Deferred[int]:
        return succeed(self.deliver(target, message)[0])

    def publish_counted(self, target: PushTarget,
                        message: str | bytes) -> Deferred[tuple[int, int]]:
        return succeed(self.deliver(target, message))

    def deliver(self, target: PushTarget, message: str | bytes) -> tuple[int, int]:
        """
        Write to this daemon's connections now.

        @return: (connections written to, open connections that could not
            take it: over their route's C{max_message_size}, which are left
            open without it, or too big once compressed, which are closed
            with 1009 and logged).
        """
        protocols = list(self._index.select(target))
        if not protocols:
            return 0, 0
        # Framed once per distinct frame: the message itself for most
        # connections, its framing for those of a protocol of their own.
        prepared: dict[str | bytes, tuple[Any, bytes, bool]] = {}
        delivered = failed = 0
        for protocol in protocols:
            frame = protocol.push_frame(message)
            built = prepared.get(frame)
            if built is None:
                is_binary = isinstance(frame, bytes)
                payload = frame if isinstance(frame, bytes) else frame.encode("utf-8")
                built = prepared[frame] = (
                    protocol.factory.prepareMessage(payload, is_binary), payload, is_binary)
            frame_prepared, payload, is_binary = built
            was_open = protocol.state == protocol.STATE_OPEN
            if protocol.send_prepared(frame_prepared, len(payload), payload, is_binary):
                delivered += 1
            elif was_open:
                failed += 1
        return delivered, failed
