"""
The WebSocket protocol of a route: hands messages to the route's strategy.

No exception escapes an Autobahn callback: a failing strategy closes its
client with 1011 and is logged with context; other clients never notice.
"""

from __future__ import annotations

import codecs
import uuid
from typing import Any
from urllib.parse import urlencode

from autobahn.exception import PayloadExceededError
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime, ISSLTransport, ITCPTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.config import ProtocolSettings
from wsdaemon.connections.backpressure import Backpressure
from wsdaemon.connections.directwrite import write_now
from wsdaemon.connections.faults import ConnectionFaults
from wsdaemon.connections.forwarding import believe
from wsdaemon.connections.frames import FastFrames, frame_header
from wsdaemon.connections.handshake import HandshakeState
from wsdaemon.connections.identity import resolve_with_claims
from wsdaemon.connections.index import SessionIndex
from wsdaemon.connections.journal import Journal, Sequence
from wsdaemon.connections.limits import ConnectionLimits, MessageRate
from wsdaemon.connections.refusals import fail_handshake_quietly, was_logged
from wsdaemon.connections.route import Route
from wsdaemon.connections.session import Session
from wsdaemon.connections.setup import LazyUtf8Validator, connection_made, options_snapshot
from wsdaemon.connections.setup import enable as enable_setup
from wsdaemon.connections.stats import RouteStats
from wsdaemon.forwarded import Forwarded, TrustedProxies
from wsdaemon.interfaces import IHandshakeHook, IHandshakePolicy, IPushFraming
from wsdaemon.records import (
    HandshakeAnswer,
    HandshakePlan,
    HandshakeRefused,
    HandshakeRequest,
    MessageLimits,
)

__all__ = ["RouteFactory", "RouteProtocol"]

_log = Logger(namespace="wsdaemon.protocol")

#: Close codes (RFC 6455 section 7.4.1).
INTERNAL_ERROR = 1011
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
#: HTTP status for a client over its per-address connection limit.
TOO_MANY_REQUESTS = 429


def _accept_deflate(offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def _refuse(offers: list[Any]) -> None:
    return None


class RouteProtocol(FastFrames, ConnectionFaults, WebSocketServerProtocol):  # type: ignore[misc]
    """
    One client on one route.
    """

    factory: RouteFactory
    session: Session | None = None
    messages_in = 0
    messages_out = 0
    _ip = ""
    _rate: MessageRate | None = None
    _fragments = 0
    _max_fragments = 0
    _max_backlog = 0
    _paused = False
    _backlog = 0
    #: A strategy's producer (IFlowControl), paused while the client is behind.
    _producer: Any = None
    _push_framing: Any = None
    _decoder: Any = None
    _text: list[str] = []
    _client_id: str | None = None
    #: The verified identity token's claims (identity = jwt), for a handshake hook.
    _claims: dict[str, Any] = {}
    _counted = False
    #: The route's journal while this connection is open and it is on.
    _journal: Journal | None = None
    #: Headers for a handshake refused on purpose.
    _deny_headers: dict[str, str] | None = None
    _session_id = ""
    #: A strategy taking part in the handshake (IHandshakeHook), until open.
    _hook: Any = None
    _pending_handshake: Deferred[Any] | None = None
    #: Whether a refusal of this handshake was logged (see refusals).
    _refusal_told = False
    #: Who the client is, when a trusted proxy is the peer ([wsdaemon] trusted_proxies).
    _forwarded: Forwarded | None = None
    #: Autobahn's UTF-8 validator, made only if used (see setup).
    utf8validator = LazyUtf8Validator()

    # -- Autobahn callbacks --------------------------------------------------

    def _connectionMade(self) -> None:
        # Autobahn's setup, without its per-option copy loop (see
        # wsdaemon.connections.setup), where it was found to give the same.
        if not connection_made(self, self.factory.protocol_options(type(self))):
            super()._connectionMade()
        # Autobahn sets TCP_NODELAY in connectionMade before its tcpNoDelay
        # option is copied (and swallows the AttributeError); twisted.web's
        # channel sets it only from Twisted 24.10. Set it here, as the
        # option says, once it is known.
        if getattr(self, "tcpNoDelay", True) and ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)

    def failHandshake(self, reason: str, code: int = 400,
                      responseHeaders: Any = None) -> None:
        # Autobahn puts a bad header's value, as the client sent it, into
        # its log lines and the HTTP status line: escape it first.
        headers = list(responseHeaders or [])
        if self._deny_headers:
            headers.extend(self._deny_headers.items())
        fail_handshake_quietly(self, super().failHandshake, reason, code, headers or None,
                               told=self._refusal_told)

    def onConnect(self, request: ConnectionRequest) -> Any:  # Autobahn takes a Deferred too
        handshake = self.factory.handshake
        if self.factory.trusted_proxies.networks:  # nothing to do for the rest
            self._forwarded = believe(self, request, self.factory.trusted_proxies)
        if handshake.active:  # journalled, refused, reset, held or delayed on purpose
            try:
                return handshake.special(self, request, self._accept)
            except ConnectionDeny as deny:
                self._refusal_told = self._refusal_told or was_logged(deny)
                raise
            except Exception:
                _log.failure("onConnect failed for {peer}", peer=getattr(request, "peer", "?"))
                raise ConnectionDeny(ConnectionDeny.INTERNAL_SERVER_ERROR,
                                     "internal error") from None
        return self._accept(request)

    def _accept(self, request: ConnectionRequest) -> Any:
        try:
            factory = self.factory
            settings = factory.route.protocol
            if not settings.origins.allows(request.origin):
                _log.info(
                    "refused {peer} on {route}: origin {origin!r} not allowed",
                    peer=request.peer, route=factory.route.path, origin=request.origin,
                )
                factory.stats.refused("origin")
                self._refusal_told = True
                raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
            if settings.max_connections and factory.connections >= settings.max_connections:
                _log.warn(
                    "refused {peer} on {route}: {count} connections open (max_connections)",
                    peer=request.peer, route=factory.route.path, count=factory.connections,
                )
                factory.stats.refused("max_connections")
                self._refusal_told = True
                raise ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE, "too many connections")
            transport: Any = self.transport
            forwarded = self._forwarded
            # Who the client is: refused here (401/403) if it must prove it.
            self._client_id, headers, self._claims = resolve_with_claims(
                settings.identity, request, secure=ISSLTransport.providedBy(transport)
                or (forwarded is not None and forwarded.secure))
            self._ip = (forwarded.host if forwarded is not None and forwarded.forwarded
                        else str(getattr(transport.getPeer(), "host", request.peer)))
            subprotocol = factory.handshake.subprotocol(list(request.protocols or ()))
            refusal = factory.limits.admit(self._ip) if factory.limits is not None else None
            if refusal is not None:
                factory.stats.refused(refusal)
                _log.warn("refused {peer} on {route}: {limit} reached", peer=request.peer,
                          route=factory.route.path, limit=refusal)
                self._refusal_told = True
                raise ConnectionDeny(
                    TOO_MANY_REQUESTS if refusal == "max_connections_per_ip"
                    else ConnectionDeny.SERVICE_UNAVAILABLE,
                    "too many connections",
                )
            factory.connections += 1
            self._counted = True
            if not self._session_id:  # the slow path gave it one
                self._session_id = uuid.uuid4().hex
            strategy = factory.route.strategy
            if IHandshakeHook.providedBy(strategy):
                return self._ask_strategy(strategy, request, headers)
            return (subprotocol, headers) if headers or subprotocol else None
        except ConnectionDeny as deny:
            self._refusal_told = self._refusal_told or was_logged(deny)
            raise
        except Exception:
            _log.failure("onConnect failed for {peer}", peer=getattr(request, "peer", "?"))
            raise ConnectionDeny(ConnectionDeny.INTERNAL_SERVER_ERROR, "internal error") from None

    def _ask_strategy(self, strategy: Any, request: ConnectionRequest,
                      headers: dict[str, str]) -> Deferred[tuple[str | None, dict[str, str]]]:
        """
        The route's strategy takes part in the handshake (a proxy opens its
        upstream connection): its answer accepts or refuses the client.
        """
        asked = self.handshake_request()
        self._hook = strategy
        d: Deferred[Any] = maybeDeferred(strategy.connecting, asked)
        self._pending_handshake = d

        def accepted(answer: HandshakeAnswer) -> tuple[str | None, dict[str, str]]:
            self._pending_handshake = None
            if answer.client_id is not None:
                self._client_id = answer.client_id
            return answer.subprotocol, {**headers, **dict(answer.headers)}

        def refused(failure: Failure) -> Failure:
            self._pending_handshake = None
            if failure.check(CancelledError):
                return failure
            refusal = failure.check(HandshakeRefused)
            if refusal is not None:
                value: Any = failure.value
                self.factory.stats.refused("strategy")
                raise ConnectionDeny(value.status, value.reason)
            _log.failure("strategy {strategy} failed in connecting", failure=failure,
                         strategy=type(strategy).__name__)
            raise ConnectionDeny(ConnectionDeny.INTERNAL_SERVER_ERROR, "internal error")

        d.addCallbacks(accepted, refused)
        return d

    def handshake_request(self) -> HandshakeRequest:
        """
        @return: the client's opening handshake (for a strategy's hook, or
            its rules: L{Session.handshake}).
        """
        settings = self.factory.route.protocol
        return HandshakeRequest(
            session_id=self._session_id, path=str(self.http_request_path),
            query=urlencode(self.http_request_params or {}, doseq=True),
            headers={str(k).lower(): str(v) for k, v in (self.http_headers or {}).items()},
            subprotocols=tuple(self.websocket_protocols or ()), peer=str(self.peer),
            limits=MessageLimits(settings.max_message_size, settings.max_frame_size,
                                 settings.max_fragments),
            client_id=self._client_id, claims=self._claims,
            subprotocol=getattr(self, "websocket_protocol_in_use", None) or None)

    def onOpen(self) -> None:
        factory = self.factory
        route = factory.route
        self._hook = None
        session = Session(
            session_id=self._session_id or uuid.uuid4().hex,
            route=route.path,
            peer=str(self.peer),
            connected_at=factory.clock.seconds(),
            protocol=self,
            client_id=self._client_id,
        )
        self.session = session
        self._strategy = route.strategy
        self._push_framing = IPushFraming(route.strategy, None)
        settings = route.protocol
        self._rate = (MessageRate(settings.max_message_rate, factory.clock.seconds())
                      if settings.max_message_rate else None)
        self._max_fragments = settings.max_fragments
        self._max_backlog = settings.max_outbound_buffer
        self._start_fast_frames()
        journal = factory.journal
        if journal.enabled:
            self._journal = journal
            journal.opened(session)
        self._start_backpressure()
        factory.stats.opened += 1
        if factory.index is not None:
            factory.index.add(self)
        _log.info(
            "client {peer} connected to {route} (session {session_id}, client {client_id})",
            peer=session.peer, route=route.path, session_id=session.session_id,
            client_id=session.client_id,
        )
        try:
            self._strategy.connection_opened(session)
        except Exception:
            self._strategy_failed("connection_opened")

    def _forget_handshake(self) -> None:
        """
        The client went away before its connection opened: a strategy that
        took part in the handshake forgets what it prepared.
        """
        pending, self._pending_handshake = self._pending_handshake, None
        hook, self._hook = self._hook, None
        if pending is not None and not pending.called:
            pending.cancel()
        elif hook is not None:
            try:
                hook.abandoned(self._session_id)
            except Exception:
                _log.failure("strategy {strategy} failed in abandoned",
                             strategy=type(hook).__name__)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # Not on our path (see onMessageEnd); kept for callers of the
        # Autobahn API.
        self._dispatch(payload if isBinary else payload.decode("utf-8"), len(payload))

    def _dispatch(self, message: str | bytes, length: int) -> None:
        session = self.session
        if session is None or not session.is_open:
            return
        rate = self._rate
        if rate is not None and not rate.allow(self.factory.clock.seconds()):
            self.factory.stats.refused("max_message_rate")
            _log.warn("closing {peer} on {route}: over {rate} messages per second",
                      peer=session.peer, route=session.route, rate=rate.rate)
            session.close(POLICY_VIOLATION, "message rate limit")
            return
        self.messages_in += 1
        stats = self.factory.stats
        stats.messages_in += 1
        stats.bytes_in += length
        journal = self._journal
        if journal is not None:
            journal.message(session, "in", message, type(message) is bytes)
        try:
            reply = self._strategy.message_received(session, message)
        except Exception:
            self._strategy_failed("message_received")
            return
        # The common cases first, without a Deferred or a function call.
        if reply is None:
            return
        try:
            if isinstance(reply, str):
                self.sendMessage(reply.encode("utf-8"), False)
            elif type(reply) is bytes:
                self.sendMessage(reply, True)
            else:
                self._send_reply(reply)
        except PayloadExceededError as e:
            self._cannot_send("a reply", e)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        factory = self.factory
        if self._counted:
            self._counted = False
            factory.connections -= 1
            if factory.limits is not None:
                factory.limits.release(self._ip)
        self._stop_backpressure()
        session = self.session
        if session is None:
            self._forget_handshake()
            return
        self.session = None
        session.detach()
        self._stop_faults()
        journal = self._journal
        if journal is not None:
            self._journal = None
            journal.closed(session, code, reason or "")
        if factory.index is not None:
            factory.index.remove(self, session.session_id, session.client_id, session.route)
        _log.info(
            "client {peer} left {route} (session {session_id}, code {code})",
            peer=session.peer, route=session.route, session_id=session.session_id, code=code,
        )
        try:
            self._strategy.connection_closed(session, code, reason or "")
        except Exception:
            _log.failure(
                "strategy {strategy} failed in connection_closed for {session_id} on {route}",
                strategy=type(self._strategy).__name__, session_id=session.session_id,
                route=session.route,
            )

    # -- receiving: our own UTF-8 handling ------------------------------------
    #
    # Autobahn validates text with its NVX validator, then joins the message's
    # bytes, then fires a "message" observer event (a Deferred per message),
    # and we would decode the bytes once more for the strategy. Instead, the
    # routes run with utf8validateIncoming=False and decode each frame with
    # CPython's incremental UTF-8 decoder as it arrives: that validates (it
    # rejects overlongs, surrogates, code points over U+10FFFF, and fails as
    # soon as a byte cannot continue a valid sequence, like Autobahn's) and
    # yields the str the strategy gets, in one C pass. Invalid text still
    # closes with 1007. Guarded by the Autobahn|Testsuite (cases 6.* are the
    # UTF-8 ones) in CI.

    def onMessageBegin(self, isBinary: bool) -> None:
        self._fragments = 0
        if isBinary:
            self._decoder = None
        else:
            self._decoder = _utf8_decoder()
            self._text = []
        super().onMessageBegin(isBinary)

    def onMessageFrameData(self, payload: bytes) -> None:
        decoder = self._decoder
        if decoder is None:
            super().onMessageFrameData(payload)
            return
        if self.failedByMe:
            return
        try:
            self._text.append(decoder.decode(payload))
        except UnicodeDecodeError as e:
            self._invalid_payload(f"invalid UTF-8 in a text message ({e.reason})")

    def onMessageEnd(self) -> None:
        if self.failedByMe:
            self.message_data = None  # type: ignore[assignment]
            return
        decoder = self._decoder
        if decoder is None:
            payload = b"".join(self.message_data)
            self.message_data = None  # type: ignore[assignment]
            self._dispatch(payload, len(payload))
            return
        self.message_data = None  # type: ignore[assignment]
        try:
            tail = decoder.decode(b"", True)
        except UnicodeDecodeError:
            self._invalid_payload("text message ends inside a UTF-8 sequence")
            return
        parts = self._text
        self._text = []
        if tail:
            parts.append(tail)
        text = parts[0] if len(parts) == 1 else "".join(parts)
        self._dispatch(text, self.message_data_total_length)

    def onMessageFrameBegin(self, length: int) -> None:
        # Autobahn bounds a message's bytes, not its frames: 100,000 one-byte
        # fragments would cost 100,000 objects. Bound the count too.
        self._fragments += 1
        if self._max_fragments and self._fragments > self._max_fragments:
            if not self.failedByMe:
                self.factory.stats.refused("max_fragments")
                self._fail_connection(MESSAGE_TOO_BIG, "message has too many fragments")
            return
        super().onMessageFrameBegin(length)

    # -- backpressure ----------------------------------------------------------

    def _start_backpressure(self) -> None:
        """
        Become the transport's producer: when its write buffer fills (the
        client is not reading), stop reading from the client, and close the
        connection once C{max_outbound_buffer} more bytes pile up.
        """
        transport: Any = self.transport
        if transport is None or not hasattr(transport, "registerProducer"):
            return
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()  # twisted.web's channel, from the handshake
        transport.registerProducer(Backpressure(self), True)

    def _stop_backpressure(self) -> None:
        self._paused = False
        self._producer = None

    def register_producer(self, producer: Any) -> None:
        """
        See L{wsdaemon.interfaces.IFlowControl.register_producer}.
        """
        if self.state == self.STATE_CLOSED or self.session is None:
            return
        self._producer = producer
        if self._paused:
            producer.pauseProducing()

    def hold_reading(self, held: bool) -> None:
        """
        See L{wsdaemon.interfaces.IFlowControl.hold_reading}.
        """
        transport: Any = self.transport
        if self.state == self.STATE_CLOSED or self.session is None or transport is None:
            return
        self._reading_held_by_strategy = held
        if held:
            transport.pauseProducing()
        elif not self._paused and not self._held_reading:
            transport.resumeProducing()

    def _queued(self, length: int) -> None:
        if self._paused:
            self._backlog += length
            if self._max_backlog and self._backlog > self._max_backlog:
                self.factory.stats.refused("slow_reader")
                session = self.session
                _log.warn("dropping {peer} on {route}: it does not read ({count} bytes waiting)",
                          peer=session.peer if session else self.peer,
                          route=self.factory.route.path, count=self._backlog)
                self._paused = False
                self.wasNotCleanReason = ("the daemon dropped the connection: the client does "
                                          "not read (over max_outbound_buffer)")
                self.dropConnection(abort=True)

    # -- sending -------------------------------------------------------------

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # Autobahn's own path for what it queues (sync writes, chopped
        # writes); everything else straight to the socket when nothing waits
        # before it (see wsdaemon.connections.directwrite).
        if sync or chopsize or self.send_queue:
            super().sendData(data, sync, chopsize)
            return
        write_now(self.transport, data)
        if self.state == self.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        else:
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)

    def sendMessage(self, payload: bytes, isBinary: bool = False,
                    fragmentSize: int | None = None, sync: bool = False,
                    doNotCompress: bool = False) -> None:
        if self._held_writes is not None:
            self._hold(payload, isBinary)
            return
        length = len(payload)
        if (self._fast_out and fragmentSize is None and not sync
                and self.state == self.STATE_OPEN and not self.send_queue):
            # One unfragmented, uncompressed frame: framed here, in one write
            # (Autobahn's sendMessage and sendFrame re-check every option).
            limit = self.maxMessagePayloadSize
            if limit and length > limit:
                self.wasMaxMessagePayloadSizeExceeded = True
                raise PayloadExceededError(
                    f"tried to send WebSocket message with size {length} exceeding payload "
                    f"limit of {limit} octets")
            write_now(self.transport, frame_header(2 if isBinary else 1, length) + payload)
        else:
            super().sendMessage(payload, isBinary, fragmentSize, sync, doNotCompress)
        self._count_out(payload, isBinary)

    def _count_out(self, payload: bytes, binary: bool) -> None:
        if self._paused:
            self._queued(len(payload))
        journal = self._journal
        if journal is not None and self.session is not None:
            journal.message(self.session, "out", payload, binary)
        self.messages_out += 1
        stats = self.factory.stats
        stats.messages_out += 1
        stats.bytes_out += len(payload)

    @property
    def max_message_size(self) -> int:
        """
        The largest message this connection takes either way (its route's
        C{max_message_size} when it opened; 0: no limit).
        """
        return int(self.maxMessagePayloadSize)

    def push_frame(self, message: str | bytes) -> str | bytes:
        """
        What a push of C{message} is written as here: framed by the
        route's strategy when it speaks a protocol of its own
        (L{IPushFraming}), else C{message}.
        """
        framing = self._push_framing
        if framing is None or self.session is None:
            return message
        return framing.frame_push(self.session.session_id, message)

    def send_prepared(self, prepared: Any, length: int, payload: bytes = b"",
                      binary: bool = False) -> bool:
        """
        Send a message framed once for many connections (a push).

        @param length: the message's bytes, uncompressed.
        @param payload: the message's bytes, for the journal.
        @return: whether it was sent: not if the connection is not open, nor
            if the message is over its C{max_message_size} (the limit holds
            for what the route sends as for what it receives, as for
            operator replies; the connection stays open).
        """
        if self.state != self.STATE_OPEN:
            return False
        limit = self.maxMessagePayloadSize
        if limit and length > limit:
            return False
        if self._held_writes is not None:
            self._hold(payload, binary)
            return True
        try:
            self.sendPreparedMessage(prepared)
        except PayloadExceededError as e:
            self._cannot_send("a push", e)
            return False
        if self._paused:
            self._queued(length)
        journal = self._journal
        if journal is not None and self.session is not None:
            journal.message(self.session, "out", payload, binary)
        self.messages_out += 1
        stats = self.factory.stats
        stats.messages_out += 1
        stats.bytes_out += length
        return True

    # -- helpers -------------------------------------------------------------

    def close_with(self, code: int, reason: str) -> None:
        """
        Start the closing handshake with any valid code (Autobahn's
        C{sendClose} refuses 1001, 1008, 1011).
        """
        reason_bytes = reason.encode("utf-8")[:123]
        # Cut at a character boundary: the reason must stay valid UTF-8.
        reason_bytes = reason_bytes.decode("utf-8", "ignore").encode("utf-8")
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=reason_bytes)

    def _cannot_send(self, what: str, error: Exception) -> None:
        """
        Autobahn refuses to send a message over the route's limit (after
        compression, which can make incompressible data bigger): close this
        client with 1009 and say so, instead of dropping it mid-send.
        """
        session = self.session
        _log.warn("closing {peer} on {route} with 1009: {what} could not be sent ({error})",
                  peer=session.peer if session else self.peer, route=self.factory.route.path,
                  what=what, error=str(error))
        self.factory.stats.refused("send_too_big")
        if session is not None:
            session.close(MESSAGE_TOO_BIG, "message too big to send")
        else:
            self.close_with(MESSAGE_TOO_BIG, "message too big to send")

    def _send_reply(self, reply: object) -> None:
        session = self.session
        if session is None:
            return
        if isinstance(reply, list | tuple):
            for message in reply:
                if not self._send_one(message):
                    return
        elif isinstance(reply, Deferred):
            reply.addCallback(self._deferred_reply)
            reply.addErrback(self._deferred_failed)
        else:
            self._send_one(reply)

    def _send_one(self, message: object) -> bool:
        session = self.session
        if session is None:
            return False
        try:
            return session.send(message)  # type: ignore[arg-type]
        except TypeError:
            self._strategy_failed("message_received")
            return False

    def _deferred_reply(self, reply: object) -> None:
        if reply is not None and self.session is not None:
            self._send_reply(reply)

    def _deferred_failed(self, failure: Failure) -> None:
        self._strategy_failed("a deferred reply", failure)

    def _strategy_failed(self, where: str, failure: Failure | None = None) -> None:
        session = self.session
        _log.failure(
            "strategy {strategy} failed in {where} for session {session_id} on {route}; "
            "closing it with 1011",
            failure=failure,
            strategy=type(self._strategy).__name__,
            where=where,
            session_id=session.session_id if session else None,
            route=self.factory.route.path,
        )
        if session is not None:
            session.close(INTERNAL_ERROR, "internal error")


class RouteFactory(WebSocketServerFactory):
    """
    The Autobahn factory of one route, configured from its L{Route}.

    @ivar connections: handshakes accepted and not yet closed.
    @ivar index: where open connections register, for pushes.
    """

    protocol = RouteProtocol  # type: ignore[assignment]
    #: Whose X-Forwarded-For is believed (the site's, set by its WebRoot).
    trusted_proxies = TrustedProxies()

    def __init__(self, route: Route, clock: IReactorTime, reactor: Any = None,
                 index: SessionIndex | None = None,
                 limits: ConnectionLimits | None = None,
                 sequence: Sequence | None = None) -> None:
        super().__init__(reactor=reactor)
        self.route = route
        self.clock = clock
        settings = route.protocol
        #: Handshakes refused or negotiated on purpose (its strategy's plan).
        self.handshake = HandshakeState(_plan_of(route.strategy))
        #: What this route's connections sent and received (survives reloads).
        self.journal = Journal(route.path, settings.journal_entries, settings.journal_max_bytes,
                               sequence if sequence is not None else Sequence(), clock.seconds)
        self.index = index
        self.limits = limits
        self.connections = 0
        self.stats = RouteStats()
        self._options: tuple[type, dict[str, Any]] | None = None
        enable_setup()
        self.apply(route.protocol)

    def setProtocolOptions(self, *args: Any, **kwargs: Any) -> None:
        super().setProtocolOptions(*args, **kwargs)
        self._options = None

    def protocol_options(self, protocol_class: type) -> dict[str, Any]:
        """
        @return: the options a new connection of C{protocol_class} takes
            from this factory (L{options_snapshot}, taken once per change).
        """
        options = self._options
        if options is None or options[0] is not protocol_class:
            options = self._options = (protocol_class, options_snapshot(self, protocol_class))
        return options[1]

    def update(self, route: Route) -> None:
        """
        Serve C{route}'s new strategy and settings to new connections (a
        reload); open connections keep what they started with.
        """
        self.route = route
        self.handshake.set(_plan_of(route.strategy) or HandshakePlan())
        self.apply(route.protocol)

    def apply(self, settings: ProtocolSettings) -> None:
        self.journal.resize(settings.journal_entries, settings.journal_max_bytes)
        self.handshake.observe(self.journal.enabled and IHandshakePolicy.providedBy(
            self.route.strategy))
        self.setProtocolOptions(
            **autobahn_options(settings),
            perMessageCompressionAccept=_accept_deflate if settings.compression else _refuse,
            # Text is validated by RouteProtocol as it decodes (see there).
            utf8validateIncoming=False,
        )


def _plan_of(strategy: object) -> HandshakePlan | None:
    if IHandshakePolicy.providedBy(strategy):
        plan: HandshakePlan | None = strategy.handshake_plan
        return plan
    return None


def autobahn_options(settings: ProtocolSettings) -> dict[str, Any]:
    """
    Autobahn's protocol options for our settings (shared by routes and the
    operator channel).
    """
    return dict(
        maxFramePayloadSize=settings.max_frame_size,
        maxMessagePayloadSize=settings.max_message_size,
        openHandshakeTimeout=settings.open_handshake_timeout,
        closeHandshakeTimeout=settings.close_handshake_timeout,
        autoPingInterval=settings.auto_ping_interval,
        autoPingTimeout=settings.auto_ping_timeout,
        # Our own origin check answers 403; Autobahn's would answer 400.
        allowedOrigins=["*"],
        allowNullOrigin=True,
        # Let clients see 1009/1007 instead of a dropped TCP connection.
        failByDrop=False,
        # Our own max_connections check: Autobahn's admits one too many.
        maxConnections=0,
        # A plain GET on a WebSocket route must not advertise the version.
        webStatus=False,
    )
