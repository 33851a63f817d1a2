"""
The contract every reply strategy meets, run against every built-in one
(and against the third-party example).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock, deferLater
from zope.interface.verify import verifyObject

from tests.daemon import REPO
from wsdaemon.interfaces import ISession
from wsdaemon.strategies.api import StrategyContext
from wsdaemon.strategies.registry import BUILTIN_STRATEGIES, StrategyRegistry
from wsdaemon.support.component import SupportComponent
from wsdaemon.support.memory import MemoryConversationStore
from wsdaemon.support.settings import OperatorSettings
from wsdaemon.testing import RecordingSession, check_strategy

CLOCK = Clock()
THIS = Path(__file__).resolve().parent
THIRDPARTY = THIS.parent / "thirdparty"

#: Options each built-in needs to be built; every built-in must have an entry.
CONTRACT_OPTIONS: dict[str, dict[str, str]] = {
    "echo": {},
    "operator": {},
    "scripted": {"rules": str(REPO / "etc" / "bot.rules.toml")},
    # Built without a client handshake: it closes the session (no upstream).
    "proxy": {"upstream": "ws://127.0.0.1:9/"},
    # Built without a client handshake: it closes the session (no process).
    "command": {"command": "cat"},
    # Built without a client handshake: it closes the session (no connect event).
    "webhook": {"url": "http://127.0.0.1:9/", "secret_file": str(THIS / "webhook.secret")},
}


def test_every_builtin_has_a_contract_case() -> None:
    """A new built-in strategy cannot skip the contract suite."""
    assert set(CONTRACT_OPTIONS) == set(BUILTIN_STRATEGIES)


@pytest.mark.parametrize("name", sorted(BUILTIN_STRATEGIES))
def test_builtin_meets_contract(name: str, tmp_path: Path) -> None:
    """Builtin meets contract."""
    factory = StrategyRegistry(plugins=lambda: []).resolve(name)
    if name == "operator":  # the conversations' component contributes it, bound to itself
        support = SupportComponent(OperatorSettings(store_path=tmp_path / "unused"), Clock(),
                                   store=MemoryConversationStore())
        assert support.start().called
        factory = support.strategies["operator"]
        assert type(factory) is type(StrategyRegistry(plugins=lambda: []).resolve(name))
    check_strategy(factory, CONTRACT_OPTIONS[name], config_dir=tmp_path,
                   sections=frozenset({"operator"}))
    if name == "operator":
        assert support.store.message_log  # type: ignore[attr-defined]  # stored, as conversations


def test_thirdparty_meets_contract(tmp_path: Path) -> None:
    """Third-party meets contract."""
    sys.path.insert(0, str(THIRDPARTY))
    try:
        from shout_strategy import shout

        check_strategy(shout, {"suffix": "?"}, config_dir=tmp_path)
    finally:
        sys.path.remove(str(THIRDPARTY))


def test_recording_session_provides_isession() -> None:
    """Recording session provides ISession."""
    assert verifyObject(ISession, RecordingSession())


def _factory_answering(answer: Callable[[], object]) -> object:
    """A factory whose strategy answers every message with C{answer()}."""
    from zope.interface import implementer

    from wsdaemon.interfaces import IReplyStrategy, IStrategyFactory
    from wsdaemon.strategies.api import reject_unknown_options

    @implementer(IReplyStrategy)
    class Broken:
        def connection_opened(self, session: ISession) -> None: ...
        def message_received(self, session: ISession, message: str | bytes) -> object:
            return answer()
        def connection_closed(self, session: ISession, code: int | None, reason: str) -> None: ...

    @implementer(IStrategyFactory)
    class BrokenFactory:
        name = "broken"
        description = "answers badly"

        def create(self, options: object, context: StrategyContext) -> Broken:
            reject_unknown_options(options, ())  # type: ignore[arg-type]
            return Broken()

    return BrokenFactory()


@pytest.mark.parametrize(("answer", "complaint"), [
    (lambda: 42, "invalid reply 42"),
    (lambda: ["ok", 7], r"invalid reply \['ok', 7\]"),
    (lambda: fail(RuntimeError("boom")), "deferred reply to 'hello' failed: 'boom' "
                                         r"\(RuntimeError\)"),
    (lambda: succeed(12345), "invalid deferred reply 12345"),
    (lambda: succeed(["ok", None]), r"invalid deferred reply \['ok', None\]"),
    (lambda: succeed(succeed("nested")), "invalid deferred reply"),
    (lambda: Deferred(), "deferred reply to 'hello' never fired"),
], ids=["number", "list with a number", "failed deferred", "deferred number",
        "deferred list with None", "deferred of a deferred", "never fires"])
def test_contract_catches_a_broken_strategy(
        tmp_path: Path, answer: Callable[[], object], complaint: str) -> None:
    """The contract check fails a strategy whose reply, or whose Deferred
    reply's result, is not a valid reply, and one whose Deferred fails or
    never fires."""
    with pytest.raises(AssertionError, match=complaint):
        check_strategy(_factory_answering(answer), {}, config_dir=tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize("answer", [
    lambda: succeed("fine"), lambda: succeed(None), lambda: succeed([b"a", "b"]),
    lambda: deferLater(CLOCK, 10, lambda: "later"),
], ids=["text", "nothing", "list", "later on the clock"])
def test_contract_passes_valid_deferred_replies(tmp_path: Path, answer: Callable[[], object],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Deferred replies that fire with a valid reply pass, including one
    that fires later on the strategy's clock."""
    import wsdaemon.testing._contract

    monkeypatch.setattr(wsdaemon.testing._contract, "Clock", lambda: CLOCK)
    check_strategy(_factory_answering(answer), {}, config_dir=tmp_path)  # type: ignore[arg-type]


def test_echo_replies_unchanged(tmp_path: Path) -> None:
    """Echo returns the very message: text as str, binary as bytes, empty too."""
    strategy = StrategyRegistry(plugins=lambda: []).resolve("echo").create(
        {}, StrategyContext(clock=Clock(), config_dir=tmp_path, route="/echo")
    )
    session = RecordingSession()
    for message in ("你好，世界", "", b"", b"\x00\x01\xff", "x" * 65536):
        reply = strategy.message_received(session, message)
        assert reply == message and type(reply) is type(message)
