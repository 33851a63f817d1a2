"""
Mixing proxying and mocking: a proxy route's C{intercept} file, rules that
match messages in either direction and drop, rewrite, delay, or inject
messages before and after them, or answer the sender in the other side's
place.

The file is TOML, one C{[[intercept]]} table per rule, tried from top to
bottom; the first that matches a message decides what happens to it::

    [[intercept]]
    from = "client"                     # who sent it: client or server
    json = { type = "subscribe" }       # a matcher of rules files (optional)
    replace = '{{"type": "subscribe", "channel": "test-{json.channel}"}}'

    [[intercept]]
    from = "server"
    regex = '^price (\\d+)$'
    delay = 0.5                         # seconds; later messages wait behind it
    before = ["price feed delayed"]
    times = 3                           # the first 3 of each connection

Matchers are those of rules files (C{text}, C{regex}, C{json}, C{json_like},
C{binary}, C{binary_prefix}; none: every message from that side). Actions,
in the order they happen: C{respond} (messages back to the sender), then,
to the other side, C{before}, the message itself (C{replace}d by a
template, or not at all with C{drop = true}), C{after}; C{delay} holds all
of that, and every later message from the same side, so order is kept.
Templates are the rules files' (C{{message}}, C{{session}}, C{{route}},
C{{counter}}, C{{time}}, C{{timestamp}}, C{{match.N}}, C{{json.PATH}}).

Bounds: at most L{MAX_RULES} rules, L{MAX_MESSAGES} messages per action,
L{MAX_DELAY} seconds of delay, and L{MAX_HELD} messages held behind delays
per side of a connection (more: both sides are closed, the client with
1013).
"""

from __future__ import annotations

import json
import tomllib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from wsdaemon.strategies.scripted.lines import TomlLines
from wsdaemon.strategies.scripted.matching import (
    MATCH_KEYS,
    NOT_JSON,
    NOT_PARSED,
    Matcher,
    MatcherError,
    build_matcher,
    match,
)
from wsdaemon.strategies.scripted.template import Scope, Template, TemplateError, parse_json_path

__all__ = ["MAX_DELAY", "MAX_HELD", "MAX_MESSAGES", "MAX_RULES", "Intercept", "InterceptError",
           "InterceptRules", "Interceptor", "load_intercepts", "parse_intercepts"]

#: Rules one file may hold.
MAX_RULES = 1000
#: Messages one action (C{before}, C{after}, C{respond}) may send.
MAX_MESSAGES = 100
#: The longest delay, in seconds.
MAX_DELAY = 300.0
#: Messages of one side of a connection held behind a delay.
MAX_HELD = 1000
#: Bytes an intercept file may have.
MAX_FILE_BYTES = 1024 * 1024

SIDES = ("client", "server")
_ACTIONS = ("before", "replace", "drop", "after", "respond", "delay")
_KEYS = frozenset({"from", "times", *_ACTIONS, *MATCH_KEYS})
#: Placeholders an intercept's template may use (no handshake, no ticker).
_NOT_HERE = ("path", "query.", "headers.", "tick", "subprotocol")


class InterceptError(ValueError):
    """
    An intercept file is wrong: C{str()} names the file, the line and why.

    @ivar path: the file. @ivar line: the line (None: the whole file).
    @ivar why: what was expected.
    """

    def __init__(self, path: Path, line: int | None, why: str) -> None:
        super().__init__(f"{path}:{line}: {why}" if line is not None else f"{path}: {why}")
        self.path = path
        self.line = line
        self.why = why


@dataclass(frozen=True)
class Intercept:
    """
    One C{[[intercept]]} rule.

    @ivar side: who sent the messages it matches (C{client} or C{server}).
    @ivar matcher: which (None: every message from that side).
    @ivar replace: what the message is sent as (None: as it is).
    @ivar times: how many matching messages of a connection it takes (0:
        every one); past that the next rule is tried.
    """

    index: int
    line: int | None
    side: str
    matcher: Matcher | None
    before: tuple[Template, ...] = ()
    replace: Template | None = None
    drop: bool = False
    after: tuple[Template, ...] = ()
    respond: tuple[Template, ...] = ()
    delay: float = 0.0
    times: int = 0

    @property
    def name(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return f"intercept {self.index + 1}{where}"


@dataclass(frozen=True)
class InterceptRules:
    """A file's rules, by the side whose messages they match."""

    source: Path
    client: tuple[Intercept, ...]
    server: tuple[Intercept, ...]

    def of(self, side: str) -> tuple[Intercept, ...]:
        return self.client if side == "client" else self.server


def load_intercepts(path: Path) -> InterceptRules:
    """
    @raise InterceptError: the file cannot be read or is wrong.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InterceptError(path, None, f"cannot read: {e.strerror or e}") from None
    return parse_intercepts(raw, path)


def parse_intercepts(raw: bytes, path: Path) -> InterceptRules:
    """
    @raise InterceptError: naming C{path}, the line and what was expected.
    """
    if len(raw) > MAX_FILE_BYTES:
        raise InterceptError(path, None, f"more than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
        document = tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise InterceptError(path, None, f"not UTF-8 (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise InterceptError(path, getattr(e, "lineno", None), f"not TOML: {e}") from None
    lines = TomlLines(text)
    extra = sorted(set(document) - {"intercept"})
    if extra:
        raise InterceptError(path, lines.line_of((), extra[0]) or 1,
                             f"unknown table or key {extra[0]!r}; an intercept file holds "
                             "[[intercept]] tables")
    tables = document.get("intercept", [])
    if not isinstance(tables, list) or not tables:
        raise InterceptError(path, None, "expected at least one [[intercept]] table")
    if len(tables) > MAX_RULES:
        raise InterceptError(path, None, f"more than {MAX_RULES} [[intercept]] tables")
    rules = [_rule(table, index, path, lines) for index, table in enumerate(tables)]
    return InterceptRules(path, tuple(r for r in rules if r.side == "client"),
                          tuple(r for r in rules if r.side == "server"))


def _rule(table: Any, index: int, path: Path, lines: TomlLines) -> Intercept:
    where = ("intercept", index)

    def error(key: str | None, why: str) -> InterceptError:
        line = lines.line_of(where, key) or 1
        return InterceptError(path, line, f"[[intercept]] {index + 1}: "
                              + (f"{key}: " if key else "") + why)

    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise error(unknown[0], f"unknown key; expected from, times, one matcher "
                                f"({', '.join(MATCH_KEYS)}) and actions ({', '.join(_ACTIONS)})")
    side = table.get("from")
    if side not in SIDES:
        raise error("from", "expected \"client\" (messages to the upstream) or \"server\" "
                            "(messages to the client)")
    matcher = None
    if any(key in table for key in MATCH_KEYS):
        try:
            matcher = build_matcher(table)
        except MatcherError as e:
            raise error(e.key, e.message) from None
    scope = Scope(groups=_groups(matcher), json=matcher is not None and matcher.kind == "json")

    def template(key: str, value: Any) -> Template:
        if not isinstance(value, str):
            raise error(key, f"expected a text (a template), got {type(value).__name__}")
        try:
            compiled = Template.compile(value, scope)
        except TemplateError as e:
            raise error(key, str(e)) from None
        for name in compiled.names:
            if name.startswith(_NOT_HERE):
                raise error(key, f"{{{name}}} is not available in an intercept's template "
                                 "(the message's own values only)")
        return compiled

    def messages(key: str) -> tuple[Template, ...]:
        value = table.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or len(value) > MAX_MESSAGES:
            raise error(key, f"expected a text or a list of at most {MAX_MESSAGES} texts")
        return tuple(template(key, item) for item in value)

    drop = table.get("drop", False)
    if not isinstance(drop, bool):
        raise error("drop", "expected true or false")
    if drop and "replace" in table:
        raise error("replace", "a dropped message is not sent: replace or drop, not both")
    delay = table.get("delay", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) \
            or not 0 <= delay <= MAX_DELAY:
        raise error("delay", f"expected seconds from 0 to {MAX_DELAY:g}")
    times = table.get("times", 0)
    if isinstance(times, bool) or not isinstance(times, int) or times < 0:
        raise error("times", "expected a count (0: every matching message)")
    rule = Intercept(
        index=index, line=lines.line_of(where), side=side, matcher=matcher,
        before=messages("before"),
        replace=template("replace", table["replace"]) if "replace" in table else None,
        drop=drop, after=messages("after"), respond=messages("respond"), delay=float(delay),
        times=times)
    if not (rule.before or rule.replace or rule.drop or rule.after or rule.respond
            or rule.delay):
        raise error(None, f"does nothing: give at least one of {', '.join(_ACTIONS)}")
    return rule


def _groups(matcher: Matcher | None) -> tuple[str, ...] | None:
    if matcher is None or matcher.kind != "regex":
        return None
    regex = matcher.regex
    return (*(str(i) for i in range(regex.groups + 1)), *regex.groupindex)


def _field(document: Any, path: str) -> str:
    value = document
    for segment in parse_json_path(path):
        if isinstance(segment, int) and isinstance(value, list) and segment < len(value):
            value = value[segment]
        elif isinstance(value, dict) and str(segment) in value:
            value = value[str(segment)]
        else:
            return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class Interceptor:
    """
    One proxied connection's interception: each message from either side
    goes through L{handle}, which sends what the first matching rule says
    (or the message as it is).

    @param send: per side, what sends a message to that side (C{client}:
        the client's connection; C{server}: the upstream).
    @param overflow: called once when a side holds more than L{MAX_HELD}
        messages behind a delay (the connection should be closed).
    """

    def __init__(self, rules: InterceptRules, clock: IReactorTime, session: str, route: str,
                 send: Mapping[str, Callable[[str | bytes], object]],
                 overflow: Callable[[str], None]) -> None:
        self._rules = rules
        self._clock = clock
        self._session = session
        self._route = route
        self._send = send
        self._overflow = overflow
        self._counters = {side: 0 for side in SIDES}
        self._fired: dict[int, int] = {}
        self._held: dict[str, deque[str | bytes]] = {side: deque() for side in SIDES}
        self._waiting: dict[str, IDelayedCall | None] = {side: None for side in SIDES}
        self._stopped = False

    def handle(self, side: str, message: str | bytes) -> None:
        """C{message} came from C{side}: act on it now, or after what waits."""
        if self._stopped:
            return
        if self._waiting[side] is not None:
            held = self._held[side]
            if len(held) >= MAX_HELD:
                self.stop()
                self._overflow(side)
                return
            held.append(message)
            return
        self._take(side, message)

    def stop(self) -> None:
        """The connection is closing: what waits is dropped with it."""
        self._stopped = True
        for side in SIDES:
            call = self._waiting[side]
            if call is not None and call.active():
                call.cancel()
            self._waiting[side] = None
            self._held[side].clear()

    def _take(self, side: str, message: str | bytes) -> None:
        self._counters[side] += 1
        document: Any = NOT_PARSED
        for rule in self._rules.of(side):
            if rule.times and self._fired.get(rule.index, 0) >= rule.times:
                continue
            groups = None
            if rule.matcher is not None:
                matched, groups, document = match(rule.matcher, message, document)
                if not matched:
                    continue
            if rule.times:
                self._fired[rule.index] = self._fired.get(rule.index, 0) + 1
            values = _Values(self, side, message, groups,
                             document if rule.matcher is not None
                             and rule.matcher.kind == "json" else NOT_JSON)
            if rule.delay:
                self._waiting[side] = self._clock.callLater(rule.delay, self._delayed, side,
                                                            rule, message, values)
            else:
                self._act(side, rule, message, values)
            return
        self._send[_other(side)](message)

    def _delayed(self, side: str, rule: Intercept, message: str | bytes,
                 values: _Values) -> None:
        self._waiting[side] = None
        self._act(side, rule, message, values)
        held = self._held[side]
        while held and self._waiting[side] is None and not self._stopped:
            self._take(side, held.popleft())

    def _act(self, side: str, rule: Intercept, message: str | bytes, values: _Values) -> None:
        back, on = self._send[side], self._send[_other(side)]
        for template in rule.respond:
            back(template.render(values))
        for template in rule.before:
            on(template.render(values))
        if not rule.drop:
            on(rule.replace.render(values) if rule.replace is not None else message)
        for template in rule.after:
            on(template.render(values))


def _other(side: str) -> str:
    return "server" if side == "client" else "client"


class _Values:
    """What an intercept's template may use, computed only when asked for."""

    __slots__ = ("interceptor", "side", "message", "groups", "document")

    def __init__(self, interceptor: Interceptor, side: str, message: str | bytes,
                 groups: Mapping[str, str | None] | None, document: Any) -> None:
        self.interceptor = interceptor
        self.side = side
        self.message = message
        self.groups = groups
        self.document = document

    def __call__(self, name: str) -> str:
        owner = self.interceptor
        if name == "message":
            message = self.message
            return message.hex() if isinstance(message, bytes) else message
        if name == "session":
            return owner._session
        if name == "route":
            return owner._route
        if name == "counter":
            return str(owner._counters[self.side])
        now = owner._clock.seconds()
        if name == "time":
            return datetime.fromtimestamp(now, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
        if name == "timestamp":
            return f"{now:.3f}"
        kind, _, rest = name.partition(".")
        if kind == "match" and self.groups is not None:
            return self.groups.get(rest) or ""
        if kind == "json" and self.document is not NOT_JSON:
            return _field(self.document, rest)
        return ""
