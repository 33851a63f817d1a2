"""
The upstream side of a proxied connection: an Autobahn client protocol held
to the route's limits on what it receives, and what it tells its link (the
client's side, L{wsdaemon.strategies.proxy.strategy}).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from autobahn.exception import Disconnected
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import error
from twisted.python.failure import Failure

from wsdaemon.records import HandshakeRequest, MessageLimits

__all__ = ["MESSAGE_TOO_BIG", "UpstreamFactory", "UpstreamLink", "UpstreamProtocol", "as_sent",
           "over_limits", "send", "unreachable_why"]

_STATUS = re.compile(r"^HTTP/1\.[01] (\d{3})")
#: Close code for a message over a limit (RFC 6455 section 7.4.1).
MESSAGE_TOO_BIG = 1009
#: Registered by IANA ("Bad Gateway"), missing from Autobahn's list of codes
#: a peer may send, which reads it as a protocol error.
BAD_GATEWAY = 1014
_NORMAL = 1000


class UpstreamLink(Protocol):
    """
    What an upstream connection reports to, about one client.
    """

    request: HandshakeRequest

    def upstream_accepted(self, subprotocol: str | None) -> None: ...

    def upstream_open(self, upstream: UpstreamProtocol) -> None: ...

    def upstream_unreachable(self, why: str, detail: str) -> None: ...

    def upstream_closed(self, code: int | None, reason: str, status: int | None) -> None: ...

    def upstream_too_big(self, limit: str) -> None: ...

    def from_upstream(self, message: str | bytes) -> None: ...

    def failed(self, where: str) -> None: ...


def as_sent(value: str) -> str | None:
    """
    A header value to pass on as the client sent it. Autobahn decodes the
    client's header bytes as ISO-8859-1 and its client encodes what it sends
    as UTF-8: passed on as it came, a value would be encoded twice (C{café}
    would arrive as C{cafÃ©}).

    @return: the text whose UTF-8 is the client's bytes, or None when those
        bytes are not UTF-8 (they cannot be sent as they were).
    """
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return value  # already text: not as Autobahn's parser gives it
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def over_limits(limits: MessageLimits, total: int, length: int, frames: int) -> str | None:
    """
    @return: the name of the route's limit that a message of C{total} bytes
        so far, whose latest frame has C{length} bytes and is its
        C{frames}th, is over; None if it is within them (0: no limit).
    """
    if 0 < limits.max_message_size < total:
        return "max_message_size"
    if 0 < limits.max_frame_size < length:
        return "max_frame_size"
    if 0 < limits.max_fragments < frames:
        return "max_fragments"
    return None


class UpstreamProtocol(WebSocketClientProtocol):
    """
    The upstream side of one proxied connection.
    """

    link: UpstreamLink
    _frames = 0

    def onConnect(self, response: Any) -> None:
        self.link.upstream_accepted(response.protocol)

    def onOpen(self) -> None:
        self.link.upstream_open(self)

    def onMessageBegin(self, isBinary: bool) -> None:
        self._frames = 0
        super().onMessageBegin(isBinary)

    def onMessageFrameBegin(self, length: int) -> None:
        # Checked as each frame's header arrives, before its payload: a
        # message over the route's limits is never held, whatever its frame
        # headers announce. Autobahn bounds bytes, not the count of frames.
        self._frames += 1
        limit = over_limits(self.link.request.limits, self.message_data_total_length + length,
                            length, self._frames)
        if limit is None:
            super().onMessageFrameBegin(length)
            return
        if not self.failedByMe:
            self._fail_connection(MESSAGE_TOO_BIG, f"message over {limit}")
            self.link.upstream_too_big(limit)

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:
        if code != BAD_GATEWAY:
            return super().onCloseFrame(code, reasonRaw)  # type: ignore[arg-type]
        # Read as a normal close (answered with 1000, as any close is), then
        # remembered as sent, so that the client is closed with 1014 too.
        stop = super().onCloseFrame(_NORMAL, reasonRaw)  # type: ignore[arg-type]
        if self.remoteCloseCode == _NORMAL:
            self.remoteCloseCode = BAD_GATEWAY
        return stop

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            self.link.from_upstream(payload if isBinary else payload.decode("utf-8"))
        except Exception:
            self.link.failed("relaying an upstream message")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        status = _STATUS.match(str(getattr(self, "http_status_line", "") or ""))
        try:
            self.link.upstream_closed(code, reason or "",
                                      int(status.group(1)) if status else None)
        except Exception:
            self.link.failed("relaying the upstream's close")


class UpstreamFactory(WebSocketClientFactory):
    """
    Connects one client's upstream, and tells its link if it cannot.
    """

    protocol = UpstreamProtocol

    def __init__(self, link: UpstreamLink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.link = link

    def buildProtocol(self, addr: Any) -> Any:
        protocol: Any = super().buildProtocol(addr)
        protocol.link = self.link
        return protocol

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.link.upstream_unreachable(unreachable_why(reason), reason.getErrorMessage())


def unreachable_why(reason: Failure) -> str:
    """
    @return: why a connection could not be made, in one of a few fixed
        phrases (it goes into an HTTP status line: never an exception's
        text).
    """
    if reason.check(error.ConnectionRefusedError):
        return "connection refused"
    if reason.check(error.TimeoutError):
        return "no connection within connect_timeout"
    if reason.check(error.DNSLookupError):
        return "host name not found"
    if reason.check(error.NoRouteError):
        return "no route to host"
    return "cannot connect"


def send(upstream: UpstreamProtocol, message: str | bytes) -> None:
    """
    Relay a client's message to the upstream, unless it is closing.
    """
    try:
        if isinstance(message, bytes):
            upstream.sendMessage(message, True)
        else:
            upstream.sendMessage(message.encode("utf-8"), False)
    except Disconnected:
        pass  # the upstream is closing: its close reaches the client
