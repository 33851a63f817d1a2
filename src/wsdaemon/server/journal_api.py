"""
The admin API's C{/journal}: what clients sent and received, for test
suites to verify.

    GET    /journal?route=&client=&session=&direction=&since=&limit=
    POST   /journal/find    {"route": ..., ..., "match": {"regex": "..."}}
    POST   /journal/count   (the same body; answers only the count)
    GET    /journal/routes  (each route's journal: size, bounds, dropped)
    DELETE /journal?route=  (empty one route's journal, or all)

Filters: C{route}, C{client}, C{session}, C{direction} (C{in}, C{out},
C{open}, C{close}, C{ping}, C{pong}, C{step}: a scripted rule's steps) and
C{since} (entries numbered above it). Every answer has C{last}, a number
above every entry so far: pass it as C{since} later to see only what
happened after; an answer cut at C{limit} has C{next}, to
pass as C{since} for the rest. Matchers are the rules file's:
C{text}, C{regex} (RE2), C{json} (a subset), C{binary}, C{binary_prefix}
(hex).

A query never holds the reactor: it reads a snapshot of the journals a
chunk at a time (L{wsdaemon.connections.journal.Scan}), and all running
queries together use at most L{TURN_BUDGET} of a reactor turn; at most
L{MAX_QUERIES} run at once, and another is answered 503 with C{Retry-After}.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import CooperativeTask, Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from wsdaemon.connections.journal import (
    DIRECTIONS,
    SCAN_CHUNK,
    SCAN_CHUNK_BYTES,
    Journal,
    JournalFilter,
    Scan,
    text_of,
    to_json,
)
from wsdaemon.server.api import (
    ApiResource,
    RequestError,
    check_unicode,
    json_answer,
    path_of,
    reject_unknown,
    request_object,
    whole_number,
)
from wsdaemon.strategies.scripted.matching import Matcher, MatcherError, build_matcher, match

__all__ = ["JournalQueries", "JournalResource", "MAX_LIMIT", "MAX_QUERIES", "TURN_BUDGET"]

_log = Logger(namespace="wsdaemon.admin")

#: The most entries one answer lists (C{limit} defaults to it).
MAX_LIMIT = 10_000
#: Journal queries running at once, at most (more: 503 with Retry-After).
MAX_QUERIES = 4
#: Seconds of a reactor turn that running journal queries take together, at
#: most (give or take one step: L{SCAN_CHUNK} entries).
TURN_BUDGET = 0.005
#: Seconds a refused query is told to wait (C{Retry-After}).
RETRY_AFTER = 1
_SOON = 1e-8
_FILTER_KEYS = ("route", "client", "session", "direction", "since")


def _filters(raw: Mapping[str, Any]) -> tuple[str | None, JournalFilter, int]:
    """
    @return: the route (None: every route), the filter, and the limit.
    @raise RequestError: 400 naming the bad field.
    """
    strings: dict[str, str | None] = {}
    for key in ("route", "client", "session", "direction"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise RequestError(400, f'"{key}" must be a non-empty string')
        if isinstance(value, str):
            check_unicode(key, value)
        strings[key] = value
    if strings["direction"] is not None and strings["direction"] not in DIRECTIONS:
        raise RequestError(400, f'"direction" must be one of {", ".join(DIRECTIONS)}')
    since = whole_number("since", raw.get("since", 0))
    limit = whole_number("limit", raw.get("limit", MAX_LIMIT), MAX_LIMIT)
    wanted = JournalFilter(client=strings["client"], session=strings["session"],
                           direction=strings["direction"], since=since)
    return strings["route"], wanted, limit


def _query(request: Request) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, values in (request.args or {}).items():
        name = key.decode("utf-8", "replace")
        if name not in (*_FILTER_KEYS, "limit"):
            raise RequestError(400, f"unknown parameter {name!r}; expected "
                                    f"{', '.join((*_FILTER_KEYS, 'limit'))}")
        found[name] = values[-1].decode("utf-8", "surrogateescape")
    return found


def _body(request: Request, max_body: int) -> dict[str, Any]:
    data = request_object(request, max_body)
    reject_unknown(data, {*_FILTER_KEYS, "limit", "match"})
    return data


def _matcher(data: Mapping[str, Any]) -> Matcher | None:
    if "match" not in data:
        return None
    table = data["match"]
    if not isinstance(table, dict) or set(table) - {"text", "regex", "json", "binary",
                                                     "binary_prefix"}:
        raise RequestError(400, '"match" must be an object with one of text, regex, json, '
                                "binary, binary_prefix")
    try:
        return build_matcher(table)
    except MatcherError as e:
        raise RequestError(400, f"match: {e.message}") from None


def _predicate(matcher: Matcher | None) -> Callable[[Any], bool] | None:
    """
    @return: whether an entry's message matches (a regex: a search, without
        the groups a rule's reply would use), or None for no matcher.
    """
    if matcher is None:
        return None
    if matcher.kind == "regex":
        search = matcher.regex.search

        def found(entry: Any) -> bool:
            message = text_of(entry)
            return isinstance(message, str) and search(message) is not None

        return found

    def matched(entry: Any) -> bool:
        message = text_of(entry)
        return message is not None and match(matcher, message)[0]

    return matched


class JournalQueries:
    """
    Runs journal queries a step at a time on one cooperator, so that together
    they take at most C{turn_budget} seconds of each reactor turn, and at
    most C{max_running} at once.

    @param clock: schedules the steps; its C{seconds()} measures the budget.
    @param steps_per_turn: steps per turn at most, whatever the time (None:
        the budget alone decides; tests on a L{task.Clock} set it).
    @param chunk: entries per step (L{Scan}).
    @param chunk_bytes: bytes of messages matched per step (L{Scan}).
    """

    def __init__(self, clock: IReactorTime, max_running: int = MAX_QUERIES,
                 turn_budget: float = TURN_BUDGET, steps_per_turn: int | None = None,
                 chunk: int = SCAN_CHUNK, chunk_bytes: int = SCAN_CHUNK_BYTES) -> None:
        self.clock = clock
        self.max_running = max_running
        self.turn_budget = turn_budget
        self.steps_per_turn = steps_per_turn
        self.chunk = chunk
        self.chunk_bytes = chunk_bytes
        #: Queries running now.
        self.running = 0
        # Scheduled as Twisted's own cooperator does: just after now, so
        # that the next turn's I/O comes first on a task.Clock too.
        self._cooperator = Cooperator(terminationPredicateFactory=self._turn,
                                      scheduler=lambda step: clock.callLater(_SOON, step))

    def _turn(self) -> Callable[[], bool]:
        started = self.clock.seconds()
        steps = 0

        def over() -> bool:
            nonlocal steps
            steps += 1
            if self.steps_per_turn is not None and steps >= self.steps_per_turn:
                return True
            return self.clock.seconds() - started >= self.turn_budget

        return over

    def check(self, request: Request) -> None:
        """
        @raise RequestError: 503 (with C{Retry-After}) if C{max_running}
            queries are running.
        """
        if self.running >= self.max_running:
            request.setHeader(b"retry-after", b"%d" % RETRY_AFTER)
            raise RequestError(503, f"{self.running} journal queries are running (at most "
                                    f"{self.max_running} at once); try again")

    def run(self, work: Iterator[None]) -> CooperativeTask[Iterator[None]]:
        """
        @return: C{work}, running (its C{whenDone()} fires once it is done).
        """
        self.running += 1
        task = self._cooperator.cooperate(work)

        def ended(result: object) -> object:
            self.running -= 1
            return result

        task.whenDone().addBoth(ended)
        return task


class _Answer:
    """
    A query's answer, made and written a step at a time: the scan, each
    entry listed encoded to JSON, then the body written in pieces (a long
    listing is as slow to encode as to find, and one copy of megabytes can
    take tens of milliseconds on a loaded machine).
    """

    def __init__(self, request: Request, scan: Scan, mark: int, listing: bool, chunk: int,
                 chunk_bytes: int) -> None:
        self.request = request
        self.scan = scan
        self.mark = mark
        self.listing = listing
        self._chunk, self._chunk_bytes = max(chunk, 1), max(chunk_bytes, 1)

    def steps(self) -> Iterator[None]:
        yield from self.scan.steps()
        parts: list[bytes] = []
        last_seq = self.scan.wanted.since
        size = 0
        for route, entry in self.scan.listed() if self.listing else ():
            part = json.dumps(to_json(entry, route), ensure_ascii=False).encode("utf-8")
            parts.append(part)
            last_seq = entry[0]
            size += len(part)
            if len(parts) % self._chunk == 0 or size >= self._chunk_bytes:
                size = 0
                yield None
        yield from self._written(parts, last_seq)

    def _written(self, parts: list[bytes], last_seq: int) -> Iterator[None]:
        """
        Write the answer as L{json_answer} would, from entries encoded.
        """
        count = self.scan.count
        head = json.dumps({"count": count, "last": self.mark})[:-1].encode("utf-8")
        tail = b"}\n"
        if self.listing:
            head += b', "entries": ['
            tail = b"]" + (b', "next": %d' % last_seq if count > len(parts) else b"") + tail
        size = len(head) + sum(map(len, parts)) + 2 * max(len(parts) - 1, 0) + len(tail)
        request = self.request
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-length", b"%d" % size)
        request.write(head)
        start = 0
        while start < len(parts):
            end, piece = start, 0
            while end < len(parts) and piece < self._chunk_bytes:
                piece += len(parts[end])
                end += 1
            request.write((b", " if start else b"") + b", ".join(parts[start:end]))
            start = end
            yield None
        request.write(tail)


def _reactor() -> IReactorTime:
    from twisted.internet import reactor

    clock: IReactorTime = reactor
    return clock


class JournalResource(ApiResource):
    """
    @param queries: runs the queries (by default on the global reactor, made
        at the first query).
    """

    takes_subpaths = True

    def __init__(self, site: Any, queries: JournalQueries | None = None) -> None:
        super().__init__(site)
        self._queries = queries

    @property
    def queries(self) -> JournalQueries:
        if self._queries is None:
            self._queries = JournalQueries(_reactor())
        return self._queries

    def _journals(self, route: str | None) -> list[Journal]:
        journals: Mapping[str, Journal] = self.admin.daemon.journals()
        if route is None:
            return list(journals.values())
        if route not in journals:
            raise RequestError(404, f"no route {route!r}; routes: {', '.join(sorted(journals))}")
        return [journals[route]]

    def _answer(self, request: Request, raw: Mapping[str, Any], matcher: Matcher | None,
                count_only: bool = False) -> int:
        route, wanted, limit = _filters(raw)
        journals = self._journals(route)
        queries = self.queries
        queries.check(request)
        # The mark and the snapshot in one turn: the entries listed are
        # exactly those numbered up to the mark (a supervisor relies on it).
        mark = self.admin.daemon.journal_mark()
        scan = Scan(journals, wanted, _predicate(matcher), keep=0 if count_only else limit,
                    chunk=queries.chunk, chunk_bytes=queries.chunk_bytes)
        written = _Answer(request, scan, mark, not count_only, queries.chunk,
                          queries.chunk_bytes)
        task = queries.run(written.steps())
        done = gone = False

        def lost(_: Failure) -> None:
            nonlocal gone
            gone = True
            if not done:
                task.stop()  # its slot is free at once

        def answered(_: object) -> None:
            nonlocal done
            done = True
            request.finish()

        def failed(failure: Failure) -> None:
            nonlocal done
            done = True
            if gone:
                return
            _log.failure("admin API: a journal query failed", failure)
            if getattr(request, "startedWriting", False):
                request.loseConnection()  # cut short: the client must not take it whole
                return
            request.write(json_answer(request, 500, {"error": "the journal query failed"}))
            request.finish()

        finished = task.whenDone().addCallbacks(answered, failed)
        finished.addErrback(lambda failure: _log.failure(
            "admin API: answering a journal query failed", failure))
        request.notifyFinish().addErrback(lost)
        return NOT_DONE_YET

    def render_GET(self, request: Request) -> bytes | int:
        self.authorize(request)
        path = path_of(request)
        if path == [b"routes"]:
            journals = self._journals(None)
            return json_answer(request, 200, {"routes": [j.describe() for j in journals]})
        if path:
            raise RequestError(404, "expected /journal, /journal/routes, /journal/find or "
                                    "/journal/count")
        return self._answer(request, _query(request), None)

    def render_POST(self, request: Request) -> int:
        self.authorize(request)
        path = path_of(request)
        if path not in ([b"find"], [b"count"]):
            raise RequestError(404, "POST /journal/find or /journal/count")
        data = _body(request, self.admin.max_body)
        return self._answer(request, data, _matcher(data), count_only=path == [b"count"])

    def render_DELETE(self, request: Request) -> bytes:
        self.authorize(request)
        raw = _query(request)
        if set(raw) - {"route"}:
            raise RequestError(400, "DELETE /journal takes only ?route=")
        cleared = 0
        for journal in self._journals(raw.get("route")):
            cleared += len(journal)
            journal.clear()
        return json_answer(request, 200, {"cleared": cleared})
