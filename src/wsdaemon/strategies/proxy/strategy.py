"""
The proxy strategy: each client connection is relayed to an upstream
WebSocket server (ws:// or wss://), both ways, and may be recorded.

The upstream connection is opened during the client's own handshake, with
the client's subprotocols and chosen headers passed on: the client is
accepted with the subprotocol the upstream chose, or refused with the
upstream's refusal (its HTTP error status; 502 when it cannot be reached or
its answer is not a WebSocket handshake). Then messages go through as they
are (text as text, binary as binary), and a close on either side closes the
other with the same code.

The upstream is held to the route's own limits on what it sends (message
and frame size, fragments): a message over them is refused as its frame
header arrives, and both sides are closed with 1009.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import connectWS
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wsdaemon.escaping import visible
from wsdaemon.interfaces import (
    IHandshakeHook,
    IOptionCheck,
    IReplyStrategy,
    ISession,
    IStrategyFactory,
)
from wsdaemon.records import (
    REFUSAL_STATUSES,
    SENDABLE_CLOSE_CODES,
    HandshakeAnswer,
    HandshakeRefused,
    HandshakeRequest,
)
from wsdaemon.strategies.api import OptionContext, StrategyContext
from wsdaemon.strategies.proxy.intercept import MAX_HELD, Interceptor
from wsdaemon.strategies.proxy.options import ProxySettings, check_options, trust_root
from wsdaemon.strategies.proxy.recording import Conversation, Recorder
from wsdaemon.strategies.proxy.upstream import (
    MESSAGE_TOO_BIG,
    UpstreamFactory,
    UpstreamProtocol,
    as_sent,
    send,
)

__all__ = ["ProxySettings", "ProxyStrategy", "ProxyStrategyFactory"]

_log = Logger(namespace="wsdaemon.proxy")

#: Messages a client may send before the upstream has answered the first.
MAX_PENDING = 1000
#: Close code for our own failure (RFC 6455 section 7.4.1).
INTERNAL_ERROR = 1011


def _reason(reason: str) -> bytes | None:
    """
    @return: a close reason as UTF-8, cut to RFC 6455's 123 bytes on a
        character's boundary; None for no reason.
    """
    if not reason:
        return None
    return reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")


def _address(upstream: str) -> str:
    """
    @return: the upstream URL's scheme, host and port, in printable ASCII.
    """
    parts = urlsplit(upstream)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    text = f"{parts.scheme}://{host}:{port}"
    return "".join(c if " " < c < "\x7f" else "?" for c in text)


class _Link:
    """
    One client connection and its upstream: from the client's handshake to
    the close of both.
    """

    def __init__(self, strategy: ProxyStrategy, request: HandshakeRequest) -> None:
        self.strategy = strategy
        self.request = request
        self.session: ISession | None = None
        self.upstream: UpstreamProtocol | None = None
        self.pending: deque[str | bytes] = deque()
        self.accepted: Deferred[HandshakeAnswer] = Deferred(self._cancel)
        self.subprotocol: str | None = None
        self.conversation: Conversation | None = None
        self.closing = False
        #: The route's interception of this connection's messages, once open.
        self.interceptor: Interceptor | None = None
        #: How the client is to be closed once open (the upstream failed first).
        self.refusal: tuple[int, str] | None = None

    # -- the handshake ---------------------------------------------------------------

    def connect(self) -> None:
        settings = self.strategy.settings
        parts = urlsplit(settings.upstream)
        headers = self._headers()
        factory = UpstreamFactory(
            self, settings.upstream, origin=headers.pop("origin", None),
            protocols=list(self.request.subprotocols) or None,
            useragent=headers.pop("user-agent", "wsdaemon-proxy"), headers=headers)
        factory.reactor = self.strategy.reactor
        limits = self.request.limits
        factory.setProtocolOptions(openHandshakeTimeout=settings.connect_timeout,
                                   maxMessagePayloadSize=limits.max_message_size,
                                   maxFramePayloadSize=limits.max_frame_size,
                                   # An upstream's violation gets its close code
                                   # (1009, 1007...), not a dropped connection.
                                   failByDrop=False, autoPingInterval=0)
        context = None
        if parts.scheme == "wss":
            from twisted.internet.ssl import optionsForClientTLS

            trust = (trust_root(settings.ca_pem) if settings.ca_pem is not None else None)
            context = optionsForClientTLS(parts.hostname or "", trustRoot=trust)
        self.connector = connectWS(factory, context, timeout=settings.connect_timeout)

    def _headers(self) -> dict[str, str]:
        """
        @return: the client's headers to pass on, as the client sent them; a
            value that cannot be is left out (logged, by name only).
        """
        passed = {}
        for name, value in self.request.headers.items():
            if name not in self.strategy.settings.pass_headers:
                continue
            sent = as_sent(value)
            if sent is None:
                _log.warn("proxy {path}: header {header} of session {session_id} is not UTF-8 "
                          "and cannot be passed on as sent: left out", path=self.request.path,
                          header=name, session_id=self.request.session_id)
            else:
                passed[name] = sent
        return passed

    def _cancel(self, _: Deferred[HandshakeAnswer]) -> None:
        """
        The client went away during its handshake: so does the upstream.
        """
        self.closing = True
        if self.upstream is not None:
            self.upstream.dropConnection(abort=True)
        else:
            connector = getattr(self, "connector", None)
            if connector is not None:
                connector.disconnect()

    def upstream_accepted(self, subprotocol: str | None) -> None:
        self.subprotocol = subprotocol or None

    def upstream_open(self, upstream: UpstreamProtocol) -> None:
        self.upstream = upstream
        if not self.accepted.called:
            self.accepted.callback(HandshakeAnswer(subprotocol=self.subprotocol))

    def upstream_unreachable(self, why: str, detail: str) -> None:
        """
        The upstream could not be connected to: the client is refused with
        502 and a reason naming the upstream (scheme, host and port: a
        path or query may hold a token) and why.
        """
        where = _address(self.strategy.settings.upstream)
        _log.warn("proxy {path}: upstream {upstream} unreachable: {why} ({detail})",
                  path=self.request.path, upstream=self.strategy.settings.upstream, why=why,
                  detail=visible(detail))
        if not self.accepted.called:
            self.accepted.errback(HandshakeRefused(502, f"upstream {where} unreachable: {why}"))

    def _handshake_failed(self, why: str, status: int | None) -> None:
        """
        The upstream connection ended before it opened: an HTTP error status
        is passed on to the client; anything else (a wrong
        C{Sec-WebSocket-Accept}, a 200 or a redirect, no answer in time) is
        a bad gateway, 502.
        """
        settings = self.strategy.settings
        if status is not None and status in REFUSAL_STATUSES:
            _log.info("proxy {path}: upstream {upstream} refused the handshake with {status}",
                      path=self.request.path, upstream=settings.upstream, status=status)
            self.accepted.errback(HandshakeRefused(status, "upstream refused the connection"))
            return
        _log.warn("proxy {path}: upstream {upstream} failed the handshake (status {status}: "
                  "{why}); answering 502", path=self.request.path, upstream=settings.upstream,
                  status=status, why=visible(why))
        self.accepted.errback(HandshakeRefused(502, "upstream handshake failed"))

    # -- the conversation ------------------------------------------------------------

    def opened(self, session: ISession) -> None:
        self.session = session
        rules = self.strategy.settings.intercepts
        if rules is not None:
            self.interceptor = Interceptor(
                rules, self.strategy.reactor, session.session_id, self.request.path,
                {"client": session.send, "server": self._to_upstream}, self._held_too_many)
        recorder = self.strategy.recorder
        if recorder is not None:
            self.conversation = recorder.conversation(
                self.request.path, self.subprotocol, self.strategy.settings.upstream,
                session.session_id)
        if self.refusal is not None:
            if self.conversation is not None:
                self.conversation.closed("proxy", *self.refusal)
            session.close(*self.refusal)

    def from_client(self, message: str | bytes) -> None:
        if self.closing:
            return  # on its way out: the upstream has closed, or failed
        if self.conversation is not None:
            self.conversation.message("client", message)
        if self.interceptor is not None:
            self.interceptor.handle("client", message)
        else:
            self._to_upstream(message)

    def _to_upstream(self, message: str | bytes) -> None:
        if self.closing:
            return
        upstream = self.upstream
        if upstream is None:
            if len(self.pending) >= MAX_PENDING:
                raise OverflowError("too many messages before the upstream answered")
            self.pending.append(message)
            return
        send(upstream, message)

    def from_upstream(self, message: str | bytes) -> None:
        if self.conversation is not None:
            self.conversation.message("server", message)
        if self.interceptor is not None:
            self.interceptor.handle("server", message)
        elif self.session is not None:
            self.session.send(message)

    def _held_too_many(self, side: str) -> None:
        """
        More messages of one side wait behind an intercept's delay than
        any connection may hold: both sides are closed.
        """
        _log.warn("proxy {path}: session {session_id} holds more than {limit} messages from "
                  "the {side} behind intercept delays; closing it (1013) and its upstream",
                  path=self.request.path, session_id=self.request.session_id,
                  limit=MAX_HELD, side=side)
        upstream = self.upstream
        if upstream is not None and upstream.state == upstream.STATE_OPEN:
            upstream.sendCloseFrame(code=1001, isReply=False)
        self._close_client(1013, "intercept delays hold too many messages")

    def client_closed(self, code: int | None, reason: str) -> None:
        if self.interceptor is not None:
            self.interceptor.stop()
        if self.closing:
            return
        self.closing = True
        if self.conversation is not None:
            self.conversation.closed("client", code, reason)
        upstream = self.upstream
        if upstream is not None:
            if code is None or code not in SENDABLE_CLOSE_CODES:
                # The client dropped, or closed with no code (1005): the
                # upstream is told the same way.
                if code == 1005:
                    upstream.sendCloseFrame(isReply=False)
                else:
                    upstream.dropConnection(abort=False)
            else:
                # Not sendClose: Autobahn's public close takes only 1000 and
                # 3000-4999, and would turn 1001 or 1011 into something else.
                upstream.sendCloseFrame(code=code, reasonUtf8=_reason(reason), isReply=False)

    def upstream_too_big(self, limit: str) -> None:
        """
        The upstream began a message over the route's C{limit}; it is being
        closed with 1009: so is the client.
        """
        _log.warn("proxy {path}: upstream {upstream} sent a message over the route's {limit} "
                  "({value}); closing session {session_id} and the upstream with 1009",
                  path=self.request.path, upstream=self.strategy.settings.upstream,
                  limit=limit, value=getattr(self.request.limits, limit),
                  session_id=self.request.session_id)
        self._close_client(MESSAGE_TOO_BIG, f"upstream message over {limit}")

    def failed(self, where: str) -> None:
        """
        Relaying failed in our own code: close both sides with 1011.
        """
        _log.failure("proxy {path}: failed {where} for session {session_id}",
                     path=self.request.path, where=where, session_id=self.request.session_id)
        upstream = self.upstream
        if upstream is not None and upstream.state == upstream.STATE_OPEN:
            upstream.sendCloseFrame(code=INTERNAL_ERROR, isReply=False)
        self._close_client(INTERNAL_ERROR, "internal error")

    def _close_client(self, code: int, reason: str) -> None:
        if self.interceptor is not None:
            self.interceptor.stop()
        if self.closing:
            return
        self.closing = True
        session = self.session
        if session is None:
            self.refusal = (code, reason)  # closed as soon as it opens
            return
        if self.conversation is not None:
            self.conversation.closed("proxy", code, reason)
        session.close(code, reason)

    def upstream_closed(self, code: int | None, reason: str, status: int | None) -> None:
        if not self.accepted.called:
            self._handshake_failed(reason, status)
            return
        if self.interceptor is not None:
            self.interceptor.stop()
        if self.closing:
            return
        self.closing = True
        if self.conversation is not None:
            self.conversation.closed("server", code, reason)
        session = self.session
        if session is not None:
            if code is None or code in (1005, 1006, 1015):
                faults: Any = session
                if hasattr(faults, "drop"):
                    faults.drop()
                else:
                    session.close(1011, "upstream went away")
            elif code in SENDABLE_CLOSE_CODES:
                session.close(code, reason)
            else:  # 1004 or a code outside the registry: not ours to send on
                session.close(INTERNAL_ERROR, f"upstream closed with {code}")


@implementer(IReplyStrategy, IHandshakeHook)
class ProxyStrategy:
    """
    Relays each connection to the upstream.
    """

    def __init__(self, settings: ProxySettings, reactor: Any) -> None:
        self.settings = settings
        self.reactor = reactor
        self.recorder = (Recorder(settings.record, settings.record_max_bytes, reactor.seconds)
                         if settings.record is not None else None)
        self._links: dict[str, _Link] = {}

    def connecting(self, request: HandshakeRequest) -> Deferred[HandshakeAnswer]:
        link = _Link(self, request)
        self._links[request.session_id] = link

        def forget(failure: Failure) -> Failure:
            self._links.pop(request.session_id, None)
            return failure

        link.accepted.addErrback(forget)
        link.connect()
        return link.accepted

    def abandoned(self, session_id: str) -> None:
        link = self._links.pop(session_id, None)
        if link is not None:
            link.client_closed(1006, "")

    def connection_opened(self, session: ISession) -> None:
        link = self._links.get(session.session_id)
        if link is None:
            session.close(1011, "no upstream")
            return
        link.opened(session)
        while link.pending and link.upstream is not None:
            send(link.upstream, link.pending.popleft())

    def message_received(self, session: ISession, message: str | bytes) -> None:
        link = self._links.get(session.session_id)
        if link is not None:
            link.from_client(message)

    def connection_closed(self, session: ISession, code: int | None, reason: str) -> None:
        link = self._links.pop(session.session_id, None)
        if link is not None:
            link.client_closed(code, reason)


@implementer(IStrategyFactory, IOptionCheck)
class ProxyStrategyFactory:
    name = "proxy"
    description = "relays each connection to an upstream server, and can record it"

    def check(self, options: Mapping[str, str], context: OptionContext) -> ProxySettings:
        return check_options(options, context.config_dir)

    def create(self, options: Mapping[str, str], context: StrategyContext) -> ProxyStrategy:
        settings = context.checked
        if not isinstance(settings, ProxySettings):
            settings = check_options(options, context.config_dir)
        clock: IReactorTime = context.clock
        return ProxyStrategy(settings, clock)
