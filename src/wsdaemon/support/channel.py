"""
The operators' WebSocket channel for conversations: operator protocol v2
(docs/conversations.md, section 8).

Built by the support component and mounted at the C{[operator]} section's
path::

    hub = OperatorHub(inbox, reactor)          # the driver's IOperatorPort
    driver = ConversationDriver(store, inbox, reactor, visitors, hub, measures)
    factory = OperatorChannelFactory(driver, hub, tokens, display_names, canned,
                                     settings, reactor=reactor)

C{tokens} maps each operator token to the operator's login name,
C{display_names} login names to what visitors and colleagues are shown
(C{name:token:Display Name} in the section), C{canned} is the team's
L{CannedReplies}, C{settings} the channel's L{ProtocolSettings} (origins;
C{max_message_size} bounds requests and, as Autobahn applies it to sends,
answers; C{max_outbound_buffer} how much an operator that stopped reading
may leave unread before it is dropped; C{max_connections}), C{limits} the
answers' bounds (L{ChannelLimits}). C{clock} defaults to C{reactor}.

An operator authenticates at the handshake: its token in
C{Authorization: Bearer TOKEN} or a C{token} query parameter (401 without,
403 when wrong). The greeting is C{{"type": "hello", "protocol":
2, ...}} with the first page of conversations (most waiting first), the
team and how many canned replies there are. Then each request (a JSON
object with a C{type}, and an optional C{id} that the answer echoes) gets
exactly one answer, C{ok} or C{error}; events (C{conversation},
C{message}, C{note}, C{updated}, C{assigned}, C{typing}, C{read},
C{delivered}, C{team}, C{viewing}) come as the driver commits them. When
an operator's last connection closes, the operator goes offline (with
automatic routing its open conversations go to others).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.config import ProtocolSettings
from wsdaemon.connections.backpressure import Backpressure
from wsdaemon.connections.forwarding import believe
from wsdaemon.connections.protocol import autobahn_options
from wsdaemon.connections.refusals import fail_handshake_quietly
from wsdaemon.conversations.events import OperatorAvailability
from wsdaemon.conversations.model import Availability
from wsdaemon.credentials import check_token
from wsdaemon.errors import BrokerOutcomeUnknown, BrokerUnavailable
from wsdaemon.escaping import visible
from wsdaemon.forwarded import TrustedProxies
from wsdaemon.support.canned import CannedReplies
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.hub import OperatorHub
from wsdaemon.support.operator_requests import ChannelLimits, OperatorRequests, RequestError
from wsdaemon.support.summaries import encode, team_entries

__all__ = ["PROTOCOL_VERSION", "TOKEN_REVOKED", "OperatorChannelFactory",
           "OperatorChannelProtocol", "OperatorHub"]

_log = Logger(namespace="wsdaemon.operators")

#: A request Redis could not take (unreachable, stalled, loading its data).
STORE_AWAY = ("the conversation store (Redis) cannot be used right now: nothing changed; "
              "try again")
#: A request sent to Redis whose answer never came: it may have been done,
#: and a reply sent again would be stored twice.
STORE_UNCONFIRMED = ("the conversation store (Redis) did not confirm the request: it may "
                     "have been done (it then shows in the thread); look before you try again")

#: What the greeting's C{protocol} says.
PROTOCOL_VERSION = 2
UNAUTHORIZED = 401
#: Close code for an operator whose token a reload removed or changed.
TOKEN_REVOKED = 4001
INTERNAL_ERROR = 1011


def _digest(token: str) -> bytes:
    # What a connection remembers of its token (never the token itself).
    return hashlib.sha256(token.encode("utf-8")).digest()


def _offered_token(request: ConnectionRequest) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return str(header[7:].strip())
    values = request.params.get("token")
    return str(values[0]) if values else None


def _request_id(value: Any) -> Any:
    """The request's C{id}: a number or a short string is echoed, anything else is not."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return value if len(str(value)) <= 100 else None


class OperatorChannelProtocol(WebSocketServerProtocol):
    """One operator's connection; an L{OperatorLink} of the hub."""

    factory: OperatorChannelFactory
    operator = ""
    _joined = False
    _token_digest = b""
    _paused = False
    _held_reading = False
    _backlog = 0

    #: Whether a refusal of this handshake was logged (one line in all).
    _refusal_told = False

    def failHandshake(self, reason: str, code: int = 400,
                      responseHeaders: Any = None) -> None:
        # Autobahn puts a bad header's value into its log and status line
        # (escaped there) and logs two lines of its own (left out).
        fail_handshake_quietly(self, super().failHandshake, reason, code, responseHeaders,
                               told=self._refusal_told)

    def onConnect(self, request: ConnectionRequest) -> None:
        try:
            factory = self.factory
            if factory.trusted_proxies:  # the operator behind the site's proxy
                believe(self, request, factory.trusted_proxies)
            if not factory.settings.origins.allows(request.origin):
                factory.count_refusal("origin")
                raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
            cap = factory.settings.max_connections
            if cap and len(factory.connections) >= cap:
                factory.count_refusal("full")
                raise ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE, "too many operators")
            offered = _offered_token(request)
            if not offered:
                factory.count_refusal("no_token")
                raise ConnectionDeny(UNAUTHORIZED, "operator token required")
            name = check_token(offered, factory.tokens)
            if name is None:
                factory.count_refusal("bad_token")
                _log.warn("refused an operator from {peer}: bad token", peer=request.peer)
                self._refusal_told = True
                raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "bad operator token")
            self.operator = name
            self._token_digest = _digest(offered)
        except ConnectionDeny:
            raise
        except Exception:
            _log.failure("operator onConnect failed")
            raise ConnectionDeny(ConnectionDeny.INTERNAL_SERVER_ERROR, "internal error") from None

    def onOpen(self) -> None:
        try:
            self.factory.connections.add(self)
            transport: Any = self.transport
            if transport is not None and hasattr(transport, "registerProducer"):
                if getattr(transport, "producer", None) is not None:
                    transport.unregisterProducer()  # twisted.web's, from the handshake
                transport.registerProducer(Backpressure(self), True)
            # Greeted with the loaded inbox, not the empty one a daemon
            # that listens while its store opens still has.
            self.factory.driver.when_loaded().addCallback(lambda _: self._join())
        except Exception:
            _log.failure("operator {name}: could not greet", name=self.operator)
            self.sendCloseFrame(code=INTERNAL_ERROR, reasonUtf8=b"internal error")

    def _join(self) -> None:
        if self.state != self.STATE_OPEN or self not in self.factory.connections:
            return  # gone while the conversations loaded
        try:
            self._joined = True
            self.factory.hub.attach(self)
            self.send_event(self.greeting())
            _log.info("operator {name} connected from {peer} (protocol 2)", name=self.operator,
                      peer=self.peer)
        except Exception:
            _log.failure("operator {name}: could not greet", name=self.operator)
            self.sendCloseFrame(code=INTERNAL_ERROR, reasonUtf8=b"internal error")

    def greeting(self) -> dict[str, Any]:
        """The hello: who you are, the first page of conversations, the team."""
        factory = self.factory
        listing = factory.requests.listing(self.operator, {})
        return {"type": "hello", "protocol": PROTOCOL_VERSION, "operator": self.operator,
                "display_name": factory.hub.display_name(self.operator), **listing,
                "team": team_entries(factory.driver.inbox.team, factory.hub.display_names),
                "canned": len(factory.requests.canned),
                "page_size": factory.limits.page_size, "max_limit": factory.limits.max_limit,
                "text_chars": factory.limits.text_chars, "max_text": factory.limits.max_text}

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.connections.discard(self)
        if not self._joined:
            return
        self._joined = False
        try:
            if self.factory.hub.detach(self):
                self.factory.gone(self.operator)
        except Exception:
            _log.failure("operator {name}: leaving failed", name=self.operator)

    def send_event(self, event: dict[str, Any]) -> None:
        """
        Send one event or answer. Bytes written while the operator does not
        read count against C{max_outbound_buffer}; past it, it is dropped
        (it reconnects and is greeted afresh), never holding up the others.
        """
        if self.state != self.STATE_OPEN:
            return
        data = encode(event)
        was_paused = self._paused
        try:
            self.sendMessage(data, False)
        except Exception:
            _log.failure("operator {name}: could not send a {kind} event ({size} bytes); "
                         "closing with 1011", name=self.operator, kind=event.get("type"),
                         size=len(data))
            self.sendCloseFrame(code=INTERNAL_ERROR, reasonUtf8=b"internal error")
            return
        if was_paused and self._paused:
            self._backlog += len(data)
            limit = self.factory.settings.max_outbound_buffer
            if limit and self._backlog > limit:
                _log.warn("dropping operator {name} ({peer}): it does not read ({count} bytes "
                          "waiting)", name=self.operator, peer=self.peer, count=self._backlog)
                self._paused = False
                self.dropConnection(abort=True)

    def revoke(self) -> None:
        """Its token was removed or changed: close at once."""
        _log.info("closing operator {name} ({peer}): its token was revoked",
                  name=self.operator, peer=self.peer)
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=TOKEN_REVOKED, reasonUtf8=b"operator token revoked")
        else:
            self.dropConnection(abort=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        request_id = None
        kind: Any = None
        try:
            if isBinary:
                raise RequestError("send JSON text messages")
            try:
                request = json.loads(payload)
            except ValueError:
                raise RequestError("not JSON") from None
            except RecursionError:
                raise RequestError("not a request: JSON nested too deeply") from None
            if not isinstance(request, dict):
                raise RequestError("expected a JSON object with a 'type'")
            request_id = _request_id(request.get("id"))
            kind = request.get("type") if isinstance(request.get("type"), str) else None
            if not self._joined:
                raise RequestError("wait for the hello: the conversations are still loading")
            d = self.factory.requests.handle(self, request)
        except RequestError as e:
            self._answer_error(request_id, kind, e)
            return
        except Exception:
            _log.failure("operator {name}: request failed", name=self.operator)
            self._answer_error(request_id, kind, RequestError("internal error"))
            return
        d.addCallbacks(self._answer_ok, self._answer_failure,
                       callbackArgs=(request_id, kind), errbackArgs=(request_id, kind))
        d.addErrback(lambda failure: _log.failure("operator {name}: answering failed",
                                                  failure=failure, name=self.operator))

    def _answer_ok(self, result: dict[str, Any], request_id: Any, kind: str) -> None:
        self.send_event({"type": "ok", "id": request_id, "request": kind, **result})

    def _answer_failure(self, failure: Failure, request_id: Any, kind: str) -> None:
        if failure.check(RequestError):
            self._answer_error(request_id, kind, failure.value)
            return
        if failure.check(BrokerUnavailable):
            # An outage: the link logs it once, not a traceback per request.
            _log.debug("operator {name}: {kind} request not done: {why}", name=self.operator,
                       kind=visible(kind), why=failure.getErrorMessage())
            self._answer_error(request_id, kind, RequestError(
                STORE_UNCONFIRMED if failure.check(BrokerOutcomeUnknown) else STORE_AWAY))
            return
        _log.failure("operator {name}: {kind} request failed", failure=failure,
                     name=self.operator, kind=visible(kind))
        self._answer_error(request_id, kind, RequestError(
            "the request failed (the conversation store did not take it): nothing changed; "
            "try again"))

    def _answer_error(self, request_id: Any, kind: Any, error: Any) -> None:
        details = getattr(error, "details", {})
        self.send_event({"type": "error", "id": request_id, "request": kind,
                         "error": str(error), **details})


class OperatorChannelFactory(WebSocketServerFactory):
    """
    @ivar connections: the open operator connections.
    @ivar refusals: handshakes refused, by reason (for /metrics).
    """

    protocol = OperatorChannelProtocol  # type: ignore[assignment]
    #: Whose X-Forwarded-For is believed (the site's, set by its WebRoot).
    trusted_proxies = TrustedProxies()

    def __init__(self, driver: ConversationDriver, hub: OperatorHub, tokens: Mapping[str, str],
                 display_names: Mapping[str, str], canned: CannedReplies,
                 settings: ProtocolSettings, *, limits: ChannelLimits | None = None,
                 clock: IReactorTime | None = None, reactor: Any = None) -> None:
        super().__init__(reactor=reactor)
        if not isinstance(driver, ConversationDriver) or not isinstance(hub, OperatorHub):
            raise TypeError("expected a ConversationDriver and an OperatorHub")
        self.driver = driver
        self.hub = hub
        self.limits = limits or ChannelLimits()
        self.clock = clock if clock is not None else reactor
        self.requests = OperatorRequests(driver, hub, canned, self.limits)
        self.tokens: dict[str, str] = {}
        self.settings = settings
        self.refusals: dict[str, int] = {}
        self.path = ""
        self.connections: set[OperatorChannelProtocol] = set()
        self.update(tokens, display_names, canned, settings)

    def update(self, tokens: Mapping[str, str], display_names: Mapping[str, str],
               canned: CannedReplies, settings: ProtocolSettings) -> None:
        """
        A reload: new limits apply to new connections; a connection whose
        token was removed (or now names someone else) is closed at once
        with L{TOKEN_REVOKED}.
        """
        self.tokens = dict(tokens)
        self.hub.display_names = {name: display_names.get(name, name)
                                  for name in set(tokens.values()) | set(display_names)}
        self.requests.canned = canned
        self.settings = settings
        self.setProtocolOptions(**autobahn_options(settings))
        still = {_digest(token): name for token, name in self.tokens.items()}
        for connection in list(self.connections):
            if still.get(connection._token_digest) != connection.operator:
                connection.revoke()

    def count_refusal(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def gone(self, operator: str) -> None:
        """
        An operator's last connection here closed: it is offline now
        (unless it already was), or, with several daemons, once no other
        live daemon holds a connection of it (never an offline flap).
        """
        presence = self.hub.presence
        if presence is None:
            self._offline(operator)
            return
        d = presence.release(operator)
        d.addCallback(lambda elsewhere: None if elsewhere or self.hub.links_of(operator)
                      else self._offline(operator))
        d.addErrback(lambda failure: _log.failure(
            "operator {name}: could not mark it offline", failure=failure, name=operator))

    def _offline(self, operator: str) -> None:
        known = self.driver.inbox.team.get(operator)
        if known is None or known.availability is Availability.OFFLINE \
                or not self.driver.running:
            return
        d = self.driver.submit(OperatorAvailability(operator, Availability.OFFLINE))
        d.addErrback(lambda failure: _log.failure(
            "operator {name}: could not mark it offline", failure=failure, name=operator))
