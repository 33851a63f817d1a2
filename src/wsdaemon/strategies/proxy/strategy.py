"""
The proxy strategy: each client connection is relayed to an upstream
WebSocket server (ws:// or wss://), both ways, and may be recorded.

The upstream connection is opened during the client's own handshake, with
the client's subprotocols and chosen headers passed on: the client is
accepted with the subprotocol the upstream chose, or refused with the
upstream's refusal (its HTTP status; 502 when it cannot be reached). Then
messages go through as they are (text as text, binary as binary), and a
close on either side closes the other with the same code.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    connectWS,
)
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wsdaemon.interfaces import (
    IHandshakeHook,
    IOptionCheck,
    IReplyStrategy,
    ISession,
    IStrategyFactory,
)
from wsdaemon.records import HandshakeAnswer, HandshakeRefused, HandshakeRequest
from wsdaemon.strategies.api import (
    OptionContext,
    OptionError,
    StrategyContext,
    reject_unknown_options,
)
from wsdaemon.strategies.proxy.recording import Conversation, Recorder

__all__ = ["ProxySettings", "ProxyStrategy", "ProxyStrategyFactory"]

_log = Logger(namespace="wsdaemon.proxy")

#: Client headers passed on to the upstream unless C{pass_headers} says otherwise.
DEFAULT_PASS = ("authorization", "cookie", "origin", "user-agent")
#: Headers that belong to one hop or to the WebSocket handshake itself.
_NEVER_PASS = {"host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
               "sec-websocket-extensions", "sec-websocket-protocol", "content-length",
               "transfer-encoding", "te", "trailer", "keep-alive", "proxy-authorization"}
_STATUS = re.compile(r"^HTTP/1\.[01] (\d{3})")
#: Messages a client may send before the upstream has answered the first.
MAX_PENDING = 1000
MiB = 1024 * 1024


class ProxySettings:
    """
    A proxy route's checked options.
    """

    def __init__(self, upstream: str, pass_headers: tuple[str, ...], record: Path | None,
                 record_max_bytes: int, connect_timeout: float,
                 ca_pem: bytes | None = None) -> None:
        self.upstream = upstream
        #: PEM certificates trusted for the upstream (None: the system's).
        self.ca_pem = ca_pem
        self.pass_headers = pass_headers
        self.record = record
        self.record_max_bytes = record_max_bytes
        self.connect_timeout = connect_timeout


def _check(options: Mapping[str, str], config_dir: Path) -> ProxySettings:
    reject_unknown_options(options, {"upstream", "pass_headers", "record", "record_max_bytes",
                                     "connect_timeout", "upstream_ca"})
    upstream = options.get("upstream", "").strip()
    parts = urlsplit(upstream)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise OptionError("upstream", "expected the upstream server's URL, ws://host[:port]/"
                                      f"path or wss://..., got {upstream!r}")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise OptionError("upstream", f"bad port in {upstream!r}") from None
    names = options.get("pass_headers")
    pass_headers = DEFAULT_PASS if names is None else tuple(
        n.lower() for n in names.replace(",", " ").split())
    blocked = [n for n in pass_headers if n in _NEVER_PASS]
    if blocked:
        raise OptionError("pass_headers", f"{blocked[0]} belongs to the handshake itself and "
                                          "cannot be passed on")
    record = None
    if options.get("record", "").strip():
        record = Path(config_dir, options["record"].strip())
    max_bytes = 100 * MiB
    if "record_max_bytes" in options:
        try:
            max_bytes = int(options["record_max_bytes"])
        except ValueError:
            raise OptionError("record_max_bytes", "expected a number of bytes") from None
    timeout = 4.0
    if "connect_timeout" in options:
        try:
            timeout = float(options["connect_timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 60:
            raise OptionError("connect_timeout", "expected seconds, more than 0 and at most 60")
    ca_pem = None
    if options.get("upstream_ca", "").strip():
        ca_path = Path(config_dir, options["upstream_ca"].strip())
        try:
            ca_pem = ca_path.read_bytes()
        except OSError as e:
            raise OptionError("upstream_ca", f"cannot read {ca_path}: {e.strerror}") from None
        try:
            _trust_root(ca_pem)
        except Exception:
            raise OptionError("upstream_ca", f"{ca_path}: expected PEM certificates "
                                             "(-----BEGIN CERTIFICATE-----)") from None
    return ProxySettings(upstream, pass_headers, record, max_bytes, timeout, ca_pem)


def _trust_root(pem: bytes) -> Any:
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in pem.split(marker) if b"-----BEGIN" in block]
    if not blocks:
        raise ValueError("no certificate")
    return trustRootFromCertificates([Certificate.loadPEM(block) for block in blocks])


class _Upstream(WebSocketClientProtocol):
    """
    The upstream side of one proxied connection.
    """

    link: _Link

    def onConnect(self, response: Any) -> None:
        self.link.upstream_accepted(response.protocol)

    def onOpen(self) -> None:
        self.link.upstream_open(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.link.from_upstream(payload if isBinary else payload.decode("utf-8"))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        status = _STATUS.match(str(getattr(self, "http_status_line", "") or ""))
        self.link.upstream_closed(code, reason or "", int(status.group(1)) if status else None)


class _UpstreamFactory(WebSocketClientFactory):
    protocol = _Upstream

    def __init__(self, link: _Link, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.link = link

    def buildProtocol(self, addr: Any) -> Any:
        protocol: Any = super().buildProtocol(addr)
        protocol.link = self.link
        return protocol

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.link.upstream_unreachable(reason.getErrorMessage())


class _Link:
    """
    One client connection and its upstream: from the client's handshake to
    the close of both.
    """

    def __init__(self, strategy: ProxyStrategy, request: HandshakeRequest) -> None:
        self.strategy = strategy
        self.request = request
        self.session: ISession | None = None
        self.upstream: _Upstream | None = None
        self.pending: deque[str | bytes] = deque()
        self.accepted: Deferred[HandshakeAnswer] = Deferred(self._cancel)
        self.subprotocol: str | None = None
        self.conversation: Conversation | None = None
        self.closing = False

    # -- the handshake ---------------------------------------------------------------

    def connect(self) -> None:
        settings = self.strategy.settings
        parts = urlsplit(settings.upstream)
        headers = {name: value for name, value in self.request.headers.items()
                   if name in settings.pass_headers and name not in ("origin", "user-agent")}
        factory = _UpstreamFactory(
            self, settings.upstream, origin=self.request.headers.get("origin")
            if "origin" in settings.pass_headers else None,
            protocols=list(self.request.subprotocols) or None, headers=headers,
            useragent=self.request.headers.get("user-agent", "wsdaemon-proxy")
            if "user-agent" in settings.pass_headers else "wsdaemon-proxy")
        factory.reactor = self.strategy.reactor
        factory.setProtocolOptions(openHandshakeTimeout=settings.connect_timeout,
                                   maxMessagePayloadSize=0, maxFramePayloadSize=0,
                                   autoPingInterval=0)
        context = None
        if parts.scheme == "wss":
            from twisted.internet.ssl import optionsForClientTLS

            trust = (_trust_root(settings.ca_pem) if settings.ca_pem is not None else None)
            context = optionsForClientTLS(parts.hostname or "", trustRoot=trust)
        self.connector = connectWS(factory, context, timeout=settings.connect_timeout)

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

    def upstream_open(self, upstream: _Upstream) -> None:
        self.upstream = upstream
        if not self.accepted.called:
            self.accepted.callback(HandshakeAnswer(subprotocol=self.subprotocol))

    def upstream_unreachable(self, why: str) -> None:
        _log.warn("proxy {path}: upstream {upstream} unreachable: {why}",
                  path=self.request.path, upstream=self.strategy.settings.upstream, why=why)
        if not self.accepted.called:
            self.accepted.errback(HandshakeRefused(502, "upstream unreachable"))

    # -- the conversation ------------------------------------------------------------

    def opened(self, session: ISession) -> None:
        self.session = session
        recorder = self.strategy.recorder
        if recorder is not None:
            self.conversation = recorder.conversation(
                self.request.path, self.subprotocol, self.strategy.settings.upstream)

    def from_client(self, message: str | bytes) -> None:
        if self.conversation is not None:
            self.conversation.message("client", message)
        upstream = self.upstream
        if upstream is None:
            if len(self.pending) >= MAX_PENDING:
                raise OverflowError("too many messages before the upstream answered")
            self.pending.append(message)
            return
        _send(upstream, message)

    def from_upstream(self, message: str | bytes) -> None:
        if self.conversation is not None:
            self.conversation.message("server", message)
        if self.session is not None:
            self.session.send(message)

    def client_closed(self, code: int | None, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        if self.conversation is not None:
            self.conversation.closed("client", code, reason)
        upstream = self.upstream
        if upstream is not None:
            if code in (None, 1005, 1006, 1015):
                upstream.dropConnection(abort=False)
            else:
                upstream.sendClose(code if code in (1000,) or 3000 <= code <= 4999 else 1000,
                                   reason or None)

    def upstream_closed(self, code: int | None, reason: str, status: int | None) -> None:
        if not self.accepted.called:
            self.accepted.errback(HandshakeRefused(status or 502,
                                                   "upstream refused the connection"))
            return
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
            else:
                try:
                    session.close(code, reason)
                except ValueError:  # a code a server may not send (1002, 1010...)
                    session.close(1011, "upstream closed")


def _send(upstream: _Upstream, message: str | bytes) -> None:
    if isinstance(message, bytes):
        upstream.sendMessage(message, True)
    else:
        upstream.sendMessage(message.encode("utf-8"), False)


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
            _send(link.upstream, link.pending.popleft())

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
        return _check(options, context.config_dir)

    def create(self, options: Mapping[str, str], context: StrategyContext) -> ProxyStrategy:
        settings = context.checked
        if not isinstance(settings, ProxySettings):
            settings = _check(options, context.config_dir)
        clock: IReactorTime = context.clock
        return ProxyStrategy(settings, clock)
