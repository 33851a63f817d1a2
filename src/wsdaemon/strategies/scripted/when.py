"""
What a rule sees of the opening handshake: its C{when} condition (the path
below the route, query parameters, headers, subprotocols offered) and the
values templates take from it (C{{path.NAME}}, C{{query.NAME}},
C{{headers.NAME}}).

A connection's handshake is read once, when it opens (L{HandshakeView}); a
rule's condition is then a few dictionary lookups per message, and a rule
without one costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from wsdaemon.records import path_params, path_pattern
from wsdaemon.strategies.scripted.matching import Matcher, MatcherError, build_matcher, match

__all__ = ["WHEN_KEYS", "HandshakeView", "When", "WhenError", "build_when", "names_in",
           "view_of"]

#: The keys of a rule's C{when}.
WHEN_KEYS = ("path", "query", "headers", "subprotocol")


class WhenError(ValueError):
    """
    A C{when} is wrong: C{key} names the offending key.
    """

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class ValueTest:
    """
    One query parameter's or header's condition: present (C{True}), absent
    (C{False}), or a value a matcher (C{text} or C{regex}) accepts.
    """

    present: bool
    matcher: Matcher | None = None

    def accepts(self, value: str | None) -> bool:
        if value is None:
            return not self.present
        if not self.present:
            return False
        return self.matcher is None or match(self.matcher, value)[0]


@dataclass(frozen=True)
class When:
    """
    A rule's condition on its connection's handshake; every part given must
    hold (C{path}: any one pattern; C{subprotocols}: any one offered).
    """

    paths: tuple[tuple[str, ...], ...] = ()
    query: tuple[tuple[str, ValueTest], ...] = ()
    headers: tuple[tuple[str, ValueTest], ...] = ()
    subprotocols: tuple[str, ...] = ()

    def params(self, view: HandshakeView) -> Mapping[str, str] | None:
        """
        @return: None if C{view} fails the condition; else the path's
            placeholders' values (the rule's own pattern's, or the
            connection's).
        """
        found: Mapping[str, str] = view.params
        if self.paths:
            for segments in self.paths:
                params = path_params(segments, view.below)
                if params is not None:
                    found = {**view.params, **params}
                    break
            else:
                return None
        for name, test in self.query:
            if not test.accepts(view.query.get(name)):
                return None
        for name, test in self.headers:
            if not test.accepts(view.headers.get(name)):
                return None
        if self.subprotocols and not any(p in view.subprotocols for p in self.subprotocols):
            return None
        return found


@dataclass(frozen=True)
class HandshakeView:
    """
    One connection's handshake, as rules and templates see it.

    @ivar path: the path the client asked for; C{below}: the part below the
        route's own path (C{/} for the route itself).
    @ivar params: the placeholders of the first C{[handshake] paths}
        pattern it matched.
    """

    path: str = ""
    below: str = "/"
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    subprotocols: tuple[str, ...] = ()
    params: Mapping[str, str] = field(default_factory=dict)
    #: The subprotocol the connection was accepted with ("" for none).
    subprotocol: str = ""

    def value(self, kind: str, name: str) -> str:
        """
        @return: a template's C{{path.NAME}}, C{{query.NAME}} or
            C{{headers.NAME}} (empty when absent).
        """
        if kind == "path":
            return self.params.get(name, "")
        if kind == "query":
            return self.query.get(name, "")
        return self.headers.get(name.lower(), "")


#: A connection with no handshake to show (a test's fake session).
NO_HANDSHAKE = HandshakeView()


def view_of(session: Any, paths: tuple[tuple[str, ...], ...],
            params: Mapping[str, str] | None = None) -> HandshakeView:
    """
    @param paths: the route's C{[handshake] paths}, as segments.
    @param params: replaces the placeholders found (tests).
    @return: what C{session}'s handshake shows the rules.
    """
    request = getattr(session, "handshake", None)
    if request is None:
        return NO_HANDSHAKE
    route = str(getattr(session, "route", "")).rstrip("/")
    path = str(request.path)
    below = (path[len(route):] if route and path.startswith(route) else path) or "/"
    query: dict[str, str] = {}
    for name, value in parse_qsl(str(request.query), keep_blank_values=True):
        query.setdefault(name, value)  # the first of a repeated parameter
    found: Mapping[str, str] = {}
    for segments in paths:
        matched = path_params(segments, below)
        if matched is not None:
            found = matched
            break
    return HandshakeView(path=path, below=below, query=query,
                         headers={str(k).lower(): str(v) for k, v in request.headers.items()},
                         subprotocols=tuple(request.subprotocols),
                         params=params if params is not None else found,
                         subprotocol=str(getattr(request, "subprotocol", None) or ""))


def _value_test(value: Any, key: str, name: str) -> ValueTest:
    if isinstance(value, bool):
        return ValueTest(present=value)
    table = {"text": value} if isinstance(value, str) else value
    if not isinstance(table, dict) or set(table) - {"text", "regex"} or len(table) != 1:
        raise WhenError(key, f"{key}.{name}: expected a value, {{ regex = '...' }}, true "
                             f"(present) or false (absent), got {value!r}")
    try:
        return ValueTest(present=True, matcher=build_matcher(table))
    except MatcherError as e:
        raise WhenError(key, f"{key}.{name}: {e.message}") from None


def _tests(value: Any, key: str, lower: bool) -> tuple[tuple[str, ValueTest], ...]:
    if not isinstance(value, dict) or not value:
        raise WhenError(key, f"{key}: expected a table of name = value, e.g. "
                             f"{key} = {{ {'x-user' if lower else 'room'} = \"ann\" }}")
    return tuple(((name.lower() if lower else name), _value_test(v, key, name))
                 for name, v in value.items())


def build_when(table: Any) -> When:
    """
    @param table: a rule's C{when}: C{path} (a pattern or a list), C{query}
        and C{headers} (tables of name = condition), C{subprotocol} (a name
        or a list: any of them offered).
    @raise WhenError: naming the key and what was expected.
    """
    if not isinstance(table, dict) or not table:
        raise WhenError(None, "when: expected a table with path, query, headers or "
                              "subprotocol, e.g. when = { path = \"/rooms/{room}\" }")
    for key in table:
        if key not in WHEN_KEYS:
            raise WhenError(key, f"when: unknown key {key!r}; expected one of: "
                                 f"{', '.join(WHEN_KEYS)}")
    paths: tuple[tuple[str, ...], ...] = ()
    if "path" in table:
        raw = table["path"]
        names = [raw] if isinstance(raw, str) else raw
        if not isinstance(names, list) or not names:
            raise WhenError("path", "path: expected a path pattern or a list of them, e.g. "
                                    "\"/rooms/{room}\"")
        try:
            paths = tuple(path_pattern(name) for name in names)
        except ValueError as e:
            raise WhenError("path", f"path: {e}") from None
    subprotocols: tuple[str, ...] = ()
    if "subprotocol" in table:
        raw = table["subprotocol"]
        offered = [raw] if isinstance(raw, str) else raw
        if not isinstance(offered, list) or not offered or not all(
                isinstance(n, str) and n for n in offered):
            raise WhenError("subprotocol", "subprotocol: expected a name or a list of names "
                                           "(any of them offered)")
        subprotocols = tuple(offered)
    return When(paths=paths,
                query=_tests(table["query"], "query", False) if "query" in table else (),
                headers=_tests(table["headers"], "headers", True) if "headers" in table
                else (),
                subprotocols=subprotocols)


def names_in(paths: tuple[tuple[str, ...], ...]) -> frozenset[str]:
    """
    @return: the placeholders' names in these patterns.
    """
    return frozenset(s[1:-1] for segments in paths for s in segments
                     if s.startswith("{") and s.endswith("}"))
