"""
The scripted strategy on a task.Clock with a recording session: every
feature, and no timer outliving its connection.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from types import MappingProxyType

import pytest
from twisted.internet.task import Clock

from wsdaemon.strategies.api import OptionError, StrategyContext
from wsdaemon.strategies.scripted.strategy import ScriptedStrategy, ScriptedStrategyFactory
from wsdaemon.testing import RecordingSession

RULES = """
    [[greeting]]
    text = "hello {session} on {route}"

    [[greeting]]
    text = "later at {time}"
    delay = 2

    [[rule]]
    text = "ping"
    reply = "pong"

    [[rule]]
    regex = '^add (\\d+) (?P<b>\\d+)$'
    reply = ["{match.1}+{match.b}", "#{counter}"]

    [[rule]]
    json = { type = "sub", meta = { channel = "px" } }
    reply = "subscribed to {json.meta.channel} as {json.user}"
    start_ticker = { name = "px", every = 1, text = "tick {tick}", times = 5 }

    [[rule]]
    json = { type = "unsub" }
    stop_ticker = "px"

    [[rule]]
    json = { flag = true }
    reply = "flag"

    [[rule]]
    binary_prefix = "cafe"
    [[rule.send]]
    hex = "beef"

    [[rule]]
    binary = true
    [[rule.send]]
    base64 = "AAE="

    [[rule]]
    text = "slow"
    [[rule.send]]
    text = "one"
    delay = 1
    [[rule.send]]
    text = "two"
    delay = 1

    [[rule]]
    text = "once"
    once = true
    reply = "first"

    [[rule]]
    text = "cycle"
    cycle = true
    reply = ["a", "b", "c"]

    [[rule]]
    text = "bye"
    reply = "ciao"
    close = { code = 4000, reason = "done" }

    [[rule]]
    text = "late bye"
    close = 1000
    [[rule.send]]
    text = "wait for it"
    delay = 3

    [[rule]]
    regex = "^#"

    [default]
    reply = "? {message}"
"""


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock


def make(tmp_path: Path, clock: Clock, rules: str = RULES) -> ScriptedStrategy:
    (tmp_path / "bot.toml").write_text(textwrap.dedent(rules))
    context = StrategyContext(clock=clock, config_dir=tmp_path, route="/bot")
    return ScriptedStrategyFactory().create(MappingProxyType({"rules": "bot.toml"}), context)


@pytest.fixture
def bot(tmp_path: Path, clock: Clock) -> tuple[ScriptedStrategy, RecordingSession]:
    strategy = make(tmp_path, clock)
    session = RecordingSession(session_id="s1", route="/bot")
    strategy.connection_opened(session)
    return strategy, session


def test_greetings_now_and_delayed(bot: tuple[ScriptedStrategy, RecordingSession],
                                   clock: Clock) -> None:
    """Greetings now and delayed."""
    strategy, session = bot
    assert session.sent == ["hello s1 on /bot"]
    clock.advance(2)
    assert session.sent[1] == "later at 2023-11-14T22:13:22.000Z"


def test_exact_text_returns_plain_value(bot: tuple[ScriptedStrategy, RecordingSession]) -> None:
    """An immediate answer is a plain str: no Deferred on the common path."""
    strategy, session = bot
    assert strategy.message_received(session, "ping") == "pong"


def test_regex_groups_and_counter(bot: tuple[ScriptedStrategy, RecordingSession]) -> None:
    """Regex groups and counter."""
    strategy, session = bot
    strategy.message_received(session, "x")
    assert strategy.message_received(session, "add 2 40") == ["2+40", "#2"]


def test_json_nested_match_and_ticker(bot: tuple[ScriptedStrategy, RecordingSession],
                                      clock: Clock) -> None:
    """JSON nested match and ticker."""
    strategy, session = bot
    clock.advance(5)  # past the delayed greeting
    message = json.dumps({"type": "sub", "meta": {"channel": "px", "x": 1}, "user": {"id": 3}})
    assert strategy.message_received(session, message) is None
    assert session.sent[-1] == 'subscribed to px as {"id": 3}'
    clock.advance(1)
    clock.advance(1)
    assert session.sent[-2:] == ["tick 1", "tick 2"]
    assert strategy.message_received(session, '{"type": "unsub"}') is None
    clock.advance(10)
    assert session.sent[-1] == "tick 2"


def test_ticker_stops_after_times(bot: tuple[ScriptedStrategy, RecordingSession],
                                  clock: Clock) -> None:
    """Ticker stops after times."""
    strategy, session = bot
    strategy.message_received(session, '{"type": "sub", "meta": {"channel": "px"}}')
    for _ in range(10):
        clock.advance(1)
    ticks = [m for m in session.sent if isinstance(m, str) and m.startswith("tick")]
    assert ticks == [f"tick {n}" for n in range(1, 6)]
    assert clock.getDelayedCalls() == []


def test_json_non_matching(bot: tuple[ScriptedStrategy, RecordingSession]) -> None:
    """JSON non matching."""
    strategy, session = bot
    assert strategy.message_received(session, '{"type": "sub", "meta": {"channel": "fx"}}') \
        == '? {"type": "sub", "meta": {"channel": "fx"}}'
    assert strategy.message_received(session, '{"flag": 1}') == '? {"flag": 1}'
    assert strategy.message_received(session, '{"flag": true}') == "flag"
    assert strategy.message_received(session, "not json {") == "? not json {"


def test_binary_prefix_and_any(bot: tuple[ScriptedStrategy, RecordingSession]) -> None:
    """Binary prefix and any."""
    strategy, session = bot
    assert strategy.message_received(session, b"\xca\xfe\x00") == b"\xbe\xef"
    assert strategy.message_received(session, b"\x01") == b"\x00\x01"
    assert strategy.message_received(session, "cafe") == "? cafe"  # text never matches binary


def test_delays_are_cumulative(bot: tuple[ScriptedStrategy, RecordingSession],
                               clock: Clock) -> None:
    """Delays are cumulative."""
    strategy, session = bot
    clock.advance(5)  # past the delayed greeting
    before = len(session.sent)
    assert strategy.message_received(session, "slow") is None
    clock.advance(0.99)
    assert len(session.sent) == before
    clock.advance(0.01)
    assert session.sent[-1] == "one"
    clock.advance(1)
    assert session.sent[-1] == "two"


def test_once_then_falls_through(bot: tuple[ScriptedStrategy, RecordingSession]) -> None:
    """Once then falls through."""
    strategy, session = bot
    assert strategy.message_received(session, "once") == "first"
    assert strategy.message_received(session, "once") == "? once"


def test_once_is_per_connection(tmp_path: Path, clock: Clock) -> None:
    """Once is per connection."""
    strategy = make(tmp_path, clock)
    first, second = RecordingSession("a"), RecordingSession("b")
    strategy.connection_opened(first)
    strategy.connection_opened(second)
    assert strategy.message_received(first, "once") == "first"
    assert strategy.message_received(second, "once") == "first"


def test_cycle(bot: tuple[ScriptedStrategy, RecordingSession]) -> None:
    """Cycle."""
    strategy, session = bot
    for _ in range(4):
        strategy.message_received(session, "cycle")
    assert session.sent[-4:] == ["a", "b", "c", "a"]


def test_close_with_code_after_reply(bot: tuple[ScriptedStrategy, RecordingSession]) -> None:
    """Close with code after reply."""
    strategy, session = bot
    strategy.message_received(session, "bye")
    assert session.sent[-1] == "ciao"
    assert session.closed == (4000, "done")


def test_close_after_delayed_message(bot: tuple[ScriptedStrategy, RecordingSession],
                                     clock: Clock) -> None:
    """Close after delayed message."""
    strategy, session = bot
    clock.advance(5)
    strategy.message_received(session, "late bye")
    clock.advance(2.9)
    assert session.closed is None
    clock.advance(0.1)
    assert session.sent[-1] == "wait for it" and session.closed == (1000, "")


def test_silence(bot: tuple[ScriptedStrategy, RecordingSession]) -> None:
    """Silence."""
    strategy, session = bot
    count = len(session.sent)
    assert strategy.message_received(session, "# just a comment") is None
    assert len(session.sent) == count


def test_no_default_means_no_reply(tmp_path: Path, clock: Clock) -> None:
    """No default means no reply."""
    strategy = make(tmp_path, clock, '[[rule]]\ntext = "a"\nreply = "b"\n')
    session = RecordingSession()
    strategy.connection_opened(session)
    assert strategy.message_received(session, "zzz") is None


def test_close_cancels_every_timer(bot: tuple[ScriptedStrategy, RecordingSession],
                                   clock: Clock) -> None:
    """Delayed greetings, delayed replies and tickers die with the connection."""
    strategy, session = bot
    strategy.message_received(session, "slow")
    strategy.message_received(session, '{"type": "sub", "meta": {"channel": "px"}}')
    assert clock.getDelayedCalls()
    strategy.connection_closed(session, 1000, "")
    assert clock.getDelayedCalls() == []
    sent = len(session.sent)
    clock.advance(100)
    assert len(session.sent) == sent


def test_factory_option_errors(tmp_path: Path, clock: Clock) -> None:
    """Factory option errors."""
    context = StrategyContext(clock=clock, config_dir=tmp_path, route="/bot")
    factory = ScriptedStrategyFactory()
    with pytest.raises(OptionError, match="missing; expected the path of a rules file"):
        factory.create(MappingProxyType({}), context)
    with pytest.raises(OptionError, match="not found"):
        factory.create(MappingProxyType({"rules": "nope.toml"}), context)
    (tmp_path / "bad.toml").write_text('[[rule]]\ntext = "a"\nreply = "{oops}"\n')
    with pytest.raises(OptionError) as info:
        factory.create(MappingProxyType({"rules": "bad.toml"}), context)
    assert info.value.key == "rules"
    assert info.value.line == 3 and info.value.path == tmp_path / "bad.toml"


def test_fault_actions_reach_the_session_in_order(tmp_path: Path) -> None:
    """A rule's faults: replies held first (stall_replies), messages sent in
    frames, then after the last (delayed) message a ping, a pause, a drop."""
    path = tmp_path / "faults.toml"
    path.write_text(
        '[[rule]]\ntext = "go"\nstall_replies = 2\nfragments = 3\nping = "hb"\n'
        'pause_reading = 1\ndrop = true\n'
        '[[rule.send]]\ntext = "first"\n[[rule.send]]\ntext = "second"\ndelay = 0.5\n')
    clock = Clock()
    strategy = ScriptedStrategyFactory().create(
        {"rules": "faults.toml"}, StrategyContext(clock=clock, config_dir=tmp_path, route="/f"))
    session = RecordingSession()
    strategy.connection_opened(session)
    assert strategy.message_received(session, "go") is None
    assert session.faults == [("hold_writes", 2.0), ("send_fragmented", "first", 3)]
    clock.advance(0.5)
    assert session.faults[2:] == [("send_fragmented", "second", 3), ("ping", b"hb", 10.0),
                                  ("pause_reading", 1.0), ("drop",)]
    strategy.connection_closed(session, 1006, "")
    assert not clock.getDelayedCalls()
