"""
Pushing to clients: the in-process bus.
"""

from __future__ import annotations

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
        is_binary = isinstance(message, bytes)
        payload = message if isinstance(message, bytes) else message.encode("utf-8")
        prepared = protocols[0].factory.prepareMessage(payload, is_binary)
        length = len(payload)
        delivered = failed = 0
        for protocol in protocols:
            was_open = protocol.state == protocol.STATE_OPEN
            if protocol.send_prepared(prepared, length, payload, is_binary):
                delivered += 1
            elif was_open:
                failed += 1
        return delivered, failed
