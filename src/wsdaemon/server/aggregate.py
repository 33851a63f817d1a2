"""
The admin API of a daemon with several workers: the supervisor serves the
configured admin listener and answers for the whole daemon by asking every
worker's own admin API (each on a private Unix socket) and combining the
answers: a push reaches every worker (one, with Redis, which then reaches
them all; pushes with the same C{Idempotency-Key} always the same one),
lists are joined (each client or connection naming its worker), counts
summed, /metrics combined family by family as
L{wsdaemon.server.metrics.WORKER_MERGE} declares, /healthz ready only when
every worker is; a connection action goes to the worker that holds the
session.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from wsdaemon.server.journal_api import MAX_LIMIT
from wsdaemon.server.metrics import merge_metrics

__all__ = ["Reply", "WorkerAdmin", "AggregateResource", "merge_metrics"]

_log = Logger(namespace="wsdaemon.admin")

#: Request headers passed on to the workers.
_PASSED = (b"authorization", b"content-type", b"idempotency-key")


class Reply:
    """
    One worker's answer: its status, headers' content type and body.
    """

    def __init__(self, worker: int, status: int, content_type: bytes, body: bytes) -> None:
        self.worker = worker
        self.status = status
        self.content_type = content_type
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@implementer(IAgentEndpointFactory)
class _Sockets:
    def __init__(self, reactor: Any, paths: Callable[[], Mapping[int, str]]) -> None:
        self.reactor = reactor
        self.paths = paths

    def endpointForURI(self, uri: Any) -> Any:
        number = int(uri.host.decode("ascii").rsplit("-", 1)[1])
        return UNIXClientEndpoint(self.reactor, self.paths()[number], timeout=5)


class WorkerAdmin:
    """
    Calls the workers' admin APIs.

    @param paths: each running worker's admin socket, by worker number.
    """

    def __init__(self, reactor: Any, paths: Callable[[], Mapping[int, str]],
                 timeout: float = 10.0) -> None:
        self.reactor = reactor
        self.paths = paths
        self.timeout = timeout
        self.agent = Agent.usingEndpointFactory(reactor, _Sockets(reactor, paths))

    @inlineCallbacks
    def call(self, worker: int, method: bytes, path: bytes, headers: Headers,
             body: bytes | None) -> Any:
        producer = FileBodyProducer(BytesIO(body)) if body else None
        d = self.agent.request(method, b"http://worker-%d" % worker + path, headers, producer)
        clock: IReactorTime = self.reactor
        timer = clock.callLater(self.timeout, d.cancel)
        try:
            response = yield d
            data = yield readBody(response)
        finally:
            if timer.active():
                timer.cancel()
        content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        return Reply(worker, response.code, content_type, data)

    def all(self, method: bytes, path: bytes, headers: Headers, body: bytes | None,
            only: Sequence[int] | None = None) -> Deferred[list[Reply]]:
        """
        @return: the answers of every worker that answered.
        """
        numbers = sorted(self.paths()) if only is None else list(only)
        calls = [self.call(n, method, path, headers, body) for n in numbers]
        d: Deferred[Any] = DeferredList(calls, consumeErrors=True)

        def answered(results: list[tuple[bool, Any]]) -> list[Reply]:
            replies = []
            for number, (ok, value) in zip(numbers, results, strict=True):
                if ok:
                    replies.append(value)
                else:
                    _log.warn("admin API: worker {number} did not answer: {why}",
                              number=number, why=value.getErrorMessage())
            return replies

        d.addCallback(answered)
        return d


def _sum(values: Sequence[Any]) -> Any:
    return sum(v for v in values if isinstance(v, int | float))


class AggregateResource(Resource):
    """
    Every admin path, answered from the workers' answers.

    @param shared_push: the workers share pushes through Redis: a push goes
        to one worker only.
    """

    isLeaf = True

    def __init__(self, workers: WorkerAdmin, expected: Callable[[], int],
                 shared_push: bool) -> None:
        super().__init__()
        self.workers = workers
        self.expected = expected
        self.shared_push = shared_push
        self._next_push = 0

    def render(self, request: Request) -> int:
        body = request.content.read() if request.content is not None else b""
        if getattr(request, "oversized", False):
            self._send(request, 413, b"application/json",
                       b'{"error": "body over max_body bytes"}\n')
            return NOT_DONE_YET
        headers = Headers({b"host": [b"localhost"]})
        for name in _PASSED:
            value = request.getHeader(name)
            if value is not None:
                headers.setRawHeaders(name, [value])
        path = request.uri
        d = self._answer(request.method, path, headers, body)
        d.addCallback(lambda answer: self._send(request, *answer))
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    def _failed(self, failure: Any, request: Request) -> None:
        _log.failure("admin API: combining the workers' answers failed", failure)
        self._send(request, 502, b"application/json",
                   b'{"error": "the workers did not answer"}\n')

    @staticmethod
    def _send(request: Request, status: int, content_type: bytes, body: bytes) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", content_type or b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        request.write(body)
        request.finish()

    @inlineCallbacks
    def _answer(self, method: bytes, uri: bytes, headers: Headers, body: bytes) -> Any:
        route = uri.split(b"?", 1)[0].rstrip(b"/")
        workers = self.workers
        if route == b"/push" and self.shared_push:
            numbers = sorted(workers.paths())
            if numbers:
                key = (headers.getRawHeaders(b"idempotency-key") or [b""])[0].strip()
                if key:
                    # The worker that remembers the key answers its retries.
                    chosen = zlib.crc32(key) % len(numbers)
                else:
                    self._next_push = chosen = (self._next_push + 1) % len(numbers)
                replies = yield workers.all(method, uri, headers, body,
                                            only=[numbers[chosen]])
                return _relay(replies)
        if route.startswith(b"/connections/"):
            for number in sorted(workers.paths()):
                reply = yield workers.call(number, method, uri, headers, body)
                if reply.status != 404:
                    return reply.status, reply.content_type, reply.body
            return 404, b"application/json", b'{"error": "no open connection with that session"}\n'
        if route == b"/routes/rules" and method == b"PUT":
            numbers = sorted(workers.paths())
            first = yield workers.all(method, uri, headers, body, only=numbers[:1])
            if not first or first[0].status != 200:
                return _relay(first)
            yield workers.all(method, uri, headers, body, only=numbers[1:])
            return _relay(first)
        replies = yield workers.all(method, uri, headers, body)
        if not replies:
            return 502, b"application/json", b'{"error": "no worker answered"}\n'
        if any(r.status >= 400 for r in replies):
            bad = next((r for r in replies if r.status >= 400), replies[0])
            return bad.status, bad.content_type, bad.body
        if route == b"/metrics":
            text = merge_metrics({r.worker: r.body.decode("utf-8") for r in replies},
                                 self.expected())
            return 200, b"text/plain; version=0.0.4; charset=utf-8", text.encode("utf-8")
        combine = _cleared if (route, method) == (b"/journal", b"DELETE") else \
            _COMBINERS.get(route)
        if combine is None:
            return _relay(replies)
        answers = [_named(r, route) for r in replies]
        if combine is _journal:
            combined = _journal(answers, self.expected(), *_page(method, uri, body))
        else:
            combined = combine(answers, self.expected())
        status = 200
        if route == b"/healthz" and not combined.get("ready"):
            status = 503
        return status, b"application/json", (json.dumps(combined) + "\n").encode("utf-8")


def _relay(replies: list[Reply]) -> tuple[int, bytes, bytes]:
    if not replies:
        return 502, b"application/json", b'{"error": "no worker answered"}\n'
    return replies[0].status, replies[0].content_type, replies[0].body


#: The answers whose lists name the worker in each entry: the key of the list,
#: or None for the answer itself.
_LISTS: dict[bytes, str | None] = {
    b"/clients": "clients",
    b"/routes/connections": "connections",
    b"/healthz": None,  # the entry of /healthz's "each"
}


def _named(reply: Reply, route: bytes) -> Any:
    """
    @return: a worker's JSON answer to C{route}, naming the worker
        (C{"worker": N}) as L{_LISTS} says.
    """
    answer = reply.json()
    if not isinstance(answer, dict) or route not in _LISTS:
        return answer
    key = _LISTS[route]
    if key is None:
        return {**answer, "worker": reply.worker}
    if isinstance(answer.get(key), list):
        answer[key] = [{**entry, "worker": reply.worker} if isinstance(entry, dict) else entry
                       for entry in answer[key]]
    return answer


def _push(answers: list[Any], expected: int) -> dict[str, Any]:
    first = dict(answers[0])
    first["delivered"] = _sum([a.get("delivered") for a in answers])
    first["failed"] = _sum([a.get("failed") for a in answers])
    return first


def _clients(answers: list[Any], expected: int) -> dict[str, Any]:
    clients = sorted((c for a in answers for c in a.get("clients", [])),
                     key=lambda c: c.get("connected_at", 0))
    return {"count": len(clients), "clients": clients}


#: What a worker's /healthz says of itself; any other key is its operator
#: component's (C{conversations}), of state the workers share.
_HEALTH_OWN = frozenset({"status", "ready", "version", "connections", "broker",
                         "pending_timers", "reload", "worker"})


def _health(answers: list[Any], expected: int) -> dict[str, Any]:
    ready = len(answers) == expected and all(a.get("ready") for a in answers)
    status = "ok" if all(a.get("status") == "ok" for a in answers) and ready else "degraded"
    shared = {key: value for key, value in answers[0].items() if key not in _HEALTH_OWN}
    return {"status": status, "ready": ready, "version": answers[0].get("version"),
            "workers": {"expected": expected, "answering": len(answers)},
            "connections": _sum([a.get("connections") for a in answers]),
            "broker": answers[0].get("broker"),
            **shared,
            "each": answers}


def _page(method: bytes, uri: bytes, body: bytes) -> tuple[int, int]:
    """
    @return: the C{limit} and C{since} a journal query asked for (the
        workers have already refused wrong ones).
    """
    raw: Mapping[str, Any] = {}
    if method == b"POST":
        try:
            found = json.loads(body or b"{}")
        except ValueError:
            found = None
        raw = found if isinstance(found, dict) else {}
    elif b"?" in uri:
        query = uri.split(b"?", 1)[1].decode("utf-8", "replace")
        raw = {key: values[-1] for key, values in parse_qs(query).items()}

    def number(key: str, default: int) -> int:
        value = raw.get(key, default)
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
            return int(value)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    return number("limit", MAX_LIMIT), number("since", 0)


def _journal(answers: list[Any], expected: int, limit: int = MAX_LIMIT,
             since: int = 0) -> dict[str, Any]:
    """
    One page of every worker's journal. Entry numbers are unique across
    workers (L{wsdaemon.connections.journal.Sequence}), and each worker
    lists its first C{limit} entries above C{since}: the page's entries are
    among them, but only up to the earliest point where a worker's answer
    stops being complete (where it was cut: its C{next}; else its C{last},
    taken with its snapshot). Past it, another worker may have entries it
    did not list yet, so they wait for the next page: pages never repeat an
    entry or skip one, even while the workers record more.
    """
    count = _sum([a.get("count") for a in answers])
    result: dict[str, Any] = {"count": count, "last": max(a.get("last", 0) for a in answers)}
    if not any("entries" in a for a in answers):
        return result
    complete = min(a["next"] if "next" in a else a.get("last", 0) for a in answers)
    entries = sorted((e for a in answers for e in a.get("entries", [])
                      if e.get("seq", 0) <= complete), key=lambda e: e.get("seq", 0))[:limit]
    result["entries"] = entries
    if count > len(entries):
        result["next"] = entries[-1]["seq"] if entries else since
    return result


def _journal_routes(answers: list[Any], expected: int) -> dict[str, Any]:
    merged: dict[str, dict[str, Any]] = {}
    for answer in answers:
        for route in answer.get("routes", []):
            into = merged.setdefault(route["route"], dict(route))
            if into is not route:
                for key in ("entries", "bytes", "dropped"):
                    into[key] = into.get(key, 0) + route.get(key, 0)
    return {"routes": list(merged.values())}


def _routes(answers: list[Any], expected: int) -> dict[str, Any]:
    merged: dict[str, dict[str, Any]] = {}
    for answer in answers:
        for route in answer.get("routes", []):
            into = merged.get(route["route"])
            if into is None:
                merged[route["route"]] = {**route, "journal": dict(route.get("journal", {}))}
                continue
            into["connections"] = into.get("connections", 0) + route.get("connections", 0)
            for key in ("entries", "bytes", "dropped"):
                into["journal"][key] = (into["journal"].get(key, 0)
                                        + route.get("journal", {}).get(key, 0))
    return {"routes": list(merged.values())}


def _connections(answers: list[Any], expected: int) -> dict[str, Any]:
    connections = sorted((c for a in answers for c in a.get("connections", [])),
                         key=lambda c: c.get("connected_at", 0))
    return {"route": answers[0].get("route"), "count": len(connections),
            "connections": connections}


def _cleared(answers: list[Any], expected: int) -> dict[str, Any]:
    first = dict(answers[0])
    for key in ("cleared", "journal_cleared"):
        if key in first:
            first[key] = _sum([a.get(key) for a in answers])
    return first


def _handshake(answers: list[Any], expected: int) -> dict[str, Any]:
    first = dict(answers[0])
    if isinstance(first.get("handshake"), dict):
        first["handshake"] = dict(first["handshake"])
        for key in ("refusals_left", "resets_left", "hangs_left", "held"):
            if key in first["handshake"]:
                first["handshake"][key] = _sum(
                    [a.get("handshake", {}).get(key) for a in answers])
    return first


_COMBINERS: dict[bytes, Callable[[list[Any], int], dict[str, Any]]] = {
    b"/push": _push,
    b"/clients": _clients,
    b"/healthz": _health,
    b"/journal": _journal,
    b"/journal/find": _journal,
    b"/journal/count": _journal,
    b"/journal/routes": _journal_routes,
    b"/routes": _routes,
    b"/routes/connections": _connections,
    b"/routes/reset": _cleared,
    b"/routes/handshake": _handshake,
}
