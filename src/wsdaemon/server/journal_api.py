"""
The admin API's C{/journal}: what clients sent and received, for test
suites to verify.

    GET    /journal?route=&client=&session=&direction=&since=&limit=
    POST   /journal/find    {"route": ..., ..., "match": {"regex": "..."}}
    POST   /journal/count   (the same body; answers only the count)
    GET    /journal/routes  (each route's journal: size, bounds, dropped)
    DELETE /journal?route=  (empty one route's journal, or all)

Filters: C{route}, C{client}, C{session}, C{direction} (C{in}, C{out},
C{open}, C{close}) and C{since} (entries numbered above it). Every answer
has C{last}, a number above every entry so far: pass it as C{since} later to
see only what happened after; an answer cut at C{limit} has C{next}, to
pass as C{since} for the rest. Matchers are the rules file's:
C{text}, C{regex} (RE2), C{json} (a subset), C{binary}, C{binary_prefix}
(hex).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.web.server import Request

from wsdaemon.connections.journal import (
    DIRECTIONS,
    Journal,
    JournalFilter,
    merged,
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
)
from wsdaemon.strategies.scripted.matching import Matcher, MatcherError, build_matcher, match

__all__ = ["JournalResource", "MAX_LIMIT"]

#: The most entries one answer lists (C{limit} defaults to it).
MAX_LIMIT = 10_000
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
    numbers = {}
    for key, default, high in (("since", 0, None), ("limit", MAX_LIMIT, MAX_LIMIT)):
        value = raw.get(key, default)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or (
                high is not None and value > high):
            upto = f" to {high}" if high is not None else " or more"
            raise RequestError(400, f'"{key}" must be a whole number from 0{upto}')
        numbers[key] = value
    wanted = JournalFilter(client=strings["client"], session=strings["session"],
                           direction=strings["direction"], since=numbers["since"])
    return strings["route"], wanted, numbers["limit"]


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


def _matches(matcher: Matcher, entry: Any) -> bool:
    message = text_of(entry)
    return message is not None and match(matcher, message)[0]


class JournalResource(ApiResource):
    takes_subpaths = True

    def _journals(self, route: str | None) -> list[Journal]:
        journals: Mapping[str, Journal] = self.admin.daemon.journals()
        if route is None:
            return list(journals.values())
        if route not in journals:
            raise RequestError(404, f"no route {route!r}; routes: {', '.join(sorted(journals))}")
        return [journals[route]]

    def _answer(self, request: Request, raw: Mapping[str, Any], matcher: Matcher | None,
                count_only: bool = False) -> bytes:
        route, wanted, limit = _filters(raw)
        mark = self.admin.daemon.journal_mark()
        entries: list[dict[str, Any]] = []
        count = 0
        for journal, entry in merged(self._journals(route), wanted):
            if matcher is not None and not _matches(matcher, entry):
                continue
            count += 1
            if not count_only and len(entries) < limit:
                entries.append(to_json(entry, journal.route))
        answer: dict[str, Any] = {"count": count, "last": mark}
        if not count_only:
            answer["entries"] = entries
            if count > len(entries):
                answer["next"] = entries[-1]["seq"] if entries else wanted.since
        return json_answer(request, 200, answer)

    def render_GET(self, request: Request) -> bytes:
        self.authorize(request)
        path = path_of(request)
        if path == [b"routes"]:
            journals = self._journals(None)
            return json_answer(request, 200, {"routes": [j.describe() for j in journals]})
        if path:
            raise RequestError(404, "expected /journal, /journal/routes, /journal/find or "
                                    "/journal/count")
        return self._answer(request, _query(request), None)

    def render_POST(self, request: Request) -> bytes:
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
