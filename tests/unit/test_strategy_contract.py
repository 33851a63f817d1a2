"""
The contract every reply strategy meets, run against every built-in one
(and against the third-party example).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from tests.daemon import REPO
from wsdaemon.interfaces import ISession
from wsdaemon.strategies.api import StrategyContext
from wsdaemon.strategies.operator.memory import MemoryStore
from wsdaemon.strategies.operator.queue import OperatorQueue, OperatorSettings
from wsdaemon.strategies.registry import BUILTIN_STRATEGIES, StrategyRegistry
from wsdaemon.testing import RecordingSession, check_strategy

THIRDPARTY = Path(__file__).resolve().parent.parent / "thirdparty"

#: Options each built-in needs to be built; every built-in must have an entry.
CONTRACT_OPTIONS: dict[str, dict[str, str]] = {
    "echo": {},
    "operator": {},
    "scripted": {"rules": str(REPO / "etc" / "bot.rules.toml")},
    # Built without a client handshake: it closes the session (no upstream).
    "proxy": {"upstream": "ws://127.0.0.1:9/"},
}


def test_every_builtin_has_a_contract_case() -> None:
    """A new built-in strategy cannot skip the contract suite."""
    assert set(CONTRACT_OPTIONS) == set(BUILTIN_STRATEGIES)


@pytest.mark.parametrize("name", sorted(BUILTIN_STRATEGIES))
def test_builtin_meets_contract(name: str, tmp_path: Path) -> None:
    """Builtin meets contract."""
    factory = StrategyRegistry(plugins=lambda: []).resolve(name)
    queue = OperatorQueue(OperatorSettings(store_path=tmp_path / "unused"), MemoryStore(), Clock())
    queue.start()
    check_strategy(factory, CONTRACT_OPTIONS[name], config_dir=tmp_path, operator_queue=queue)


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


def test_contract_catches_a_broken_strategy(tmp_path: Path) -> None:
    """The contract check fails a strategy that returns a wrong reply type."""
    from zope.interface import implementer

    from wsdaemon.interfaces import IReplyStrategy, IStrategyFactory
    from wsdaemon.strategies.api import reject_unknown_options

    @implementer(IReplyStrategy)
    class Broken:
        def connection_opened(self, session: ISession) -> None: ...
        def message_received(self, session: ISession, message: str | bytes) -> object:
            return 42
        def connection_closed(self, session: ISession, code: int | None, reason: str) -> None: ...

    @implementer(IStrategyFactory)
    class BrokenFactory:
        name = "broken"
        description = "returns numbers"

        def create(self, options: object, context: StrategyContext) -> Broken:
            reject_unknown_options(options, ())  # type: ignore[arg-type]
            return Broken()

    with pytest.raises(AssertionError, match="invalid reply 42"):
        check_strategy(BrokenFactory(), {}, config_dir=tmp_path)


def test_echo_replies_unchanged(tmp_path: Path) -> None:
    """Echo returns the very message: text as str, binary as bytes, empty too."""
    strategy = StrategyRegistry(plugins=lambda: []).resolve("echo").create(
        {}, StrategyContext(clock=Clock(), config_dir=tmp_path, route="/echo")
    )
    session = RecordingSession()
    for message in ("你好，世界", "", b"", b"\x00\x01\xff", "x" * 65536):
        reply = strategy.message_received(session, message)
        assert reply == message and type(reply) is type(message)
