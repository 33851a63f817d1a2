"""
The strategy contract, and a session that records (see L{wsdaemon.testing}).

C{RecordingSession} stands in for a client's connection; C{check_strategy}
runs the contract every strategy must meet (the same one wsdaemon's test
suite runs against every built-in strategy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from wsdaemon.interfaces import (
    IConnectionFaults,
    IOptionCheck,
    IReplyStrategy,
    ISession,
    IStrategyFactory,
)
from wsdaemon.records import SENDABLE_CLOSE_CODES, SENDABLE_CLOSE_CODES_TEXT
from wsdaemon.strategies.api import OptionContext, OptionError, StrategyContext

__all__ = ["RecordingSession", "check_strategy", "is_valid_reply"]


@implementer(ISession, IConnectionFaults)
class RecordingSession:
    """
    An in-memory session: records what is sent, how it was closed, and the
    faults asked for (C{faults}: tuples such as C{("drop",)},
    C{("pause_reading", 1.0)}, C{("send_fragmented", message, 3)},
    C{("ping", payload, timeout)}). Pings are answered at once.
    """

    def __init__(self, session_id: str = "test-session", route: str = "/test",
                 peer: str = "tcp4:127.0.0.1:50000", connected_at: float = 0.0,
                 client_id: str | None = None) -> None:
        self.session_id = session_id
        self.client_id = client_id or session_id
        self.route = route
        self.peer = peer
        self.connected_at = connected_at
        self.sent: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None
        self.faults: list[tuple[object, ...]] = []

    @property
    def is_open(self) -> bool:
        return self.closed is None

    def send(self, message: str | bytes) -> bool:
        if not isinstance(message, str | bytes):
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
        if self.closed is not None:
            return False
        self.sent.append(message)
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        # Checked as a real session checks it: a test passes only with codes
        # the daemon would send.
        if code not in SENDABLE_CLOSE_CODES:
            raise ValueError(f"close code {code} may not be sent; use {SENDABLE_CLOSE_CODES_TEXT}")
        if self.closed is None:
            self.closed = (code, reason)

    def drop(self) -> None:
        self.faults.append(("drop",))
        if self.closed is None:
            self.closed = (1006, "")

    def pause_reading(self, seconds: float) -> None:
        self.faults.append(("pause_reading", seconds))

    def hold_writes(self, seconds: float) -> None:
        self.faults.append(("hold_writes", seconds))

    def send_fragmented(self, message: str | bytes, frames: int) -> bool:
        self.faults.append(("send_fragmented", message, frames))
        return self.send(message)

    def ping(self, payload: bytes, timeout: float) -> Deferred[float | None]:
        self.faults.append(("ping", payload, timeout))
        return succeed(None if self.closed is not None else 0.0)


def is_valid_reply(reply: object) -> bool:
    """
    @return: whether C{reply} is one of the forms C{message_received} may return.
    """
    if reply is None or isinstance(reply, str | bytes | Deferred):
        return True
    if isinstance(reply, list | tuple):
        return all(isinstance(m, str | bytes) for m in reply)
    return False


def check_strategy(
    factory: IStrategyFactory,
    options: Mapping[str, str],
    config_dir: Path,
    messages: tuple[str | bytes, ...] = ("hello", "你好，世界", "", b"\x00\xff"),
    sections: frozenset[str] = frozenset(),
) -> None:
    """
    Assert that C{factory} and the strategy it builds meet the contract:
    they provide their interfaces, reject unknown options with
    L{OptionError} (in C{check} too, for a factory providing
    L{IOptionCheck}, whose result C{create} then accepts), answer every
    message with a valid reply (a Deferred one must fire, within an hour of
    the test clock, with a valid reply, not fail), and leave no timer
    behind once the connection closes.

    @param sections: the config's section names the factory's option check
        sees (L{OptionContext.sections}).
    @raise AssertionError: naming what is broken.
    """
    assert verifyObject(IStrategyFactory, factory)
    assert isinstance(factory.name, str) and factory.name, "factory.name must be a str"
    assert isinstance(factory.description, str), "factory.description must be a str"
    clock = Clock()
    context = StrategyContext(clock=clock, config_dir=config_dir, route="/test")

    bogus = dict(options, **{"no-such-option-xyz": "1"})
    try:
        factory.create(MappingProxyType(bogus), context)
    except OptionError as e:
        assert e.key == "no-such-option-xyz", f"OptionError names {e.key!r}"
    else:
        raise AssertionError("an unknown option must raise OptionError")

    if IOptionCheck.providedBy(factory):
        checker: Any = factory
        assert verifyObject(IOptionCheck, checker)
        option_context = OptionContext(config_dir=config_dir, route="/test",
                                       sections=sections)
        try:
            checker.check(MappingProxyType(bogus), option_context)
        except OptionError as e:
            assert e.key == "no-such-option-xyz", f"check's OptionError names {e.key!r}"
        else:
            raise AssertionError("check must raise OptionError for an unknown option")
        checked = checker.check(MappingProxyType(dict(options)), option_context)
        context = replace(context, checked=checked)

    strategy = factory.create(MappingProxyType(dict(options)), context)
    assert verifyObject(IReplyStrategy, strategy)

    session = RecordingSession()
    strategy.connection_opened(session)
    deferred: list[tuple[str | bytes, list[object]]] = []
    for message in messages:
        reply = strategy.message_received(session, message)
        assert is_valid_reply(reply), f"invalid reply {reply!r} to {message!r}"
        if isinstance(reply, Deferred):
            outcome: list[object] = []
            reply.addBoth(outcome.append)  # the result is ours now: nothing left unhandled
            deferred.append((message, outcome))
    clock.advance(3600)
    for message, outcome in deferred:
        _check_deferred_reply(message, outcome)
    strategy.connection_closed(session, 1000, "")
    pending = clock.getDelayedCalls()
    assert not pending, f"timers outlive the connection: {pending}"


def _check_deferred_reply(message: str | bytes, outcome: list[object]) -> None:
    """
    A Deferred reply must have fired (within the hour the test clock was
    advanced) with a reply of a valid, non-Deferred form.
    """
    if not outcome:
        raise AssertionError(f"the deferred reply to {message!r} never fired")
    result = outcome[0]
    if isinstance(result, Failure):
        raise AssertionError(
            f"the deferred reply to {message!r} failed: {result.getErrorMessage()!r} "
            f"({getattr(result.type, '__name__', result.type)})")
    if isinstance(result, Deferred) or not is_valid_reply(result):
        raise AssertionError(f"invalid deferred reply {result!r} to {message!r}")
