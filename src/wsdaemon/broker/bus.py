"""
The push bus's port, beside its two implementations: in process
(L{wsdaemon.broker.local}) and through Redis (L{wsdaemon.broker.push}).
Internal: not for strategy authors.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import Interface

from wsdaemon.records import PushTarget

__all__ = ["IPushBus"]


class IPushBus(Interface):
    """
    The one seam every push goes through (the push API, and anything else
    that sends to clients it did not hear from). In-process by default; a
    broker-backed bus fans out across daemons without the API changing.
    """

    def publish(target: PushTarget, message: str | bytes) -> Deferred[int]:
        """
        Send C{message} (str: text, bytes: binary) to every connection the
        L{wsdaemon.connections.index.PushTarget} names.

        @return: a Deferred firing with how many connections it was written
            to (on this daemon).
        """

    def publish_counted(target: PushTarget,
                        message: str | bytes) -> Deferred[tuple[int, int]]:
        """
        Like C{publish}.

        @return: a Deferred firing with (connections written to, open
            connections that could not take it) on this daemon.
        """
