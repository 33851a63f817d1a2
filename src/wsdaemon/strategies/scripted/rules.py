"""
Loading a rules file (TOML) into immutable, fully checked rules.

Everything that can be wrong with a rules file is found here, with the file
and line: a bad regex, an unknown placeholder, a bad JSON path, a bad delay,
an unknown key, a ticker stopped that no rule starts. At message time
nothing is left to fail but the client's own message not matching.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wsdaemon.records import (
    MAX_FAULT_SECONDS,
    MAX_FRAGMENTS,
    SENDABLE_CLOSE_CODES,
    SENDABLE_CLOSE_CODES_TEXT,
    HandshakePlan,
    check_plan,
    path_pattern,
)
from wsdaemon.spelling import did_you_mean
from wsdaemon.strategies.scripted.bot import BOT_ONLY, handoff_reason, refused_in_bot
from wsdaemon.strategies.scripted.lines import TablePath, TomlLines
from wsdaemon.strategies.scripted.matching import (
    MATCH_KEYS,
    Matcher,
    MatcherError,
    build_matcher,
)
from wsdaemon.strategies.scripted.nesting import MAX_NESTING, too_deep, too_deep_line
from wsdaemon.strategies.scripted.template import Scope, Template, TemplateError
from wsdaemon.strategies.scripted.when import When, WhenError, build_when, names_in

__all__ = [
    "EXPECT_WITHIN", "INITIAL_STATE", "MAX_STATE_LENGTH", "MAX_STEPS", "Close", "Matcher",
    "Outgoing", "Rule", "RuleSet", "RulesError", "Step", "Ticker", "load_rules", "parse_rules",
]



_MAX_DELAY = 24 * 3600.0
_MIN_TICK = 0.01

_MESSAGE_KEYS = {"text", "hex", "base64"}
_SEND_KEYS = _MESSAGE_KEYS | {"delay", "fragments"}
_TICKER_KEYS = _MESSAGE_KEYS | {"name", "every", "times"}
_MATCH_KEYS = MATCH_KEYS
_FAULT_KEYS = {"drop", "pause_reading", "stall_replies", "fragments", "ping"}
_ACTION_KEYS = {"reply", "send", "once", "cycle", "close", "start_ticker", "stop_ticker",
                "broadcast", "steps", "fail_close", BOT_ONLY, *_FAULT_KEYS}
_STEP_KEYS = {"send", "delay", "expect", "within", "close"}
#: How long an expectation waits by default, in seconds.
EXPECT_WITHIN = 5.0
#: The most steps one rule may hold.
MAX_STEPS = 100
_SCENARIO_KEYS = {"scenario", "when_state", "set_state"}
_RULE_KEYS = {"name", "nth", "when", *_MATCH_KEYS, *_SCENARIO_KEYS} | _ACTION_KEYS
_TOP_KEYS = {"greeting", "rule", "default", "handshake"}
_HANDSHAKE_KEYS = {"subprotocols", "require_subprotocol", "refuse_next", "refuse_status",
                   "refuse_headers", "reset_next", "hang_next", "delay", "paths"}
#: A ping's default wait for its pong, in seconds.
PING_TIMEOUT = 10.0
#: Every scenario's state when the rules are loaded, replaced or reset (WireMock's).
INITIAL_STATE = "Started"
#: The longest scenario name or state, in characters.
MAX_STATE_LENGTH = 200


class RulesError(ValueError):
    """
    The rules file is wrong at C{line} (None when no line can be named).
    """

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class Outgoing:
    """
    One message to send: a text template or fixed binary data.

    @ivar delay: seconds to wait after the previous message of the same
        reply (or after the trigger, for the first).
    """

    template: Template | None
    data: bytes | None
    delay: float = 0.0
    #: Sent as up to this many frames.
    fragments: int = 1
    #: A greeting's condition on the handshake (None: every connection).
    when: When | None = None


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True)
class Ping:
    """
    A ping sent after a rule's messages; no pong within C{timeout}: the
    connection is dropped.
    """

    payload: bytes
    timeout: float


@dataclass(frozen=True)
class Step:
    """
    One step of a sequence: send a message (after C{delay}), expect the
    client's next message to match within C{within} seconds, or close.
    """

    line: int | None
    send: Outgoing | None = None
    expect: Matcher | None = None
    expect_text: str = ""
    within: float = EXPECT_WITHIN
    close: Close | None = None


@dataclass(frozen=True)
class Ticker:
    """
    A message sent every C{every} seconds until stopped, C{times} sent, or
    the connection closed.
    """

    name: str
    every: float
    message: Outgoing
    times: int | None


@dataclass(frozen=True)
class Rule:
    """
    What to do when a message matches (or, for the default rule, when
    nothing does).

    @ivar index: the rule's position in the file (the default rule: -1).
    """

    index: int
    name: str
    line: int | None
    matcher: Matcher | None
    messages: tuple[Outgoing, ...]
    once: bool
    cycle: bool
    close: Close | None
    start_ticker: Ticker | None
    stop_tickers: tuple[str, ...]
    #: Faults on purpose (see L{wsdaemon.connections.faults}).
    #: Matches only the connection's nth message (1-based; 0: any).
    nth: int = 0
    drop: bool = False
    pause_reading: float = 0.0
    stall_replies: float = 0.0
    ping: Ping | None = None
    #: The scenario the rule belongs to (None: none); it matches only while
    #: the scenario is in C{when_state} (None: in any), and moves it to
    #: C{set_state} when it answers.
    scenario: str | None = None
    when_state: str | None = None
    set_state: str | None = None
    #: The rule's messages go to every open connection of the route.
    broadcast: bool = False
    #: A sequence run on the connection (send, expect, close).
    steps: tuple[Step, ...] = ()
    #: How a connection whose sequence failed is closed (None: left open).
    fail_close: Close | None = None
    #: The rule's condition on its connection's handshake (None: any).
    when: When | None = None
    #: A bot's rule hands the conversation to the operators after its
    #: messages, saying why (None: it does not; L{wsdaemon.support.bot}).
    handoff: str | None = None

    @property
    def immediate(self) -> bool:
        """
        True when the whole answer is sent at once and nothing else happens:
        the strategy can then return it as a plain value.
        """
        return (
            self.close is None and self.start_ticker is None and not self.stop_tickers
            and not self.cycle and all(m.delay == 0 and m.fragments == 1 for m in self.messages)
            and not self.drop and not self.pause_reading and not self.stall_replies
            and self.ping is None and not self.broadcast and not self.steps
        )


@dataclass(frozen=True)
class RuleSet:
    path: Path
    greetings: tuple[Outgoing, ...]
    rules: tuple[Rule, ...]
    default: Rule | None
    handshake: HandshakePlan | None = None
    #: The scenarios the rules name, each starting in L{INITIAL_STATE}.
    scenarios: tuple[str, ...] = ()
    #: C{[handshake] paths}, as segments (L{wsdaemon.records.path_pattern}).
    paths: tuple[tuple[str, ...], ...] = ()

    @property
    def uses_json(self) -> bool:
        return any(r.matcher is not None and r.matcher.kind == "json" for r in self.rules)


_NOT_A_BOT = ("handoff: only a bot's rules hand a conversation over to operators (route "
              "option bot = FILE on an operator route, [operator] model = conversations)")


class _Loader:
    def __init__(self, path: Path, text: str, bot: bool = False) -> None:
        self.path = path
        self.lines = TomlLines(text)
        #: A bot's rules (L{wsdaemon.strategies.scripted.bot}).
        self.bot = bot
        #: The placeholders of [handshake] paths (templates may use them).
        self.path_names: frozenset[str] = frozenset()

    def fail(self, message: str, table: TablePath, key: str | None = None) -> RulesError:
        return RulesError(message, self.lines.line_of(table, key))

    def line_of_path(self, path: tuple[str | int, ...]) -> int | None:
        """
        @return: the line of the deepest key on C{path} the file names.
        """
        for end in range(len(path), 0, -1):
            key = path[end - 1]
            if isinstance(key, str):
                line = self.lines.line_of(path[:end - 1], key)
                if line is not None:
                    return line
        return None

    def check_bot(self, table: Any, where: TablePath, kind: str) -> None:
        """A bot's file: refuse what means nothing in a conversation."""
        if not self.bot:
            return
        found = refused_in_bot(table, kind)
        if found is not None:
            raise self.fail(found[1], where, found[0])
        sends = table.get("send") if kind == "rule" and isinstance(table, dict) else None
        for i, item in enumerate(sends if isinstance(sends, list) else ()):
            self.check_bot(item, where + ("send", i), "message")

    def handoff(self, table: Mapping[str, Any], where: TablePath, name: str) -> str | None:
        if BOT_ONLY not in table:
            return None
        if not self.bot:
            raise self.fail(_NOT_A_BOT, where, BOT_ONLY)
        try:
            return handoff_reason(table[BOT_ONLY], name)
        except ValueError as e:
            raise self.fail(str(e), where, BOT_ONLY) from None

    def check_keys(self, table: Mapping[str, Any], allowed: set[str], where: TablePath,
                   what: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(f"unknown key {key!r} in {what}{did_you_mean(key, allowed)}; "
                                f"expected one of: {', '.join(sorted(allowed))}", where, key)

    # -- values --------------------------------------------------------------

    def number(self, value: Any, where: TablePath, key: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise self.fail(f"{key}: expected a number of seconds, got {value!r}", where, key)
        if not low <= value <= high:
            raise self.fail(
                f"{key}: expected seconds between {low:g} and {high:g}, got {value!r}", where, key
            )
        return float(value)

    def flag(self, table: Mapping[str, Any], key: str, where: TablePath) -> bool:
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(f"{key}: expected true or false, got {value!r}", where, key)
        return value

    def string(self, value: Any, where: TablePath, key: str) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{key}: expected a string, got {value!r}", where, key)
        return value

    def template(self, value: Any, where: TablePath, key: str, scope: Scope) -> Template:
        try:
            return Template.compile(self.string(value, where, key), scope)
        except TemplateError as e:
            raise self.fail(f"{key}: {e}", where, key) from None

    def message(self, table: Mapping[str, Any], where: TablePath, scope: Scope,
                delay: float = 0.0) -> Outgoing:
        given = [k for k in ("text", "hex", "base64") if k in table]
        if len(given) != 1:
            raise self.fail(
                "expected exactly one of text, hex or base64 for the message"
                + (f", got {', '.join(given)}" if given else ""),
                where, given[-1] if given else None,
            )
        key = given[0]
        if key == "text":
            return Outgoing(template=self.template(table[key], where, key, scope), data=None,
                            delay=delay)
        raw = self.string(table[key], where, key)
        try:
            if key == "hex":
                data = bytes.fromhex(raw)
            else:
                data = base64.b64decode(raw, validate=True)
        except (ValueError, binascii.Error):
            raise self.fail(f"{key}: not valid {key}: {raw!r}", where, key) from None
        return Outgoing(template=None, data=data, delay=delay)

    def send_item(self, table: Any, where: TablePath, scope: Scope, what: str) -> Outgoing:
        if not isinstance(table, dict):
            raise self.fail(f"expected a table for {what}", where)
        self.check_keys(table, _SEND_KEYS, where, what)
        delay = 0.0
        if "delay" in table:
            delay = self.number(table["delay"], where, "delay", 0.0, _MAX_DELAY)
        message = self.message(table, where, scope, delay)
        if "fragments" in table:
            message = replace(message, fragments=self.fragments(table["fragments"], where))
        return message

    def nth(self, table: Mapping[str, Any], where: TablePath) -> int:
        value = table.get("nth", 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f"nth: expected the message's number on its connection (1 for "
                            f"the first), got {value!r}", where, "nth")
        return value

    def fragments(self, value: Any, where: TablePath) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not \
                1 <= value <= MAX_FRAGMENTS:
            raise self.fail(f"fragments: expected a whole number of frames from 1 to "
                            f"{MAX_FRAGMENTS}, got {value!r}", where, "fragments")
        return value

    def ping(self, value: Any, where: TablePath) -> Ping:
        timeout: Any = PING_TIMEOUT
        if isinstance(value, dict):
            self.check_keys(value, {"payload", "timeout"}, where, "ping")
            payload, timeout = value.get("payload", ""), value.get("timeout", PING_TIMEOUT)
        else:
            payload = value
        payload = self.string(payload, where, "ping").encode("utf-8")
        if len(payload) > 125:
            raise self.fail("ping: the payload may be at most 125 bytes (RFC 6455)", where,
                            "ping")
        seconds = self.number(timeout, where, "ping", 0.01, MAX_FAULT_SECONDS)
        return Ping(payload=payload, timeout=seconds)

    def handshake(self, value: Any) -> HandshakePlan:
        where: TablePath = ("handshake",)
        if not isinstance(value, dict):
            raise self.fail("expected a table for [handshake]", ())
        self.check_keys(value, _HANDSHAKE_KEYS, where, "[handshake]")
        found: dict[str, Any] = {}
        if "subprotocols" in value:
            names = value["subprotocols"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise self.fail("subprotocols: expected a list of names", where, "subprotocols")
            found["subprotocols"] = tuple(names)
        if "require_subprotocol" in value:
            found["require_subprotocol"] = self.flag(value, "require_subprotocol", where)
        for key in ("refuse_next", "reset_next", "hang_next"):
            if key in value:
                count = value[key]
                if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                    raise self.fail(f"{key}: expected a whole number >= 0, got {count!r}",
                                    where, key)
                found[key] = count
        if "delay" in value:
            found["delay"] = self.number(value["delay"], where, "delay", 0.0,
                                         MAX_FAULT_SECONDS)
        if "paths" in value:
            found["paths"] = self.paths(value["paths"], where, "paths")
        if "refuse_status" in value:
            status = value["refuse_status"]
            if isinstance(status, bool) or not isinstance(status, int):
                raise self.fail(f"refuse_status: expected an HTTP status, got {status!r}",
                                where, "refuse_status")
            found["refuse_status"] = status
        if "refuse_headers" in value:
            headers = value["refuse_headers"]
            if not isinstance(headers, dict) or not all(
                    isinstance(v, str) for v in headers.values()):
                raise self.fail("refuse_headers: expected a table of name = \"value\"",
                                where, "refuse_headers")
            found["refuse_headers"] = tuple(headers.items())
        plan = HandshakePlan(**found)
        try:
            check_plan(plan)
        except ValueError as e:
            raise self.fail(str(e), where) from None
        return plan

    def paths(self, value: Any, where: TablePath, key: str) -> tuple[str, ...]:
        """
        @return: path patterns (C{"/rooms/{room}"} or a list of them), checked.
        """
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(
                isinstance(n, str) for n in names):
            raise self.fail(f"{key}: expected a path pattern or a list of them, e.g. "
                            "[\"/\", \"/rooms/{room}\"]", where, key)
        for name in names:
            try:
                path_pattern(name)
            except ValueError as e:
                raise self.fail(f"{key}: {e}", where, key) from None
        return tuple(names)

    # -- parts of a rule -----------------------------------------------------

    def when(self, table: Mapping[str, Any], where: TablePath) -> When | None:
        """
        @return: a rule's or greeting's condition on the handshake, if any.
        """
        if "when" not in table:
            return None
        try:
            return build_when(table["when"])
        except WhenError as e:
            inner = self.lines.line_of(where + ("when",), e.key)
            line = self.lines.line_of(where, "when") if inner == self.lines.line_of(where) \
                else inner
            raise RulesError(e.message, line) from None

    def matcher(self, table: Mapping[str, Any], where: TablePath) -> tuple[Matcher | None, Scope]:
        if "when" in table and not any(k in table for k in _MATCH_KEYS):
            return None, Scope()  # every message of the connections the condition admits
        try:
            matcher = build_matcher(table)
        except MatcherError as e:
            raise self.fail(e.message, where, e.key) from None
        if matcher.kind == "regex":
            pattern = matcher.regex
            groups = {str(n) for n in range(pattern.groups + 1)} | set(pattern.groupindex)
            return matcher, Scope(groups=groups)
        if matcher.kind == "json":
            return matcher, Scope(json=True)
        return matcher, Scope()

    def messages(self, table: Mapping[str, Any], where: TablePath,
                 scope: Scope) -> tuple[Outgoing, ...]:
        if "reply" in table and "send" in table:
            raise self.fail("use either reply (text shorthand) or [[...send]] tables, not both",
                            where, "send")
        if "reply" in table:
            reply = table["reply"]
            items = reply if isinstance(reply, list) else [reply]
            if not items:
                raise self.fail("reply: expected a string or a non-empty list of strings",
                                where, "reply")
            return tuple(Outgoing(template=self.template(item, where, "reply", scope), data=None)
                         for item in items)
        if "send" in table:
            sends = table["send"]
            if not isinstance(sends, list) or not sends:
                raise self.fail("send: expected [[send]] tables", where, "send")
            return tuple(self.send_item(item, where + ("send", i), scope, "[[send]]")
                         for i, item in enumerate(sends))
        return ()

    def close(self, value: Any, where: TablePath, key: str = "close") -> Close:
        code: Any
        if isinstance(value, int) and not isinstance(value, bool):
            code, reason = value, ""
        elif isinstance(value, dict):
            self.check_keys(value, {"code", "reason"}, where, key)
            code, reason = value.get("code"), value.get("reason", "")
        else:
            raise self.fail(f"{key}: expected a close code or {{ code = N, reason = \"...\" }}",
                            where, key)
        if isinstance(code, bool) or not isinstance(code, int) or code not in SENDABLE_CLOSE_CODES:
            raise self.fail(f"{key}: expected code {SENDABLE_CLOSE_CODES_TEXT}, got {code!r}",
                            where, key)
        reason = self.string(reason, where, key)
        if len(reason.encode("utf-8")) > 123:
            raise self.fail(f"{key}: the reason may be at most 123 bytes of UTF-8", where, key)
        return Close(code=code, reason=reason)

    def steps(self, table: Mapping[str, Any], where: TablePath,
              scope: Scope) -> tuple[Step, ...]:
        if "steps" not in table:
            if "fail_close" in table:
                raise self.fail("fail_close: only a rule with steps can fail", where,
                                "fail_close")
            return ()
        for key in ("reply", "send", "close", "drop", "cycle", "broadcast"):
            if key in table:
                raise self.fail(f"steps: a rule with steps says everything in them; {key} "
                                "goes in a step or on another rule", where, "steps")
        raw = table["steps"]
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_STEPS:
            raise self.fail(f"steps: expected a list of 1 to {MAX_STEPS} steps, e.g. "
                            "[{ send = \"hi\" }, { expect = \"ack\", within = 2 }]",
                            where, "steps")
        line = self.lines.line_of(where, "steps")
        return tuple(self.step(item, where, scope, n + 1, line) for n, item in enumerate(raw))

    def step(self, value: Any, where: TablePath, scope: Scope, number: int,
             line: int | None) -> Step:
        what = f"steps[{number}]"

        def fail(message: str) -> RulesError:
            return RulesError(f"{what}: {message}", line)

        if not isinstance(value, dict):
            raise fail("expected a table: { send = ... }, { expect = ... } or { close = ... }")
        unknown = set(value) - _STEP_KEYS
        if unknown:
            raise fail(f"unknown key {sorted(unknown)[0]!r}; expected one of: "
                       f"{', '.join(sorted(_STEP_KEYS))}")
        given = [k for k in ("send", "expect", "close") if k in value]
        if len(given) != 1:
            raise fail("expected exactly one of send, expect or close")
        if "delay" in value and "send" not in value:
            raise fail("delay: only a send step waits before it goes")
        if "within" in value and "expect" not in value:
            raise fail("within: only an expect step has a time to wait")
        try:
            if "send" in value:
                delay = self.number(value.get("delay", 0.0), where, "delay", 0.0, _MAX_DELAY)
                template = self.template(value["send"], where, "send", scope)
                return Step(line=line, send=Outgoing(template=template, data=None, delay=delay))
            if "close" in value:
                return Step(line=line, close=self.close(value["close"], where))
            within = self.number(value.get("within", EXPECT_WITHIN), where, "within", 0.01,
                                 MAX_FAULT_SECONDS)
        except RulesError as e:
            raise fail(e.message) from None
        expect = value["expect"]
        table = {"text": expect} if isinstance(expect, str) else expect
        if not isinstance(table, dict):
            raise fail("expect: expected a text or one matcher, e.g. { regex = '^ack' }")
        try:
            matcher = build_matcher(table)
        except MatcherError as e:
            raise fail(f"expect: {e.message}") from None
        shown = ", ".join(f"{k} = '{v}'" if isinstance(v, str) else f"{k} = {v!r}"
                          for k, v in table.items())
        return Step(line=line, expect=matcher, expect_text=shown, within=within)

    def ticker(self, value: Any, where: TablePath, scope: Scope) -> Ticker:
        if not isinstance(value, dict):
            raise self.fail("start_ticker: expected a table with name, every and a message",
                            where, "start_ticker")
        inner = where + ("start_ticker",)
        self.check_keys(value, _TICKER_KEYS, inner, "start_ticker")
        if "name" not in value or "every" not in value:
            raise self.fail("start_ticker: needs name and every", inner)
        name = self.string(value["name"], inner, "name")
        every = self.number(value["every"], inner, "every", _MIN_TICK, _MAX_DELAY)
        times = value.get("times")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int)
                                  or times < 1):
            raise self.fail(f"times: expected a whole number >= 1, got {times!r}", inner, "times")
        tick_scope = replace(scope, tick=True)
        return Ticker(name=name, every=every, message=self.message(value, inner, tick_scope),
                      times=times)

    def stop_tickers(self, value: Any, where: TablePath) -> tuple[str, ...]:
        names = value if isinstance(value, list) else [value]
        if not names or not all(isinstance(n, str) for n in names):
            raise self.fail("stop_ticker: expected a ticker name or a list of names",
                            where, "stop_ticker")
        return tuple(names)

    def state(self, table: Mapping[str, Any], key: str, where: TablePath) -> str | None:
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_STATE_LENGTH:
            raise self.fail(f"{key}: expected a non-empty name of at most {MAX_STATE_LENGTH} "
                            f"characters, got {value!r}", where, key)
        return value

    def scenario(self, table: Mapping[str, Any],
                 where: TablePath) -> tuple[str | None, str | None, str | None]:
        """
        @return: a rule's scenario, the state it needs, the state it sets.
        """
        name = self.state(table, "scenario", where)
        when, then = self.state(table, "when_state", where), self.state(table, "set_state", where)
        if name is None and (when is not None or then is not None):
            key = "when_state" if when is not None else "set_state"
            raise self.fail(f"{key}: needs scenario = \"NAME\" on the same rule (the scenario "
                            "whose state it reads or sets)", where, key)
        if name is not None and when is None and then is None:
            raise self.fail("scenario: needs when_state, set_state or both (a scenario "
                            "alone changes nothing)", where, "scenario")
        return name, when, then

    def rule(self, table: Any, where: TablePath, index: int) -> Rule:
        is_default = index < 0
        what = "[default]" if is_default else "[[rule]]"
        if not isinstance(table, dict):
            raise self.fail(f"expected a table for {what}", where)
        allowed = _ACTION_KEYS if is_default else _RULE_KEYS
        self.check_keys(table, allowed, where, what)
        self.check_bot(table, where, "rule")
        matcher, scope = (None, Scope()) if is_default else self.matcher(table, where)
        when = self.when(table, where)
        scope = replace(scope, path_names=self.path_names | names_in(
            when.paths if when is not None else ()))
        messages = self.messages(table, where, scope)
        if "fragments" in table:
            frames = self.fragments(table["fragments"], where)
            messages = tuple(replace(m, fragments=frames) if m.fragments == 1 else m
                             for m in messages)
        if "drop" in table and "close" in table:
            raise self.fail("drop: a connection is either dropped or closed, not both",
                            where, "drop")
        cycle = self.flag(table, "cycle", where)
        if cycle and len(messages) < 2:
            raise self.fail("cycle: needs at least two messages to cycle through",
                            where, "cycle")
        if cycle and any(m.delay for m in messages):
            raise self.fail("cycle: cycled messages cannot have delays", where, "cycle")
        name = self.string(table.get("name", f"rule {index + 1}"), where, "name")
        scenario, when_state, set_state = self.scenario(table, where)
        broadcast = self.flag(table, "broadcast", where)
        steps = self.steps(table, where, scope)
        if broadcast and not messages:
            raise self.fail("broadcast: the rule has no messages to send to every connection "
                            "(give reply or [[...send]])", where, "broadcast")
        return Rule(
            index=index,
            name="default" if is_default else name,
            line=self.lines.line_of(where),
            matcher=matcher,
            messages=messages,
            once=self.flag(table, "once", where),
            cycle=cycle,
            close=self.close(table["close"], where) if "close" in table else None,
            start_ticker=self.ticker(table["start_ticker"], where, scope)
            if "start_ticker" in table else None,
            stop_tickers=self.stop_tickers(table["stop_ticker"], where)
            if "stop_ticker" in table else (),
            nth=self.nth(table, where),
            drop=self.flag(table, "drop", where),
            pause_reading=self.number(table["pause_reading"], where, "pause_reading", 0.0,
                                      MAX_FAULT_SECONDS) if "pause_reading" in table else 0.0,
            stall_replies=self.number(table["stall_replies"], where, "stall_replies", 0.0,
                                      MAX_FAULT_SECONDS) if "stall_replies" in table else 0.0,
            ping=self.ping(table["ping"], where) if "ping" in table else None,
            scenario=scenario,
            when_state=when_state,
            set_state=set_state,
            broadcast=broadcast,
            steps=steps,
            fail_close=self.close(table["fail_close"], where, "fail_close")
            if "fail_close" in table else None,
            when=when,
            handoff=self.handoff(table, where, "default" if is_default else name),
        )

    # -- the file ------------------------------------------------------------

    def load(self, document: Mapping[str, Any]) -> RuleSet:
        self.check_keys(document, _TOP_KEYS, (), "the rules file")
        self.check_bot(document, (), "top")
        greetings_raw = document.get("greeting", [])
        rules_raw = document.get("rule", [])
        for key, value in (("greeting", greetings_raw), ("rule", rules_raw)):
            if not isinstance(value, list):
                raise self.fail(f"{key}: expected [[{key}]] tables", (), key)
        # [handshake] first: its paths name what templates may use.
        handshake = self.handshake(document["handshake"]) if "handshake" in document else None
        paths = tuple(path_pattern(p) for p in handshake.paths) if handshake else ()
        self.path_names = names_in(paths)
        greetings = tuple(self.greeting(g, ("greeting", i)) for i, g in enumerate(greetings_raw))
        rules = tuple(self.rule(r, ("rule", i), i) for i, r in enumerate(rules_raw))
        default = self.rule(document["default"], ("default",), -1) \
            if "default" in document else None
        if not rules and default is None and not greetings and handshake is None:
            # Most likely the wrong file. [handshake] alone is a route that
            # answers handshakes as it says and messages with nothing.
            raise RulesError("no [handshake], [[greeting]], [[rule]] or [default]: the file "
                             "says nothing about the route", None)
        self.check_ticker_names(rules + ((default,) if default else ()))
        scenarios = self.check_states(rules)
        return RuleSet(path=self.path, greetings=greetings, rules=rules, default=default,
                       handshake=handshake, scenarios=scenarios, paths=paths)

    def greeting(self, table: Any, where: TablePath) -> Outgoing:
        """
        A greeting: a message, and optionally C{when} (sent only to the
        connections whose handshake it admits).
        """
        self.check_bot(table, where, "message")
        when = self.when(table, where) if isinstance(table, dict) else None
        scope = Scope(message=False, path_names=self.path_names | names_in(
            when.paths if when is not None else ()))
        rest = {k: v for k, v in table.items() if k != "when"} if isinstance(table, dict) \
            else table
        return replace(self.send_item(rest, where, scope, "[[greeting]]"), when=when)

    def check_states(self, rules: tuple[Rule, ...]) -> tuple[str, ...]:
        """
        A rule waiting for a state no rule sets would never fire: refused,
        like a ticker stopped that no rule starts.

        @return: the scenarios' names, in the order the file names them.
        """
        reachable: dict[str, set[str]] = {}
        for rule in rules:
            if rule.scenario is not None:
                states = reachable.setdefault(rule.scenario, {INITIAL_STATE})
                if rule.set_state is not None:
                    states.add(rule.set_state)
        for rule in rules:
            if rule.scenario is not None and rule.when_state is not None and \
                    rule.when_state not in reachable[rule.scenario]:
                known = ", ".join(repr(s) for s in sorted(reachable[rule.scenario]))
                raise self.fail(
                    f"when_state: no rule moves scenario {rule.scenario!r} to "
                    f"{rule.when_state!r}{did_you_mean(rule.when_state, reachable[rule.scenario])}"
                    f"; its states: {known} (every scenario starts in {INITIAL_STATE!r})",
                    ("rule", rule.index), "when_state")
        return tuple(reachable)

    def check_ticker_names(self, rules: tuple[Rule, ...]) -> None:
        started = {r.start_ticker.name for r in rules if r.start_ticker is not None}
        for rule in rules:
            where: TablePath = ("default",) if rule.index < 0 else ("rule", rule.index)
            for name in rule.stop_tickers:
                if name not in started:
                    known = ", ".join(sorted(started)) or "none"
                    raise self.fail(
                        f"stop_ticker: no rule starts a ticker named {name!r} (started: {known})",
                        where, "stop_ticker",
                    )


_TOO_DEEP = (f"nested too deeply (more than {MAX_NESTING} levels of tables, arrays and "
             "dotted keys)")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def load_rules(path: Path, *, bot: bool = False) -> RuleSet:
    """
    @param bot: a bot's rules (L{wsdaemon.strategies.scripted.bot}).
    @raise RulesError: with the line and what was expected.
    @raise OSError: if the file cannot be read.
    """
    return parse_rules(path.read_bytes(), path, bot=bot)


def parse_rules(raw: bytes, path: Path, *, bot: bool = False) -> RuleSet:
    """
    @param raw: a rules file's contents.
    @param path: where they come from (named in the rules, and relative
        paths are resolved against its directory).
    @param bot: a bot's rules: C{handoff} allowed, what acts on a
        connection refused (L{wsdaemon.strategies.scripted.bot}).
    @raise RulesError: with the line and what was expected.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RulesError(f"not UTF-8 text ({e.reason})", None) from None
    line = too_deep_line(text)
    if line is not None:
        raise RulesError(_TOO_DEEP, line)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        position = _TOML_POSITION.search(message)
        line = int(position.group(1)) if position else None
        if position:
            message = f"{message[:position.start()]} (column {position.group(2)})"
        raise RulesError(f"invalid TOML: {message}", line) from None
    except RecursionError:  # what the scan missed, if anything: still one line
        raise RulesError(_TOO_DEEP, None) from None
    loader = _Loader(path, text, bot)
    deep = too_deep(document, MAX_NESTING + 1)  # the document itself is a level
    if deep is not None:
        raise RulesError(_TOO_DEEP, loader.line_of_path(deep))
    return loader.load(document)
