"""
The operators' WebSocket endpoint and its JSON protocol.

An operator authenticates at the handshake with its token, in an
C{Authorization: Bearer TOKEN} header or a C{token} query parameter (what a
browser can send); a missing token is refused with 401, a wrong one with
403. Then every message either way is one JSON object with a C{type}; see
the README ("Operator protocol") for the whole list.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.config import ProtocolSettings
from wsdaemon.connections.backpressure import Backpressure
from wsdaemon.connections.protocol import autobahn_options
from wsdaemon.credentials import check_token
from wsdaemon.errors import BrokerUnavailable
from wsdaemon.escaping import visible
from wsdaemon.strategies.operator.errors import QueueError
from wsdaemon.strategies.operator.pages import MAX_LIMIT, chunk, encode, page, shorten
from wsdaemon.strategies.operator.ports import IOperatorQueue

__all__ = ["OperatorChannelFactory", "OperatorChannelProtocol"]

_log = Logger(namespace="wsdaemon.operators")

UNAUTHORIZED = 401
#: Close code for an operator whose token a reload removed or changed.
TOKEN_REVOKED = 4001
#: Close code for a request the channel cannot answer (never expected).
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


def _text(request: dict[str, Any], key: str = "text") -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise QueueError(f"{key!r} must be a non-empty string")
    return value


def _request_id(value: Any) -> Any:
    """
    The request's C{id}, echoed in the answer: a number or a short string
    (anything else is not echoed).
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return value if len(str(value)) <= 100 else None


def _optional(request: dict[str, Any], key: str, kind: type, what: str) -> Any:
    value = request.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise QueueError(f"{key!r} must be {what} (or absent)")
    return value


def _limit(request: dict[str, Any], default: int) -> int:
    limit = _optional(request, "limit", int, f"a number of entries from 1 to {MAX_LIMIT}")
    if limit is None:
        return default
    if not 1 <= limit <= MAX_LIMIT:
        raise QueueError(f"'limit' must be from 1 to {MAX_LIMIT}, got {limit}")
    return int(limit)


class OperatorChannelProtocol(WebSocketServerProtocol):
    """
    One operator's connection. Provides what L{OperatorQueue} expects of an
    operator link: C{name} and C{notify(event)}.
    """

    factory: OperatorChannelFactory
    name = ""
    _joined = False
    _token_digest = b""
    _paused = False
    _held_reading = False
    _backlog = 0

    def failHandshake(self, reason: str, code: int = 400,
                      responseHeaders: Any = None) -> None:
        # Autobahn puts a bad header's value, as the client sent it, into
        # its log lines and the HTTP status line: escape it first.
        super().failHandshake(visible(reason), code, responseHeaders)

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
            self._token_digest = _digest(offered)
        except ConnectionDeny:
            raise
        except Exception:
            _log.failure("operator onConnect failed")
            raise ConnectionDeny(ConnectionDeny.INTERNAL_SERVER_ERROR, "internal error") from None

    def onOpen(self) -> None:
        self.factory.connections.add(self)
        transport: Any = self.transport
        if transport is not None and hasattr(transport, "registerProducer"):
            if getattr(transport, "producer", None) is not None:
                transport.unregisterProducer()  # twisted.web's, from the handshake
            transport.registerProducer(Backpressure(self), True)
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
        """
        The greeting: the first page of the queue and of the clients.
        """
        settings = self.factory.queue.settings
        snapshot = self._items_page({}, settings.page_size)
        clients = self.factory.queue.clients()
        snapshot["clients"], _ = page(clients, dict, settings.page_size)
        snapshot["clients_total"] = len(clients)
        snapshot["operators_online"] = self.factory.queue.operators_online
        snapshot["page_size"] = settings.page_size
        snapshot["preview_chars"] = settings.preview_chars
        return snapshot

    def describe(self, item: Any) -> dict[str, Any]:
        """
        An item as operators see it: its text shortened to a preview.
        """
        return self._preview(self.factory.queue.describe(item))

    def _preview(self, described: dict[str, Any]) -> dict[str, Any]:
        """
        A described item (the queue's dict, left as it is) with its text
        shortened to the preview operators get.
        """
        return shorten(dict(described), "text", self.factory.queue.settings.preview_chars)

    def _items_page(self, request: dict[str, Any], limit: int) -> dict[str, Any]:
        queue = self.factory.queue
        after = _optional(request, "after", int, "the 'next' of the previous page")
        client = _optional(request, "client", str, "a client id")
        search = _optional(request, "search", str, "a text to look for")
        state = _optional(request, "state", str, "'queued' or 'claimed'")
        if state not in (None, "queued", "claimed"):
            raise QueueError("'state' must be 'queued' or 'claimed' (or absent)")
        needle = search.casefold() if search else None

        def wanted(item: Any) -> bool:
            if after is not None and item.order <= after:
                return False
            if state is not None and item.state != state:
                return False
            return needle is None or needle in item.record.text.casefold() \
                or needle in item.record.client_id.casefold()

        items, more = page((i for i in queue.iter_open(client) if wanted(i)),
                           self.describe, limit)
        return {"items": items, "total": queue.count_open(), "more": more,
                "next": items[-1]["order"] if more and items else None}

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.connections.discard(self)
        if self._joined:
            self._joined = False
            self.factory.queue.remove_operator(self)

    def notify(self, event: dict[str, Any]) -> None:
        if self.state != self.STATE_OPEN:
            return
        kind = event.get("type")
        if kind in ("item", "updated"):
            event = {**event, "item": self._preview(event["item"])}
        elif kind == "resync":
            event = {**self._items_page({}, self.factory.queue.settings.page_size),
                     "type": "resync"}
        data = encode(event)
        # Bytes count against max_outbound_buffer once the operator has
        # stopped reading (not the message whose write found that out).
        was_paused = self._paused
        try:
            self.sendMessage(data, False)
        except Exception:
            _log.failure("operator {name}: could not send a {kind} event ({size} bytes); "
                         "closing with 1011", name=self.name, kind=kind, size=len(data))
            self.sendCloseFrame(code=INTERNAL_ERROR, reasonUtf8=b"internal error")
            return
        if was_paused and self._paused:
            self._backlog += len(data)
            limit = self.factory.queue.settings.max_outbound_buffer
            if limit and self._backlog > limit:
                _log.warn("dropping operator {name} ({peer}): it does not read ({count} bytes "
                          "waiting)", name=self.name, peer=self.peer, count=self._backlog)
                self._paused = False
                self.dropConnection(abort=True)

    def revoke(self) -> None:
        """
        Its token was removed or changed: close at once.
        """
        _log.info("closing operator {name} ({peer}): its token was revoked", name=self.name,
                  peer=self.peer)
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=TOKEN_REVOKED, reasonUtf8=b"operator token revoked")
        else:
            self.dropConnection(abort=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        request_id = None
        try:
            if isBinary:
                raise QueueError("send JSON text messages")
            try:
                request = json.loads(payload)
            except ValueError:
                raise QueueError("not JSON") from None
            except RecursionError:
                raise QueueError("not a request: JSON nested too deeply") from None
            if not isinstance(request, dict):
                raise QueueError("expected a JSON object with a 'type'")
            request_id = _request_id(request.get("id"))
            kind = request.get("type")
            handler = getattr(self, f"_do_{kind}", None) if isinstance(kind, str) else None
            if handler is None:
                shown = repr(kind)[:40]
                raise QueueError(
                    f"unknown type {shown}; expected one of: list, claim, release, reply, "
                    "push, broadcast, transcript, text, clients"
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
        queue = self.factory.queue
        answer = self._items_page(request, _limit(request, queue.settings.page_size))
        answer["operators_online"] = queue.operators_online
        return answer

    def _do_clients(self, request: dict[str, Any]) -> dict[str, Any]:
        after = _optional(request, "after", str, "the 'next' of the previous page")
        search = _optional(request, "search", str, "a text to look for")
        clients = self.factory.queue.clients()
        shown = (c for c in clients if (after is None or c["client_id"] > after)
                 and (not search or search.casefold() in c["client_id"].casefold()))
        entries, more = page(shown, dict, _limit(request, self.factory.queue.settings.page_size))
        return {"clients": entries, "total": len(clients), "more": more,
                "next": entries[-1]["client_id"] if more and entries else None}

    def _do_text(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        item_id = _optional(request, "item", str, "an item id")
        seq = _optional(request, "seq", int, "a transcript line's seq")
        offset = _optional(request, "offset", int, "a character offset") or 0
        if (item_id is None) == (seq is None) or offset < 0:
            raise QueueError("give 'item' (an item id) or 'seq' (a transcript line), and an "
                             "'offset' of 0 or more")
        d = self.factory.queue.full_text(item_id, seq)

        def found(text: str | None) -> dict[str, Any]:
            if text is None:
                raise QueueError(f"no item {(item_id or '')[:40]!r}" if seq is None
                                 else f"no message with seq {seq}")
            return {"item": item_id, "seq": seq, **chunk(text, offset)}

        return d.addCallback(found)

    def _do_claim(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        # The embedded queue decides at once, the shared one (Redis) later.
        d: Deferred[Any] = maybeDeferred(self.factory.queue.claim, _text(request, "item"), self)
        return d.addCallback(lambda item: {"item": self.describe(item)})

    def _do_release(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        d: Deferred[Any] = maybeDeferred(self.factory.queue.release, _text(request, "item"),
                                         self)
        return d.addCallback(lambda item: {"item": self.describe(item)})

    def _do_reply(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        item_id = request.get("item")
        if item_id is not None and not isinstance(item_id, str):
            raise QueueError("'item' must be an item id (or absent for the oldest)")
        d = self.factory.queue.reply(item_id or None, self, _text(request))

        return d.addCallback(lambda result: {**result, "item": self._preview(result["item"])})

    def _do_push(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        d: Deferred[Any] = self.factory.queue.push(_text(request, "client"), _text(request),
                                                   self)
        return d.addCallback(lambda counts: {"delivered": counts["delivered"],
                                             "kept": counts["kept"]})

    def _do_broadcast(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        d = self.factory.queue.broadcast(_text(request, "route"), _text(request), self)
        # A broadcast reaches who is connected now; nothing waits for others.
        return d.addCallback(lambda count: {"delivered": count, "kept": 0})

    def _do_transcript(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        client = _optional(request, "client", str, "a client id")
        before = _optional(request, "before", int, "the 'before' of the previous page")
        limit = _limit(request, self.factory.queue.settings.page_size)
        # One more than asked: whether older lines exist.
        d = self.factory.queue.transcript(client, before, limit + 1)
        preview = self.factory.queue.settings.preview_chars

        def paged(records: list[Any]) -> dict[str, Any]:
            older = len(records) > limit
            records = records[-limit:] if older else records
            # Newest first, so that a cut for size keeps the newest lines.
            entries, cut = page(reversed(records),
                                lambda r: shorten(r.to_json(), "body", preview), limit)
            entries.reverse()
            more = older or cut
            return {"entries": entries, "more": more,
                    "before": entries[0]["seq"] if more and entries else None}

        return d.addCallback(paged)


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
        A reload: new limits apply to new connections; an open session
        whose token was removed (or now names someone else) is closed at
        once with L{TOKEN_REVOKED}.
        """
        self.queue = queue
        self.tokens = tokens
        self.settings = settings
        self.setProtocolOptions(**autobahn_options(settings))
        still = {_digest(token): name for token, name in tokens.items()}
        for connection in list(self.connections):
            if still.get(connection._token_digest) != connection.name:
                connection.revoke()
