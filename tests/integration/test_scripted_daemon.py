"""
The scripted strategy in the real daemon, on the shipped etc/wsdaemon.ini
and etc/bot.rules.toml, through the independent `websockets` client.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import ClientConnection, connect

from tests.daemon import REPO, Daemon, copy_shipped_etc, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon on (a copy of) the shipped config for the whole module."""
    config = copy_shipped_etc(tmp_path_factory.mktemp("shipped") / "etc")
    daemon = Daemon(config, cwd=config.parent)
    yield daemon
    daemon.stop()


@pytest.fixture
def bot(shipped: Daemon) -> Iterator[ClientConnection]:
    with connect(f"{shipped.url}/bot") as client:
        greeting = client.recv(timeout=5)
        assert isinstance(greeting, str) and greeting.startswith("Hello!")
        yield client


def test_greetings_in_order_with_delay(shipped: Daemon) -> None:
    """Greetings arrive in order, the second after its delay."""
    with connect(f"{shipped.url}/bot") as client:
        started = time.monotonic()
        first = client.recv(timeout=5)
        second = client.recv(timeout=5)
        assert "Your session is " in str(first)
        assert str(second).startswith("Try:")
        assert time.monotonic() - started >= 0.4


def test_text_regex_and_default(bot: ClientConnection) -> None:
    """Exact text, regex groups, the counter and the default rule."""
    bot.recv(timeout=5)  # second greeting
    bot.send("ping")
    assert bot.recv(timeout=5) == "pong"
    bot.send("hello Ada")
    assert bot.recv(timeout=5) == "Hello, Ada! This is message 2 on this connection."
    bot.send("add 2 3")
    assert bot.recv(timeout=5) == "You asked me to add 2 and 3; I only echo numbers."
    bot.send("你好")
    assert bot.recv(timeout=5) == "Sorry, I do not understand: 你好"


def test_once_and_cycle(bot: ClientConnection) -> None:
    """A once rule answers once per connection; a cycle goes round."""
    bot.recv(timeout=5)
    bot.send("secret")
    assert "42" in str(bot.recv(timeout=5))
    bot.send("secret")
    assert bot.recv(timeout=5) == "Sorry, I do not understand: secret"
    replies = []
    for _ in range(4):
        bot.send("colour")
        replies.append(bot.recv(timeout=5))
    assert replies == ["red", "green", "blue", "red"]


def test_json_subscribe_ticker_and_unsubscribe(bot: ClientConnection) -> None:
    """JSON subscribe ticker and unsubscribe."""
    bot.recv(timeout=5)
    bot.send(json.dumps({"type": "subscribe", "channel": "prices"}))
    assert json.loads(bot.recv(timeout=5)) == {"type": "subscribed", "channel": "prices"}
    ticks = [json.loads(bot.recv(timeout=3)) for _ in range(2)]
    assert [t["seq"] for t in ticks] == [1, 2] and ticks[0]["type"] == "price"
    bot.send(json.dumps({"type": "unsubscribe"}))
    assert json.loads(bot.recv(timeout=5)) == {"type": "unsubscribed"}
    with pytest.raises(TimeoutError):
        bot.recv(timeout=1.5)


def test_nested_json_fields(bot: ClientConnection) -> None:
    """Nested JSON fields match and fill templates."""
    bot.recv(timeout=5)
    bot.send(json.dumps({"type": "order", "order": {"side": "buy", "id": 12},
                         "user": {"name": "ann"}}))
    assert json.loads(bot.recv(timeout=5)) == {"type": "ack", "id": 12, "user": "ann"}


def test_binary(bot: ClientConnection) -> None:
    """Binary messages match by hex prefix or as any binary."""
    bot.recv(timeout=5)
    bot.send(b"\xca\xfe\x00\x01")
    assert bot.recv(timeout=5) == b"\xbe\xef"
    bot.send(b"\x00")
    assert bot.recv(timeout=5) == b"binary received"


def test_delayed_sequence(bot: ClientConnection) -> None:
    """A reply of several messages keeps its delays."""
    bot.recv(timeout=5)
    bot.send("slow")
    started = time.monotonic()
    assert bot.recv(timeout=5) == "working on it..."
    assert bot.recv(timeout=5) == "still working..."
    assert str(bot.recv(timeout=5)).startswith("done at 20")
    assert time.monotonic() - started >= 2.3


def test_silent_rule(bot: ClientConnection) -> None:
    """A rule without replies stays silent."""
    bot.recv(timeout=5)
    bot.send("# a comment")
    bot.send("ping")
    assert bot.recv(timeout=5) == "pong"


@pytest.mark.parametrize(("message", "code", "reason"),
                         [("bye", 1000, "bye"), ("kick me", 4001, "kicked by rule")])
def test_close_with_code(bot: ClientConnection, message: str, code: int, reason: str) -> None:
    """A rule closes the connection with its code and reason."""
    bot.recv(timeout=5)
    bot.send(message)
    if message == "bye":
        assert bot.recv(timeout=5) == "Goodbye!"
    with pytest.raises(Exception) as info:
        bot.recv(timeout=5)
    closed = getattr(info.value, "rcvd", None)
    assert closed is not None, info.value
    assert (closed.code, closed.reason) == (code, reason)
    if code == 1000:
        assert isinstance(info.value, ConnectionClosedOK)


def test_bad_rules_file_refused_with_both_files_and_lines(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    """--check-config and startup name the INI line and the rules file's line."""
    shutil.copy(REPO / "etc" / "bot.rules.toml", tmp_path / "bot.rules.toml")
    rules = tmp_path / "bot.rules.toml"
    text = rules.read_text().replace("regex = '^add (\\d+) (\\d+)$'", "regex = '^add (\\d+'")
    rules.write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith("regex = '^add"))
    config = write_config("[wsdaemon]\nlisten = tcp:0\n[route:/bot]\nstrategy = scripted\n"
                          "rules = bot.rules.toml\n")
    for extra in (["--check-config"], []):
        result = run_cli("--config", str(config), *extra)
        assert result.returncode == 1
        assert (f"{config}:5: [route:/bot] rules: {rules}:{line}: regex: bad regular "
                "expression") in result.stderr


def test_rules_nested_too_deeply_are_one_line_everywhere(
    write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]
) -> None:
    """Rules nested 3,000 deep (the parser's RecursionError: 3,000 lines of
    traceback at start-up, a traceback on SIGHUP) are one line naming the
    INI line, the rules file and its line: --check-config and start-up exit
    1; a reload is refused and the running rules stay."""
    config = write_config("[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n[route:/bot]\n"
                          "strategy = scripted\nrules = bot.toml\n")
    rules = config.parent / "bot.toml"
    good = '[[rule]]\ntext = "ping"\nreply = "pong"\n'
    deep = good + "json = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n"
    expected = (f"{config}:5: [route:/bot] rules: {rules}:4: nested too deeply (more than 64 "
                "levels of tables, arrays and dotted keys)")
    rules.write_text(deep)
    for extra in (["--check-config"], []):
        result = run_cli("--config", str(config), *extra)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [f"wsdaemon: config error: {expected}"]
    rules.write_text(good)
    daemon = start_daemon(config)
    rules.write_text(deep)
    daemon.process.send_signal(signal.SIGHUP)
    log = daemon.wait_for_log("reload refused")
    assert expected in log and "Traceback" not in log and "RecursionError" not in log
    assert len([line for line in log.splitlines() if "nested too deeply" in line]) == 1
    with connect(f"{daemon.url}/bot") as bot:
        bot.send("ping")
        assert bot.recv(timeout=5) == "pong"


def test_a_slow_regex_cannot_stall_the_daemon(write_config: Callable[..., Path],
                                              start_daemon: Callable[..., Daemon]) -> None:
    """The classic catastrophic-backtracking rule answers a hostile message at
    once (RE2 runs in linear time) and a client on another route never waits."""
    config = write_config("""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1

        [route:/bot]
        strategy = scripted
        rules = redos.toml

        [route:/echo]
        strategy = echo
    """)
    (config.parent / "redos.toml").write_text(
        "[[rule]]\nregex = '^(\\w+\\s?)*$'\nreply = 'words'\n\n[default]\nreply = 'other'\n")
    daemon = start_daemon(config)
    with connect(f"{daemon.url}/bot") as bot, connect(f"{daemon.url}/echo") as echo:
        bot.send("a" * 60 + "!")  # Python's re would take longer than the universe
        echo.send("still there?")
        assert echo.recv(timeout=2) == "still there?"
        assert bot.recv(timeout=2) == "other"
        bot.send("a few words here")
        assert bot.recv(timeout=2) == "words"
