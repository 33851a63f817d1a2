"""
Limits that protect the daemon from its clients: connections in total and
per IP address, messages per second per connection, and HTTP requests that
never finish their headers.
"""

from __future__ import annotations

from typing import Any

from twisted.web.http import HTTPChannel

__all__ = ["ConnectionLimits", "HandshakeDeadlineChannel", "MessageRate"]


class ConnectionLimits:
    """
    Counts open WebSocket connections across every route.

    @param total: most connections in all (0: no limit).
    @param per_ip: most connections from one address (0: no limit).
    """

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self.open = 0
        self._by_ip: dict[str, int] = {}

    def admit(self, ip: str) -> str | None:
        """
        Count a new connection from C{ip}, unless a limit says no.

        @return: None if admitted, else the limit's name.
        """
        if self.total and self.open >= self.total:
            return "max_connections_total"
        count = self._by_ip.get(ip, 0)
        if self.per_ip and count >= self.per_ip:
            return "max_connections_per_ip"
        self.open += 1
        self._by_ip[ip] = count + 1
        return None

    def release(self, ip: str) -> None:
        self.open -= 1
        count = self._by_ip.get(ip, 0) - 1
        if count > 0:
            self._by_ip[ip] = count
        else:
            self._by_ip.pop(ip, None)


class MessageRate:
    """
    A token bucket: C{rate} messages per second on average, bursts of up
    to C{rate} (at least 1) messages.
    """

    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.burst = max(rate, 1.0)
        self.tokens = self.burst
        self.last = now

    def allow(self, now: float) -> bool:
        tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


class HandshakeDeadlineChannel(HTTPChannel):
    """
    An HTTP channel that must receive a request's headers within
    C{deadline} seconds of connecting (or of its previous request), however
    slowly the bytes trickle in: Twisted's own timeout is an idle timeout,
    which one byte a second never trips. After a WebSocket upgrade the
    connection is no longer the channel's and the deadline does not apply.
    """

    deadline = 5.0
    _deadline_call: Any = None

    def _arm(self) -> None:
        self._disarm()
        deadline = getattr(getattr(self, "site", None), "handshake_timeout", self.deadline)
        self._deadline_call = self.callLater(deadline, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline_call is not None and self._deadline_call.active():
            self._deadline_call.cancel()
        self._deadline_call = None

    def _too_slow(self) -> None:
        self._deadline_call = None
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm()

    def allHeadersReceived(self) -> None:
        self._disarm()
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.transport is not None:
            self._arm()

    def connectionLost(self, reason: Any = None) -> None:
        self._disarm()
        super().connectionLost(reason)
