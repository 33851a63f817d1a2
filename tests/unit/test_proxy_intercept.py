"""
A proxy route's intercept rules (issue 25, item 4): the file's checks, with
lines, and what an Interceptor sends, driven by task.Clock.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from wsdaemon.strategies.api import OptionError
from wsdaemon.strategies.proxy.intercept import (
    MAX_HELD,
    InterceptError,
    Interceptor,
    parse_intercepts,
)
from wsdaemon.strategies.proxy.options import check_options

RULES = """
[[intercept]]
from = "client"
json = { type = "subscribe" }
replace = '{{"type": "subscribe", "channel": "test-{json.channel}"}}'

[[intercept]]
from = "client"
text = "secret"
drop = true
respond = "intercepted: {message} (#{counter})"

[[intercept]]
from = "server"
regex = '^price (?P<value>\\d+)$'
delay = 0.5
before = "price feed delayed"
replace = "price {match.value}.00"
times = 2

[[intercept]]
from = "server"
binary_prefix = "00"
after = ["binary {message}"]
"""


class Wire:
    """Both sides of one proxied connection, as lists."""

    def __init__(self, rules: str = RULES) -> None:
        self.clock = Clock()
        self.client: list[str | bytes] = []
        self.server: list[str | bytes] = []
        self.overflows: list[str] = []
        self.interceptor = Interceptor(
            parse_intercepts(rules.encode(), Path("intercept.toml")), self.clock, "s1", "/live",
            {"client": self.client.append, "server": self.server.append},
            self.overflows.append)


def test_rewrites_drops_and_answers_for_the_other_side() -> None:
    """A client's JSON is rewritten with its own field; a secret is dropped
    and answered from the proxy; other messages pass unchanged."""
    wire = Wire()
    wire.interceptor.handle("client", json.dumps({"type": "subscribe", "channel": "prices"}))
    wire.interceptor.handle("client", "secret")
    wire.interceptor.handle("client", "hello")
    assert [json.loads(m) for m in wire.server[:1]] == [{"type": "subscribe",
                                                          "channel": "test-prices"}]
    assert wire.server[1:] == ["hello"]
    assert wire.client == ["intercepted: secret (#2)"]


def test_delay_keeps_order_and_times_counts() -> None:
    """A delayed server message holds those after it (order kept); the
    rule fires twice, then messages pass as they are."""
    wire = Wire()
    for n in (1, 2, 3):
        wire.interceptor.handle("server", f"price {n}")
    wire.interceptor.handle("server", "news")
    assert wire.client == []
    wire.clock.advance(0.5)
    assert wire.client == ["price feed delayed", "price 1.00"]
    wire.clock.advance(0.5)
    assert wire.client == ["price feed delayed", "price 1.00", "price feed delayed",
                           "price 2.00", "price 3", "news"]
    # The client's side is not held by the server's delay.
    wire.interceptor.handle("server", b"\x00\x01")
    assert wire.client[-2:] == [b"\x00\x01", "binary 0001"]


def test_held_messages_are_bounded_and_dropped_on_close() -> None:
    wire = Wire()
    wire.interceptor.handle("server", "price 1")
    for n in range(MAX_HELD):
        wire.interceptor.handle("server", f"m{n}")
    assert wire.overflows == []
    wire.interceptor.handle("server", "one too many")
    assert wire.overflows == ["server"]
    wire.clock.advance(1)
    assert wire.client == [], "nothing is sent once stopped"
    other = Wire()
    other.interceptor.handle("server", "price 1")
    other.interceptor.stop()
    other.clock.advance(1)
    assert other.client == [] and not other.clock.getDelayedCalls()


@pytest.mark.parametrize(("text", "line", "words"), [
    ('[[intercept]]\nfrom = "client"\ntext = "a"\n', 1, "does nothing"),
    ('[[intercept]]\nfrom = "upstream"\ndrop = true\n', 2, "from"),
    ('[[intercept]]\nfrom = "client"\ntext = "a"\ndrop = true\nreplace = "b"\n', 5,
     "replace or drop"),
    ('[[intercept]]\nfrom = "client"\ntext = "a"\nreplace = "{json.x}"\n', 4,
     "needs a rule that matches JSON"),
    ('[[intercept]]\nfrom = "client"\ntext = "a"\nreplace = "{query.x}"\n', 4,
     "not available"),
    ('[[intercept]]\nfrom = "client"\nregex = "(a"\ndrop = true\n', 3, "regex"),
    ('[[intercept]]\nfrom = "client"\ndelay = 1000\n', 3, "delay"),
    ('[[intercept]]\nfrom = "client"\ndrop = true\nrewrite = "x"\n', 4, "unknown key"),
    ('[[rule]]\ntext = "a"\n', 1, "[[intercept]]"),
])
def test_mistakes_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(InterceptError) as caught:
        parse_intercepts(text.encode(), Path("i.toml"))
    assert f"i.toml:{line}:" in str(caught.value)
    assert words in str(caught.value)


def test_the_route_option_reads_the_file(tmp_path: Path) -> None:
    (tmp_path / "i.toml").write_text('[[intercept]]\nfrom = "client"\ndrop = true\n')
    settings = check_options({"upstream": "ws://127.0.0.1:1/x", "intercept": "i.toml"},
                             tmp_path)
    assert settings.intercepts is not None and len(settings.intercepts.client) == 1
    with pytest.raises(OptionError) as caught:
        check_options({"upstream": "ws://127.0.0.1:1/x", "intercept": "none.toml"}, tmp_path)
    assert caught.value.key == "intercept" and caught.value.path == tmp_path / "none.toml"
    assert "cannot read" in caught.value.expected


