"""
Handshakes answered on purpose: refuse the next N with a status and
headers, negotiate (or require) a subprotocol, answer only some paths,
reset the TCP connection, never answer, answer slowly. What a route does
now, from its strategy's plan (a rules file's C{[handshake]}) or the admin
API's.

Only a route with something to do (a scripted route, which journals every
handshake; a plan with paths, faults or a delay) takes the slow path,
L{HandshakeState.special}: the others pay one attribute test.
"""

from __future__ import annotations

import socket
import struct
import uuid
from collections.abc import Callable
from typing import Any

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wsdaemon.connections.refusals import logged
from wsdaemon.connections.setup import ARM_LATER
from wsdaemon.escaping import visible
from wsdaemon.records import HandshakePlan, path_params, path_pattern

__all__ = ["MAX_HELD", "HandshakeState", "masked_handshake"]

_log = Logger(namespace="wsdaemon.protocol")

#: Handshakes one route holds unanswered at most (C{hang_next}); past it a
#: handshake to hold is refused with 503.
MAX_HELD = 100
#: Seconds a held handshake lasts at most, if its client never gives up.
MAX_HOLD_SECONDS = 3600.0
#: Headers whose values are credentials: journalled as C{***} (an
#: Authorization keeps its scheme, a Cookie its names).
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "sec-websocket-key",
                             "cookie", "set-cookie", "x-api-key", "x-auth-token"})


def _secret_param(name: str) -> bool:
    """
    Whether a query parameter is token-like: C{token}, C{client_token},
    C{access_token}, C{id_token}..., or names a secret, password, key or
    signature.
    """
    lower = name.lower()
    return lower.endswith("token") or any(
        word in lower for word in ("secret", "password", "passwd", "apikey", "api_key",
                                   "signature", "credential"))


def _masked_header(name: str, value: str) -> str:
    if name in ("authorization", "proxy-authorization"):
        scheme, _, rest = value.partition(" ")
        return f"{scheme} ***" if rest else "***"
    if name == "cookie":
        return "; ".join(f"{part.strip().partition('=')[0]}=***"
                         for part in value.split(";") if part.strip())
    return "***"


def masked_handshake(request: ConnectionRequest, fault: str | None) -> dict[str, Any]:
    """
    @return: a handshake as the journal keeps it: method, path, query (a
        repeated parameter as a list), headers (lower-case names),
        subprotocols offered, and the fault it met; credentials masked.
    """
    query: dict[str, Any] = {}
    for name, values in (request.params or {}).items():
        shown = ["***" if _secret_param(name) else v for v in values]
        query[name] = shown[0] if len(shown) == 1 else shown
    headers = {}
    for name, value in (request.headers or {}).items():
        lower = str(name).lower()
        headers[lower] = _masked_header(lower, str(value)) if lower in _SECRET_HEADERS \
            else str(value)
    return {"method": "GET", "path": str(request.path), "query": query, "headers": headers,
            "subprotocols": list(request.protocols or ()), "fault": fault}


def _reset(transport: Any) -> None:
    """
    End the TCP connection with a reset (RST): SO_LINGER 0, then close.
    """
    inner = transport
    while inner is not None:
        handle = getattr(inner, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):
            try:
                handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            break
        inner = getattr(inner, "transport", None)
    transport.abortConnection()


class HandshakeState:
    """
    One route's plan, how many refusals, resets and hangs it has left, and
    the handshakes it holds.

    @ivar journalled: whether the route journals each handshake (scripted
        routes, when their journal is on).
    @ivar active: whether handshakes take the slow path (L{special}).
    """

    def __init__(self, plan: HandshakePlan | None = None, journalled: bool = False) -> None:
        self.journalled = journalled
        self.held: set[Any] = set()
        self.set(plan or HandshakePlan())

    def set(self, plan: HandshakePlan) -> None:
        self.plan = plan
        self.refusals_left = plan.refuse_next
        self.resets_left = plan.reset_next
        self.hangs_left = plan.hang_next
        self._paths = tuple(path_pattern(p) for p in plan.paths)
        self._update()

    def observe(self, journalled: bool) -> None:
        self.journalled = journalled
        self._update()

    def _update(self) -> None:
        self.active = bool(self.journalled or self.refusals_left or self.resets_left
                           or self.hangs_left or self.plan.delay or self._paths)

    def refusal(self) -> tuple[int, dict[str, str]] | None:
        """
        @return: the status and headers for this handshake if it is to be
            refused (counting it), else None.
        """
        if self.refusals_left <= 0:
            return None
        self.refusals_left -= 1
        self._update()
        return self.plan.refuse_status, dict(self.plan.refuse_headers)

    def subprotocol(self, offered: list[str]) -> str | None:
        """
        @return: the subprotocol to accept, or None.
        @raise ConnectionDeny: 400, when one is required and none matches.
        """
        accepted = self.plan.subprotocols
        for name in accepted:
            if name in offered:
                return name
        if self.plan.require_subprotocol:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST,
                                 "none of the offered subprotocols is accepted")
        return None

    def describe(self) -> dict[str, object]:
        return {**self.plan.to_json(), "refusals_left": self.refusals_left,
                "resets_left": self.resets_left, "hangs_left": self.hangs_left,
                "held": len(self.held)}

    # -- the slow path -----------------------------------------------------------

    def _fault(self, protocol: Any, request: ConnectionRequest) -> str | None:
        """
        @return: what this handshake meets, counting it: C{not_found},
            C{refused}, C{reset}, C{held}, C{too_many_held}, or None.
        """
        if self._paths:
            route = protocol.factory.route.path.rstrip("/")
            path = str(request.path)
            below = path[len(route):] if path.startswith(route) else path
            if not any(path_params(p, below) is not None for p in self._paths):
                return "not_found"
        planned = self.refusal()
        if planned is not None:
            protocol._deny_headers = planned[1]
            return "refused"
        if self.resets_left > 0:
            self.resets_left -= 1
            self._update()
            return "reset"
        if self.hangs_left > 0:
            self.hangs_left -= 1
            self._update()
            return "held" if len(self.held) < MAX_HELD else "too_many_held"
        return None

    def special(self, protocol: Any, request: ConnectionRequest,
                accept: Callable[[ConnectionRequest], Any]) -> Any:
        """
        Answer a handshake on the slow path: journal it, then refuse it,
        reset it, hold it, or let C{accept} answer it (after the plan's
        delay).

        @return: what C{onConnect} returns.
        @raise ConnectionDeny: to refuse it now.
        """
        factory = protocol.factory
        route = factory.route.path
        fault = self._fault(protocol, request)
        if not protocol._session_id:
            protocol._session_id = uuid.uuid4().hex
        journal = factory.journal
        if self.journalled and journal.enabled:
            journal.handshake(protocol._session_id, masked_handshake(request, fault))
        delay = self.plan.delay
        if fault in ("not_found", "refused", "too_many_held"):
            status, reason, why = {
                "not_found": (ConnectionDeny.NOT_FOUND, "no such path", "path"),
                "refused": (self.plan.refuse_status, "refused on purpose", "planned"),
                "too_many_held": (ConnectionDeny.SERVICE_UNAVAILABLE, "too many held", "held"),
            }[fault]
            _log.info("refused {peer} on {route} with {status}, on purpose ([handshake] "
                      "{key}; path {path})", peer=request.peer, route=route, status=status,
                      key={"path": "paths", "planned": "refuse_next", "held": "hang_next, "
                           f"{MAX_HELD} held already"}[why],
                      path=visible(str(request.path)))
            factory.stats.refused(why)
            if not delay:
                raise logged(ConnectionDeny(status, reason))
            return self._later(protocol, delay, _deny, status, reason)
        if fault == "reset":
            _log.info("reset {peer} on {route}, on purpose ([handshake] reset_next)",
                      peer=request.peer, route=route)
            factory.stats.refused("planned")
            _reset(protocol.transport)
            return Deferred()  # never answered: the connection is gone
        if fault == "held":
            return self._hold(protocol, request)
        if delay:
            return self._later(protocol, delay, accept, request)
        return accept(request)

    def _later(self, protocol: Any, delay: float, action: Callable[..., Any],
               *args: Any) -> Deferred[Any]:
        """
        @return: a Deferred firing with C{action(*args)} after C{delay}
            seconds; nothing happens if the client goes away first.
        """
        answer: Deferred[Any] = Deferred()

        def fire() -> None:
            try:
                result = action(*args)
            except BaseException as e:  # a ConnectionDeny, as onConnect would raise it
                answer.errback(e)
                return
            if isinstance(result, Deferred):
                result.chainDeferred(answer)
            else:
                answer.callback(result)

        call = protocol.factory.clock.callLater(delay, fire)

        def gone(result: object) -> object:
            if call.active():
                call.cancel()
            return result

        protocol.is_closed.addBoth(gone)
        return answer

    def _hold(self, protocol: Any, request: ConnectionRequest) -> Deferred[Any]:
        """
        Never answer: the client waits until it gives up (the daemon's own
        open_handshake_timeout does not end it; L{MAX_HOLD_SECONDS} does).
        """
        _log.info("holding the handshake of {peer} on {route}, on purpose ([handshake] "
                  "hang_next; {count} held)", peer=request.peer,
                  route=protocol.factory.route.path, count=len(self.held) + 1)
        protocol.factory.stats.refused("planned")
        timeout = getattr(protocol, "openHandshakeTimeoutCall", None)
        if timeout is not None:
            timeout.cancel()
            protocol.openHandshakeTimeoutCall = None
        protocol.__dict__.pop(ARM_LATER, None)  # nor armed later (connections.setup)
        self.held.add(protocol)
        call = protocol.factory.clock.callLater(MAX_HOLD_SECONDS, protocol.dropConnection,
                                                abort=True)

        def released(result: object) -> object:
            self.held.discard(protocol)
            if call.active():
                call.cancel()
            return result

        protocol.is_closed.addBoth(released)
        return Deferred()


def _deny(status: int, reason: str) -> None:
    raise ConnectionDeny(status, reason)
