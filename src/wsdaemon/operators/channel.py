"""
The operators' WebSocket endpoint and its JSON protocol.

An operator authenticates at the handshake with its token, in an
C{Authorization: Bearer TOKEN} header or a C{token} query parameter (what a
browser can send); a missing token is refused with 401, a wrong one with
403. Then every message either way is one JSON object with a C{type}; see
the README ("Operator protocol") for the whole list.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.broker.link import BrokerUnavailable
from wsdaemon.config import ProtocolSettings
from wsdaemon.credentials import check_token
from wsdaemon.interfaces import IOperatorQueue
from wsdaemon.operators.queue import QueueError
from wsdaemon.protocol import autobahn_options

__all__ = ["OperatorChannelFactory", "OperatorChannelProtocol"]

_log = Logger(namespace="wsdaemon.operators")

UNAUTHORIZED = 401


def _offered_token(request: ConnectionRequest) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return str(header[7:].strip())
    values = request.params.get("token")
    return str(values[0]) if values else None


def _text(request: dict[str, Any], key: str = "text") -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise QueueError(f"{key!r} must be a non-empty string")
    return value


class OperatorChannelProtocol(WebSocketServerProtocol):
    """
    One operator's connection. Provides what L{OperatorQueue} expects of an
    operator link: C{name} and C{notify(event)}.
    """

    factory: OperatorChannelFactory
    name = ""
    _joined = False

    def onConnect(self, request: ConnectionRequest) -> None:
        try:
            settings = self.factory.settings
            refusals = self.factory.refusals
            if not settings.origins.allows(request.origin):
                refusals["origin"] = refusals.get("origin", 0) + 1
                raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
            offered = _offered_token(request)
            if not offered:
                refusals["no_token"] = refusals.get("no_token", 0) + 1
                raise ConnectionDeny(UNAUTHORIZED, "operator token required")
            name = check_token(offered, self.factory.tokens)
            if name is None:
                refusals["bad_token"] = refusals.get("bad_token", 0) + 1
                _log.warn("refused an operator from {peer}: bad token", peer=request.peer)
                raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "bad operator token")
            self.name = name
        except ConnectionDeny:
            raise
        except Exception:
            _log.failure("operator onConnect failed")
            raise ConnectionDeny(ConnectionDeny.INTERNAL_SERVER_ERROR, "internal error") from None

    def onOpen(self) -> None:
        self.factory.connections.add(self)
        # Right after a restart the queue may still be reading its store:
        # greet (with the full queue) once it has.
        self.factory.queue.when_started().addCallback(self._join).addErrback(
            lambda failure: _log.failure("operator {name}: queue not started",
                                         failure=failure, name=self.name))

    def _join(self, _: object) -> None:
        if self.state != self.STATE_OPEN:
            return
        self._joined = True
        self.factory.queue.add_operator(self)
        self.notify({"type": "hello", "operator": self.name, **self._snapshot()})

    def _snapshot(self) -> dict[str, Any]:
        queue = self.factory.queue
        return {"items": [queue.describe(i) for i in queue.open_items()],
                "clients": queue.clients(), "operators_online": queue.operators_online}

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.connections.discard(self)
        if self._joined:
            self._joined = False
            self.factory.queue.remove_operator(self)

    def notify(self, event: dict[str, Any]) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(json.dumps(event, ensure_ascii=False).encode("utf-8"), False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        request_id = None
        try:
            if isBinary:
                raise QueueError("send JSON text messages")
            try:
                request = json.loads(payload)
            except ValueError:
                raise QueueError("not JSON") from None
            if not isinstance(request, dict):
                raise QueueError("expected a JSON object with a 'type'")
            request_id = request.get("id")
            handler = getattr(self, f"_do_{request.get('type')}", None)
            if handler is None:
                raise QueueError(
                    f"unknown type {request.get('type')!r}; expected one of: list, claim, "
                    "release, reply, push, broadcast, transcript"
                )
            d: Deferred[Any] = maybeDeferred(handler, request)
        except QueueError as e:
            self._answer_error(request_id, str(e))
            return
        except Exception:
            _log.failure("operator {name}: request failed", name=self.name)
            self._answer_error(request_id, "internal error")
            return
        d.addCallbacks(self._answer_ok, self._answer_failure,
                       callbackArgs=(request_id, request.get("type")),
                       errbackArgs=(request_id,))

    def _answer_ok(self, result: dict[str, Any], request_id: Any, kind: str) -> None:
        self.notify({"type": "ok", "id": request_id, "request": kind, **result})

    def _answer_failure(self, failure: Failure, request_id: Any) -> None:
        if failure.check(QueueError):
            self._answer_error(request_id, str(failure.value))
            return
        if failure.check(BrokerUnavailable):
            # Logged once by the link; the request may be retried (an answer
            # that did land is refused the second time, never sent twice).
            self._answer_error(request_id, "the queue's Redis is unavailable: try again")
            return
        _log.failure("operator {name}: request failed", failure=failure, name=self.name)
        self._answer_error(request_id, "internal error")

    def _answer_error(self, request_id: Any, error: str) -> None:
        self.notify({"type": "error", "id": request_id, "error": error})

    # -- requests ------------------------------------------------------------

    def _do_list(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._snapshot()

    def _do_claim(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        # The embedded queue decides at once, the shared one (Redis) later.
        queue = self.factory.queue
        d: Deferred[Any] = maybeDeferred(queue.claim, _text(request, "item"), self)
        return d.addCallback(lambda item: {"item": queue.describe(item)})

    def _do_release(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        queue = self.factory.queue
        d: Deferred[Any] = maybeDeferred(queue.release, _text(request, "item"), self)
        return d.addCallback(lambda item: {"item": queue.describe(item)})

    def _do_reply(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        item_id = request.get("item")
        if item_id is not None and not isinstance(item_id, str):
            raise QueueError("'item' must be an item id (or absent for the oldest)")
        return self.factory.queue.reply(item_id or None, self, _text(request))

    def _do_push(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        d = self.factory.queue.push(_text(request, "client"), _text(request), self)
        return d.addCallback(lambda count: {"delivered": count})

    def _do_broadcast(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        d = self.factory.queue.broadcast(_text(request, "route"), _text(request), self)
        return d.addCallback(lambda count: {"delivered": count})

    def _do_transcript(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        client = request.get("client")
        if client is not None and not isinstance(client, str):
            raise QueueError("'client' must be a client id (or absent for every client)")
        d = self.factory.queue.transcript(client)
        return d.addCallback(lambda records: {"entries": [r.to_json() for r in records]})


class OperatorChannelFactory(WebSocketServerFactory):
    protocol = OperatorChannelProtocol  # type: ignore[assignment]

    def __init__(self, queue: IOperatorQueue, tokens: dict[str, str],
                 settings: ProtocolSettings, reactor: Any = None) -> None:
        super().__init__(reactor=reactor)
        self.queue = queue
        self.tokens = tokens
        self.settings = settings
        self.refusals: dict[str, int] = {}
        self.path = ""
        self.connections: set[OperatorChannelProtocol] = set()
        self.setProtocolOptions(**autobahn_options(settings))

    def update(self, queue: IOperatorQueue, tokens: dict[str, str],
               settings: ProtocolSettings) -> None:
        """
        A reload: new tokens and limits apply to new connections.
        """
        self.queue = queue
        self.tokens = tokens
        self.settings = settings
        self.setProtocolOptions(**autobahn_options(settings))
