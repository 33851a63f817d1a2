"""
wsdaemon.testing.StrategyHarness: a strategy served by the daemon's own
protocol in memory, for strategy authors' tests.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred
from zope.interface import implementer

from wsdaemon.strategies import (
    HandshakeAnswer,
    HandshakeRefused,
    HandshakeRequest,
    IHandshakeHook,
    IReplyStrategy,
    ISession,
    IStrategyFactory,
    OptionError,
    StrategyContext,
)
from wsdaemon.testing import StrategyHarness

sys.path.insert(0, str(Path(__file__).parent.parent / "thirdparty"))
from shout_strategy import shout  # noqa: E402


def test_third_party_strategy_in_memory() -> None:
    """A third-party strategy answers through the real protocol: its
    welcome, text and binary replies, and a normal close."""
    harness = StrategyHarness(shout, {"suffix": "?"})
    client = harness.connect()
    assert client.status == 101 and client.is_open
    client.send("hello")
    client.send(b"\x01\x02")
    assert client.received == ["WELCOME", "HELLO?", b"\x02\x01"]
    client.close()
    assert client.closed == (1000, "") and not client.is_open


def test_a_failing_strategy_closes_with_1011() -> None:
    """An exception in the strategy gives the daemon's own close code."""
    client = StrategyHarness(shout).connect()
    client.send("explode")
    assert client.closed is not None and client.closed[0] == 1011


def test_bad_options_raise_option_error() -> None:
    """Options are checked as at the daemon's start."""
    with pytest.raises(OptionError):
        StrategyHarness(shout, {"suffix": "!!!!"})


def test_route_limits_apply() -> None:
    """Route settings, named as in the config, apply: a message over
    max_message_size closes with 1009."""
    client = StrategyHarness(shout, max_message_size=8).connect()
    client.send("x" * 100)
    assert client.closed is not None and client.closed[0] == 1009


def test_origin_policy_applies() -> None:
    """A foreign Origin is refused with 403, as by the daemon."""
    client = StrategyHarness(shout).connect(headers={"Origin": "https://evil.example"})
    assert client.status == 403 and client.closed is None and not client.is_open


@implementer(IReplyStrategy, IHandshakeHook)
class Gatekeeper:
    """Admits clients whose query says ok=1, after a delay on the clock."""

    def __init__(self, context: StrategyContext) -> None:
        self.clock = context.clock
        self.requests: list[HandshakeRequest] = []

    def connecting(self, request: HandshakeRequest) -> Deferred[HandshakeAnswer]:
        self.requests.append(request)
        answer: Deferred[HandshakeAnswer] = Deferred()

        def decide() -> None:
            if "ok=1" in request.query:
                answer.callback(HandshakeAnswer(subprotocol="chat", client_id="alice"))
            else:
                answer.errback(HandshakeRefused(403, "not welcome"))

        self.clock.callLater(1, decide)
        return answer

    def connection_opened(self, session: ISession) -> None:
        session.send(f"hi {session.client_id}")

    def message_received(self, session: ISession, message: str | bytes) -> object:
        self.clock.callLater(5, session.close, 4000, "bye")
        return None

    def connection_closed(self, session: ISession, code: int | None, reason: str) -> None:
        pass


@implementer(IStrategyFactory)
class GatekeeperFactory:
    name = "gatekeeper"
    description = "admits on the query"

    def create(self, options: Mapping[str, str], context: StrategyContext) -> Gatekeeper:
        return Gatekeeper(context)


def test_handshake_hook_and_clock() -> None:
    """A handshake hook answering later is waited for on the harness's
    clock; it sees the query, headers and subprotocols; its answer picks
    the subprotocol and the client id; timers run as the clock advances."""
    harness = StrategyHarness(GatekeeperFactory())
    client = harness.connect(query="ok=1", headers={"X-Team": "blue"},
                             subprotocols=["chat", "other"])
    assert client.status is None
    harness.clock.advance(1)
    assert client.status == 101 and client.subprotocol == "chat"
    assert client.received == ["hi alice"]
    strategy = harness.strategy
    assert isinstance(strategy, Gatekeeper)
    request = strategy.requests[0]
    assert request.headers["x-team"] == "blue" and request.subprotocols == ("chat", "other")
    client.send("anything")
    harness.clock.advance(5)
    assert client.closed == (4000, "bye")


def test_handshake_hook_refuses() -> None:
    """A hook's refusal is the client's HTTP status."""
    harness = StrategyHarness(GatekeeperFactory())
    client = harness.connect(query="ok=0")
    harness.clock.advance(1)
    assert client.status == 403 and not client.is_open


def test_disconnect_tells_the_strategy() -> None:
    """A client that goes without a closing handshake is a closed session
    to the strategy; the harness refuses to send on it."""
    client = StrategyHarness(shout).connect()
    client.disconnect()
    assert not client.is_open
    with pytest.raises(RuntimeError):
        client.send("late")


def test_readme_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's strategy and its harness test, run as written."""
    import re
    import types

    readme = (Path(__file__).parent.parent.parent / "README.md").read_text()
    section = readme[readme.index("### Writing your own"):readme.index("## Logging")]
    strategy_code, test_code = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
    module = types.ModuleType("shout")
    exec(strategy_code, module.__dict__)
    monkeypatch.setitem(sys.modules, "shout", module)
    namespace: dict[str, object] = {}
    exec(test_code, namespace)
    test = namespace["test_shout"]
    assert callable(test)
    test()
