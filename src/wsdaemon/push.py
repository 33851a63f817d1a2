"""
Pushing to clients: the in-process bus.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from wsdaemon.interfaces import IPushBus
from wsdaemon.sessions import PushTarget, SessionIndex

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
        protocols = list(self._index.select(target))
        if not protocols:
            return succeed(0)
        is_binary = isinstance(message, bytes)
        payload = message if isinstance(message, bytes) else message.encode("utf-8")
        prepared = protocols[0].factory.prepareMessage(payload, is_binary)
        length = len(payload)
        return succeed(sum(1 for p in protocols if p.send_prepared(prepared, length)))
