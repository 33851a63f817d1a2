"""
The scripted strategy: answers follow a rules file.

Rules are tried in file order; the first that matches answers, the
C{[default]} rule answers when none does. Per connection it keeps a message
counter, which C{once} rules have answered, where each C{cycle} stands, the
running tickers and the delayed messages not yet sent: all timers come from
the injected clock and are cancelled when the connection closes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from wsdaemon.interfaces import (
    IConnectionFaults,
    IHandshakePolicy,
    IOptionCheck,
    IReplyStrategy,
    IResettable,
    IRulesReplaceable,
    IScenarios,
    ISession,
    IStrategyFactory,
)
from wsdaemon.records import HandshakePlan
from wsdaemon.strategies.api import (
    OptionContext,
    OptionError,
    StrategyContext,
    reject_unknown_options,
)
from wsdaemon.strategies.scripted.matching import NOT_JSON, NOT_PARSED, match
from wsdaemon.strategies.scripted.rules import (
    INITIAL_STATE,
    MAX_STATE_LENGTH,
    Outgoing,
    Rule,
    RulesError,
    RuleSet,
    Ticker,
    load_rules,
    parse_rules,
)
from wsdaemon.strategies.scripted.sequence import StepRun
from wsdaemon.strategies.scripted.template import parse_json_path
from wsdaemon.strategies.scripted.when import NO_HANDSHAKE, HandshakeView, view_of

__all__ = ["ScriptedStrategy", "ScriptedStrategyFactory"]

_log = Logger(namespace="wsdaemon.scripted")

@lru_cache(maxsize=256)
def _path(path: str) -> tuple[str | int, ...]:
    return parse_json_path(path)


def _json_field(document: Any, path: str) -> str:
    value = document
    for segment in _path(path):
        if isinstance(segment, int) and isinstance(value, list) and segment < len(value):
            value = value[segment]
        elif isinstance(value, dict) and str(segment) in value:
            value = value[str(segment)]
        else:
            return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class _Conversation:
    """
    One connection's state.
    """

    __slots__ = ("session", "counter", "answered_once", "cycle_positions", "tickers", "pending",
                 "steps", "view")

    def __init__(self, session: ISession, view: HandshakeView = NO_HANDSHAKE) -> None:
        self.session = session
        #: Its opening handshake, as rules and templates see it.
        self.view = view
        self.counter = 0
        self.answered_once: set[int] = set()
        self.cycle_positions: dict[int, int] = {}
        self.tickers: dict[str, IDelayedCall] = {}
        self.pending: set[IDelayedCall] = set()
        #: The rule's steps running on this connection, if any.
        self.steps: StepRun | None = None


class _Values:
    """
    The values a template may use, computed only when asked for.
    """

    __slots__ = ("clock", "conversation", "message", "groups", "document", "tick", "params")

    def __init__(self, clock: IReactorTime, conversation: _Conversation,
                 message: str | bytes | None, groups: Mapping[str, str | None] | None,
                 document: Any, params: Mapping[str, str] | None = None) -> None:
        self.clock = clock
        self.conversation = conversation
        self.message = message
        self.groups = groups
        self.document = document
        self.tick = 0
        #: The path's placeholders as the rule's when.path found them (None:
        #: the connection's, from [handshake] paths).
        self.params = params

    def __call__(self, name: str) -> str:
        if name == "message":
            message = self.message
            return message.hex() if isinstance(message, bytes) else (message or "")
        if name == "session":
            return str(self.conversation.session.session_id)
        if name == "route":
            return str(self.conversation.session.route)
        if name == "counter":
            return str(self.conversation.counter)
        if name == "tick":
            return str(self.tick)
        if name == "time":
            return datetime.fromtimestamp(self.clock.seconds(), UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
        if name == "timestamp":
            return f"{self.clock.seconds():.3f}"
        if name == "path":
            return self.conversation.view.path
        if name == "subprotocol":
            return self.conversation.view.subprotocol
        kind, _, rest = name.partition(".")
        if kind == "path" and self.params is not None:
            return self.params.get(rest, "")
        if kind in ("path", "query", "headers"):
            return self.conversation.view.value(kind, rest)
        if kind == "match" and self.groups is not None:
            return self.groups.get(rest) or ""
        if kind == "json" and self.document is not NOT_JSON:
            return _json_field(self.document, rest)
        return ""

    def with_tick(self, tick: int) -> _Values:
        values = _Values(self.clock, self.conversation, self.message, self.groups, self.document,
                         self.params)
        values.tick = tick
        return values


def _render(message: Outgoing, values: Callable[[str], str]) -> str | bytes:
    if message.template is not None:
        return message.template.render(values)
    assert message.data is not None
    return message.data


def _after_replies(session: Any, rule: Rule) -> None:
    """
    A rule's faults that follow its messages: a ping, a pause in reading,
    or dropping the connection.
    """
    if rule.ping is not None:
        try:
            session.ping(rule.ping.payload, rule.ping.timeout)
        except ValueError as e:  # too many waiting pings with that payload
            _log.info("rule {rule}: ping not sent: {why}", rule=rule.name, why=str(e))
    if rule.pause_reading:
        session.pause_reading(rule.pause_reading)
    if rule.drop:
        session.drop()


def _stop_timers(conversation: _Conversation) -> None:
    if conversation.steps is not None:
        conversation.steps.cancel()
        conversation.steps = None
    for call in list(conversation.pending) + list(conversation.tickers.values()):
        if call.active():
            call.cancel()
    conversation.pending.clear()
    conversation.tickers.clear()


@implementer(IReplyStrategy, IResettable, IRulesReplaceable, IHandshakePolicy, IScenarios)
class ScriptedStrategy:
    """
    Answers according to a L{RuleSet}, keeping per-connection state, and
    the route's scenarios' states, which all its connections share.
    """

    @property
    def handshake_plan(self) -> HandshakePlan | None:
        return self.rules.handshake

    def __init__(self, rules: RuleSet, clock: IReactorTime) -> None:
        self.rules = rules
        self._clock = clock
        self._conversations: dict[str, _Conversation] = {}
        self._states = dict.fromkeys(rules.scenarios, INITIAL_STATE)
        #: The rule the message being answered matched (for L{answer}).
        self._answered: Rule | None = None

    # -- IReplyStrategy ------------------------------------------------------

    def connection_opened(self, session: ISession) -> None:
        conversation = self._open(session)
        values = _Values(self._clock, conversation, None, None, NOT_JSON)
        greetings, each = [], []
        for greeting in self.rules.greetings:
            if greeting.when is None:
                greetings.append(greeting)
                each.append(values)
                continue
            params = greeting.when.params(conversation.view)
            if params is not None:
                greetings.append(greeting)
                each.append(_Values(self._clock, conversation, None, None, NOT_JSON, params))
        self._send_all(conversation, tuple(greetings), values, close=None, each=each)

    def _open(self, session: ISession) -> _Conversation:
        """
        A connection's state, with its handshake read once (path, query,
        headers, offered subprotocols: what rules' when and templates see).
        """
        conversation = _Conversation(session, view_of(session, self.rules.paths))
        self._conversations[session.session_id] = conversation
        return conversation

    def message_received(self, session: ISession, message: str | bytes) -> object:
        conversation = self._conversations.get(session.session_id)
        if conversation is None:  # opened before a reload, or a misbehaving caller
            conversation = self._open(session)
        conversation.counter += 1
        if conversation.steps is not None and conversation.steps.offer(message):
            return None  # what a step expected (or not): the rules do not see it
        document: Any = NOT_PARSED
        for rule in self.rules.rules:
            if rule.once and rule.index in conversation.answered_once:
                continue
            if rule.nth and rule.nth != conversation.counter:
                continue
            if rule.when_state is not None and \
                    self._states.get(rule.scenario or "") != rule.when_state:
                continue
            params = None
            if rule.when is not None:
                params = rule.when.params(conversation.view)
                if params is None:
                    continue
            matched, groups, document = self._match(rule, message, document)
            if matched:
                return self._answer(conversation, rule, message, groups, document, params)
        if self.rules.default is not None:
            return self._answer(conversation, self.rules.default, message, None, NOT_JSON)
        return None

    def answer(self, session: ISession, message: str | bytes) -> tuple[Rule | None, object]:
        """
        L{message_received}, saying which rule answered: a caller that acts
        on the rule itself (a support route's bot hands over on C{handoff},
        or when nothing answered) uses this.

        @return: the rule that answered (None: none did, not even
            C{[default]}, or a running sequence took the message) and the
            reply as L{message_received} returns it (messages with delays
            go through C{session.send} later).
        """
        self._answered = None
        reply = self.message_received(session, message)
        rule, self._answered = self._answered, None
        return rule, reply

    def connection_closed(self, session: ISession, code: int | None, reason: str) -> None:
        conversation = self._conversations.pop(session.session_id, None)
        if conversation is not None:
            _stop_timers(conversation)

    # -- run-time control (the admin API's /routes) --------------------------

    def reset(self) -> None:
        for conversation in self._conversations.values():
            _stop_timers(conversation)
            conversation.counter = 0
            conversation.answered_once.clear()
            conversation.cycle_positions.clear()
        self._states = dict.fromkeys(self.rules.scenarios, INITIAL_STATE)

    # -- IScenarios ----------------------------------------------------------

    def scenarios(self) -> dict[str, str]:
        return dict(self._states)

    def set_scenarios(self, states: Mapping[str, str]) -> None:
        for name, state in states.items():
            if name not in self._states:
                raise KeyError(name)
            if not isinstance(state, str) or not state.strip() or len(state) > MAX_STATE_LENGTH:
                raise ValueError(f"{name}: expected a non-empty state name of at most "
                                 f"{MAX_STATE_LENGTH} characters")
        for name, state in states.items():
            self._move(name, state, "the admin API")

    def _move(self, name: str, state: str, by: str) -> None:
        before, self._states[name] = self._states[name], state
        if before != state:
            _log.info("scenario {scenario}: {before} -> {state} ({by})", scenario=name,
                      before=before, state=state, by=by)

    def replace_rules(self, source: bytes) -> int:
        path = self.rules.path
        try:
            rules = parse_rules(source, path)
        except RulesError as e:
            raise OptionError("rules", e.message, path=path, line=e.line) from None
        self.rules = rules
        for conversation in self._conversations.values():
            # Their paths' placeholders as the new [handshake] paths name them.
            conversation.view = view_of(conversation.session, rules.paths)
        self.reset()
        _log.info("rules of {path} replaced through the admin API: {count} rule(s) "
                  "(the file is unchanged; a reload reads it again)",
                  path=str(path), count=len(rules.rules))
        return len(rules.rules)

    # -- matching ------------------------------------------------------------

    def _match(
        self, rule: Rule, message: str | bytes, document: Any
    ) -> tuple[bool, Mapping[str, str | None] | None, Any]:
        if rule.matcher is None:  # a rule with only when: every message
            return True, None, document
        return match(rule.matcher, message, document)

    # -- answering -----------------------------------------------------------

    def _answer(self, conversation: _Conversation, rule: Rule, message: str | bytes,
                groups: Mapping[str, str | None] | None, document: Any,
                params: Mapping[str, str] | None = None) -> object:
        self._answered = rule
        if rule.once:
            conversation.answered_once.add(rule.index)
        if rule.set_state is not None and rule.scenario is not None:
            self._move(rule.scenario, rule.set_state, f"rule {rule.name}")
        values = _Values(self._clock, conversation, message, groups,
                         document if rule.matcher is not None and rule.matcher.kind == "json"
                         else NOT_JSON, params)
        if rule.immediate:
            # The common case: a plain value, no timers, no Deferred.
            if len(rule.messages) == 1:
                return _render(rule.messages[0], values)
            return [_render(m, values) for m in rule.messages] or None
        for name in rule.stop_tickers:
            call = conversation.tickers.pop(name, None)
            if call is not None and call.active():
                call.cancel()
        messages = rule.messages
        if rule.cycle:
            position = conversation.cycle_positions.get(rule.index, 0)
            conversation.cycle_positions[rule.index] = position + 1
            messages = (messages[position % len(messages)],)
        faults = conversation.session if IConnectionFaults.providedBy(
            conversation.session) else None
        if faults is not None and rule.stall_replies:
            faults.hold_writes(rule.stall_replies)
        if rule.start_ticker is not None:
            self._start_ticker(conversation, rule.start_ticker, values)
        if rule.steps:
            if conversation.steps is not None:
                conversation.steps.cancel()
            run = conversation.steps = StepRun(rule, conversation.session, self._clock,
                                               partial(_render, values=values))
            run.start()
        at = self._send_all(conversation, messages, values, rule.close)
        if rule.broadcast:
            # The same messages, filled from the sender's message, to every
            # other connection of the route; each is bounded as a push is
            # (its max_message_size, max_outbound_buffer), its timers its own.
            for other in list(self._conversations.values()):
                if other is not conversation:
                    self._send_all(other, messages, values, close=None)
        if faults is not None and (rule.drop or rule.pause_reading or rule.ping):
            if at == 0:
                _after_replies(faults, rule)
            else:
                self._later(conversation, at, partial(_after_replies, faults, rule))
        return None

    def _send_all(self, conversation: _Conversation, messages: tuple[Outgoing, ...],
                  values: _Values, close: Any, each: list[_Values] | None = None) -> float:
        """
        Send C{messages} now or after their delays, then close if asked.

        @param each: each message's values, if not all C{values}.
        @return: when the last one goes, in seconds from now.
        """
        at = 0.0
        session = conversation.session
        for n, message in enumerate(messages):
            at += message.delay
            filled = values if each is None else each[n]
            if at == 0:
                self._send_one(session, message, filled)
            else:
                self._later(conversation, at, partial(self._send_one, session, message, filled))
        if close is not None:
            if at == 0:
                session.close(close.code, close.reason)
            else:
                self._later(conversation, at, lambda: session.close(close.code, close.reason))
        return at

    @staticmethod
    def _send_one(session: ISession, message: Outgoing, values: _Values) -> None:
        if message.fragments > 1 and IConnectionFaults.providedBy(session):
            faulty: Any = session
            faulty.send_fragmented(_render(message, values), message.fragments)
        else:
            session.send(_render(message, values))

    def _later(self, conversation: _Conversation, delay: float, action: Callable[[], Any]) -> None:
        def fire() -> None:
            conversation.pending.discard(call)
            action()

        call = self._clock.callLater(delay, fire)
        conversation.pending.add(call)

    def _start_ticker(self, conversation: _Conversation, ticker: Ticker,
                      values: _Values) -> None:
        running = conversation.tickers.pop(ticker.name, None)
        if running is not None and running.active():
            running.cancel()
        session = conversation.session

        def tick(count: int) -> None:
            session.send(_render(ticker.message, values.with_tick(count)))
            if ticker.times is not None and count >= ticker.times:
                conversation.tickers.pop(ticker.name, None)
                return
            conversation.tickers[ticker.name] = self._clock.callLater(ticker.every, tick,
                                                                      count + 1)

        conversation.tickers[ticker.name] = self._clock.callLater(ticker.every, tick, 1)


@implementer(IStrategyFactory, IOptionCheck)
class ScriptedStrategyFactory:
    name = "scripted"
    description = "replies follow a rules file (greetings, matches, delays, tickers)"

    def check(self, options: Mapping[str, str], context: OptionContext) -> RuleSet:
        """
        @return: the rules file, read and checked.
        """
        reject_unknown_options(options, {"rules"})
        if not options.get("rules", "").strip():
            raise OptionError("rules", "missing; expected the path of a rules file (TOML), "
                              "relative to the config file's directory")
        path = Path(context.config_dir, options["rules"].strip())
        try:
            rules = load_rules(path)
        except FileNotFoundError:
            raise OptionError("rules", f"rules file {path} not found") from None
        except OSError as e:
            raise OptionError("rules", f"cannot read rules file {path}: {e.strerror}") from None
        except RulesError as e:
            raise OptionError("rules", e.message, path=path, line=e.line) from None
        _log.info("loaded {count} rule(s) from {path} for {route}",
                  count=len(rules.rules), path=str(path), route=context.route)
        return rules

    def create(self, options: Mapping[str, str], context: StrategyContext) -> ScriptedStrategy:
        rules = context.checked
        if not isinstance(rules, RuleSet):
            rules = self.check(options, OptionContext(context.config_dir, context.route))
        return ScriptedStrategy(rules, context.clock)
