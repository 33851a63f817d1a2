"""
The admin listener's HTTP API: push, the client list, metrics, health.

    POST /push      push a message (API key)
    GET  /clients   the open connections (API key)
    GET  /metrics   Prometheus text format
    GET  /healthz   liveness and readiness (200 ready, 503 not yet)

Bodies over C{max_body} bytes are answered 413 without being kept in memory.
Every answer is JSON, errors too (unknown paths 404, other methods 405 with
C{Allow}: L{wsdaemon.server.api.JsonResource}).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import sys
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from wsdaemon.broker.bus import IPushBus
from wsdaemon.connections.index import PushTarget, SessionIndex
from wsdaemon.connections.journal import Journal
from wsdaemon.connections.limits import HandshakeDeadlineChannel
from wsdaemon.errors import BrokerUnavailable
from wsdaemon.escaping import visible
from wsdaemon.server.access_log import QuietAccessLog
from wsdaemon.server.api import (
    ApiResource,
    ApiRoot,
    JsonResource,
    RequestError,
    check_unicode,
    json_answer,
    json_object,
    reject_unknown,
    too_big,
)
from wsdaemon.server.control_api import ConnectionsResource, RoutesResource
from wsdaemon.server.journal_api import JournalQueries, JournalResource

__all__ = ["AdminSite", "DaemonView", "PushCounters"]

_log = Logger(namespace="wsdaemon.admin")

#: The old private name (tests and fuzzers import it).
_RequestError = RequestError

_TARGET_KEYS = ("session", "client", "route", "all")


class DaemonView(Protocol):
    """
    What the admin API reads from the running daemon.
    """

    @property
    def index(self) -> SessionIndex: ...

    @property
    def bus(self) -> IPushBus: ...

    def health(self) -> dict[str, Any]: ...

    def journals(self) -> Mapping[str, Journal]: ...

    @property
    def factories(self) -> Mapping[str, Any]: ...

    def journal_mark(self) -> int: ...


class PushCounters:
    """
    Push calls by target kind and outcome, for /metrics.
    """

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = {}

    def count(self, kind: str, outcome: str) -> None:
        key = (kind, outcome)
        self.calls[key] = self.calls.get(key, 0) + 1


def parse_push(body: bytes) -> tuple[PushTarget, str | bytes]:
    """
    @raise RequestError: 400 with the reason.
    """
    data = json_object(body)
    reject_unknown(data, {*_TARGET_KEYS, "text", "base64"})
    targets = [k for k in _TARGET_KEYS if k in data]
    if len(targets) != 1:
        raise RequestError(400, "give exactly one target: session, client, route or all")
    kind = targets[0]
    value = data[kind]
    if kind == "all":
        if value is not True:
            raise RequestError(400, '"all" must be true')
        target = PushTarget("all")
    else:
        if not isinstance(value, str) or not value:
            raise RequestError(400, f'"{kind}" must be a non-empty string')
        target = PushTarget(kind, value)
    bodies = [k for k in ("text", "base64") if k in data]
    if len(bodies) != 1:
        raise RequestError(400, 'give exactly one of "text" (a text message) or "base64" '
                               "(a binary message)")
    for key in (kind, "text"):
        if isinstance(data.get(key), str):
            check_unicode(key, data[key])
    if bodies[0] == "text":
        if not isinstance(data["text"], str):
            raise RequestError(400, '"text" must be a string')
        return target, data["text"]
    if not isinstance(data["base64"], str):
        raise RequestError(400, '"base64" must be a string')
    try:
        return target, base64.b64decode(data["base64"], validate=True)
    except (ValueError, binascii.Error):
        raise RequestError(400, '"base64" is not valid base64') from None


def _reactor() -> IReactorTime:
    from twisted.internet import reactor

    return reactor


def _idempotency_key(request: Request) -> str | None:
    raw = request.getHeader(b"idempotency-key")
    if raw is None:
        return None
    key = raw.decode("latin-1").strip()
    if not key or len(key) > 200:
        raise RequestError(400, "Idempotency-Key must be 1 to 200 characters")
    return key


#: What one remembered push costs besides its key (measured with tracemalloc
#: in tests/unit/test_push_idempotency.py: the entry, its digest, time and
#: counts, and its slot in the ordered dict).
_ENTRY_BYTES = 448


class _Done:
    """
    A push remembered by its key: a digest of its body (never the body),
    and its counts (None while it is under way).
    """

    __slots__ = ("at", "digest", "counts", "size")

    def __init__(self, at: float, digest: bytes, size: int) -> None:
        self.at = at
        self.digest = digest
        self.counts: dict[str, int] | None = None
        self.size = size


class PushesDone:
    """
    The answers to recent pushes that carried an C{Idempotency-Key}: the same
    key with the same body within C{keep} seconds answers again without
    sending again (a client retrying after a lost answer); the same key with
    another body is refused (409), and so is a retry while the first push is
    still under way. Each push is remembered by a SHA-256 digest of its body
    and its counts, never the body: at most C{limit} keys and C{max_bytes}
    (keys included), the oldest forgotten first.
    """

    def __init__(self, clock: IReactorTime, keep: float = 600.0, limit: int = 10_000,
                 max_bytes: int = 8 * 1024 * 1024) -> None:
        self._clock = clock
        self._keep = keep
        self._limit = limit
        self._max_bytes = max_bytes
        self._done: OrderedDict[str, _Done] = OrderedDict()
        #: What the remembered pushes take, in bytes (keys included).
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._done)

    def _forget_old(self) -> None:
        done = self._done
        oldest = self._clock.seconds() - self._keep
        while done:
            first = next(iter(done.values()))
            if (len(done) <= self._limit and self.bytes <= self._max_bytes
                    and first.at >= oldest):
                return
            self.bytes -= done.popitem(last=False)[1].size

    def get(self, key: str, body: bytes) -> dict[str, int] | None:
        """
        @return: the counts of the push made with C{key} and this body, or
            None if there was none (or it is forgotten).
        @raise RequestError: 409 if C{key} came with another body, or its
            push is still under way.
        """
        self._forget_old()
        found = self._done.get(key)
        if found is None:
            return None
        if found.digest != hashlib.sha256(body).digest():
            raise RequestError(409, "this Idempotency-Key was used for another push")
        if found.counts is None:
            raise RequestError(409, "a push with this Idempotency-Key is still under way; "
                                    "retry once it is answered")
        return dict(found.counts)

    def begin(self, key: str, body: bytes) -> None:
        """
        Remember that the push of C{key} is under way.
        """
        self.abandon(key)
        entry = _Done(self._clock.seconds(), hashlib.sha256(body).digest(),
                      sys.getsizeof(key) + _ENTRY_BYTES)
        self._done[key] = entry
        self.bytes += entry.size
        self._forget_old()

    def put(self, key: str, body: bytes, counts: Mapping[str, int]) -> None:
        """
        Remember the counts C{key}'s push answered with.
        """
        entry = self._done.get(key)
        if entry is None or entry.digest != hashlib.sha256(body).digest():
            self.begin(key, body)
            entry = self._done.get(key)
            if entry is None:  # bigger than max_bytes on its own
                return
        entry.counts = dict(counts)

    def abandon(self, key: str) -> None:
        """
        Forget C{key} (its push failed: a retry sends again).
        """
        entry = self._done.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size


def _size(message: str | bytes) -> int:
    return len(message) if isinstance(message, bytes) else len(message.encode("utf-8"))


class PushResource(ApiResource):
    def _over_limit(self, target: PushTarget, size: int) -> tuple[str, int] | None:
        """
        @return: the route a push names (by route, or by a session on this
            daemon) and its C{max_message_size}, if the message is over it.
        """
        if target.kind == "route":
            route = target.value or ""
            limit = int(self.admin.daemon.factories[route].route.protocol.max_message_size)
        elif target.kind == "session":
            found = [c for c in self.admin.daemon.index.select(target) if c.session is not None]
            if not found:
                return None
            route, limit = found[0].session.route, found[0].max_message_size
        else:
            return None
        return (route, limit) if limit and size > limit else None

    def render_POST(self, request: Request) -> bytes | int:
        self.authorize(request)
        if getattr(request, "oversized", False):
            raise RequestError(413, f"body over {self.admin.max_body} bytes")
        assert request.content is not None
        body = request.content.read()
        key = _idempotency_key(request)
        done = self.admin.pushes_done
        earlier = done.get(key, body) if key is not None else None
        target, message = parse_push(body)
        if earlier is not None:
            return json_answer(request, 200, {**earlier, "target": target.to_json(),
                                              "replayed": True})
        counters = self.admin.push_counters
        routes = self.admin.daemon.factories
        if target.kind == "route" and target.value not in routes:
            # Routes are this daemon's config (daemons sharing Redis serve
            # the same ones): a typo must not look like "nobody connected".
            counters.count(target.kind, "not_found")
            return json_answer(request, 404, {
                "error": f"no route {visible(target.value or '')!r}; routes: "
                         f"{', '.join(sorted(routes))}", "target": target.to_json()})
        size = _size(message)
        over = self._over_limit(target, size)
        if over is not None:
            # Its clients could never take it (as an operator's reply).
            route, limit = over
            counters.count(target.kind, "too_big")
            return json_answer(request, 413, {
                "error": too_big(size, route, limit),
                "size": size, "max_message_size": limit, "target": target.to_json()})
        if key is not None:
            done.begin(key, body)
        d = self.admin.daemon.bus.publish_counted(target, message)

        def published(counts: tuple[int, int]) -> None:
            delivered, failed = counts
            counters.count(target.kind, "ok")
            _log.info("push to {kind} {value}: {count} connection(s), {failed} could not take "
                      "it", kind=target.kind, value=visible(target.value or ""),
                      count=delivered, failed=failed)
            answer = {"delivered": delivered, "failed": failed}
            if key is not None:
                done.put(key, body, answer)
            request.write(json_answer(request, 200, {**answer, "target": target.to_json()}))
            request.finish()

        def failed(failure: Any) -> None:
            counters.count(target.kind, "error")
            if key is not None:
                done.abandon(key)
            if failure.check(BrokerUnavailable):
                # Written to this daemon's connections; the others never saw it.
                request.write(json_answer(request, 503, {
                    "error": "Redis unavailable: delivered on this daemon only, not to the "
                             "other daemons; try again", "target": target.to_json()}))
            else:
                _log.failure("push failed", failure=failure)
                request.write(json_answer(request, 500, {"error": "push failed"}))
            request.finish()

        d.addCallbacks(published, failed)
        return NOT_DONE_YET


class ClientsResource(ApiResource):
    def render_GET(self, request: Request) -> bytes:
        self.authorize(request)
        clients = self.admin.daemon.index.describe()
        return json_answer(request, 200, {"count": len(clients), "clients": clients})


class MetricsResource(JsonResource):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return generate_latest(self.registry)


class HealthResource(JsonResource):
    def __init__(self, daemon: DaemonView) -> None:
        super().__init__()
        self.daemon = daemon

    def render_GET(self, request: Request) -> bytes:
        health = self.daemon.health()
        return json_answer(request, 200 if health["ready"] else 503, health)


class _AdminRequest(Request):
    """
    Keeps at most C{max_body} bytes of a body; beyond, drops the rest and
    marks the request oversized (answered 413).
    """

    oversized = False
    _kept = 0

    def _limit(self) -> int:
        site: Any = getattr(self.channel, "site", None)
        return int(site.max_body)

    def gotLength(self, length: int | None) -> None:
        limit = self._limit()
        if length is not None and length > limit:
            self.oversized = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        limit = self._limit()
        if self.oversized or self._kept + len(data) > limit:
            self.oversized = True
            return
        self._kept += len(data)
        super().handleContentChunk(data)


class _AdminChannel(HandshakeDeadlineChannel):
    """
    The admin listener's HTTP channel: a whole request (headers I{and} body)
    must arrive within the site's C{request_timeout}, and the site counts
    its open connections.
    """

    site: Any

    def connectionMade(self) -> None:
        self.site.open_connections += 1
        super().connectionMade()

    def connectionLost(self, reason: Any = None) -> None:
        self.site.open_connections -= 1
        super().connectionLost(reason)

    def allHeadersReceived(self) -> None:
        # Not done yet: the deadline runs until the body is in too.
        HTTPChannel.allHeadersReceived(self)

    def allContentReceived(self) -> None:
        self._disarm()
        super().allContentReceived()


class _Misdirected(Resource):
    """
    A Host the admin API does not answer to (DNS rebinding: a browser page
    of another site resolving its own name to this address).
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return json_answer(request, 421, {"error": "this Host is not served here; see [admin] "
                                             "allowed_hosts"})


def _host_name(request: Request) -> str:
    raw = (request.getHeader(b"host") or b"").decode("latin-1").strip().lower()
    if raw.startswith("["):  # [::1]:8081
        return raw[1:raw.find("]")] if "]" in raw else raw
    return raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw


class AdminSite(QuietAccessLog):
    """
    @param api_keys: key -> name of who holds it.
    @param allowed_hosts: Host header names answered (others: 421).
    @param root: answers every path (a supervisor's, combining its workers'
        admin APIs); by default the daemon's own resources.
    """

    requestFactory = _AdminRequest
    #: Monitors' probes, every few seconds: no access line unless they fail.
    quiet_resources = (MetricsResource, HealthResource)
    log_name = "wsdaemon admin API"
    protocol = _AdminChannel  # type: ignore[assignment]
    displayTracebacks = False

    def __init__(self, daemon: DaemonView, api_keys: Mapping[str, str], max_body: int,
                 registry: CollectorRegistry, push_counters: PushCounters,
                 request_timeout: float = 10.0, max_connections: int = 100,
                 allowed_hosts: frozenset[str] = frozenset({"localhost", "127.0.0.1", "::1"}),
                 clock: IReactorTime | None = None, root: Resource | None = None) -> None:
        self.daemon = daemon
        self.api_keys = dict(api_keys)
        self.max_body = max_body
        self.handshake_timeout = request_timeout
        self.max_connections = max_connections
        self.allowed_hosts = allowed_hosts
        self.open_connections = 0
        self.push_counters = push_counters
        clock = clock if clock is not None else _reactor()
        self.pushes_done = PushesDone(clock)
        if root is not None:  # the supervisor's: answered from the workers'
            super().__init__(root)
            return
        root = ApiRoot()
        root.putChild(b"push", PushResource(self))
        root.putChild(b"clients", ClientsResource(self))
        root.putChild(b"journal", JournalResource(self, JournalQueries(clock)))
        root.putChild(b"routes", RoutesResource(self))
        root.putChild(b"connections", ConnectionsResource(self))
        root.putChild(b"metrics", MetricsResource(registry))
        root.putChild(b"healthz", HealthResource(daemon))
        super().__init__(root)

    def buildProtocol(self, addr: Any) -> Any:
        if self.open_connections >= self.max_connections:
            _log.warn("admin API: refused a connection from {peer}: {count} open "
                      "([admin] max_connections)", peer=str(addr), count=self.open_connections)
            return None
        return super().buildProtocol(addr)

    def getResourceFor(self, request: Request) -> Any:
        # No Host at all is an HTTP/1.0 health checker (HAProxy's httpchk),
        # never a browser, which always sends one: DNS rebinding needs it.
        host = _host_name(request)
        if host and host not in self.allowed_hosts:
            return _Misdirected()
        return super().getResourceFor(request)
