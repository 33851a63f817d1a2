"""
Loading rules files: the shipped example, and every mistake refused with
its line.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.daemon import REPO
from wsdaemon.strategies.scripted.lines import TomlLines
from wsdaemon.strategies.scripted.rules import RulesError, load_rules

EXAMPLE = REPO / "etc" / "bot.rules.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "test.rules.toml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_shipped_example_uses_every_feature() -> None:
    """etc/bot.rules.toml loads and shows each feature the README documents."""
    rules = load_rules(EXAMPLE)
    assert len(rules.greetings) >= 2 and any(g.delay for g in rules.greetings)
    kinds = {r.matcher.kind for r in rules.rules if r.matcher}
    assert kinds == {"text", "regex", "json", "binary", "binary_prefix"}
    assert any(r.once for r in rules.rules)
    assert any(r.cycle for r in rules.rules)
    assert any(r.start_ticker for r in rules.rules)
    assert any(r.stop_tickers for r in rules.rules)
    assert any(r.close for r in rules.rules)
    assert any(not r.messages and not r.close for r in rules.rules)  # a silent rule
    assert any(len(r.messages) > 1 and any(m.delay for m in r.messages) for r in rules.rules)
    assert any(m.data for r in rules.rules for m in r.messages)  # binary replies
    assert rules.default is not None
    names = {n for r in rules.rules for m in r.messages if m.template for n in m.template.names}
    assert {"match.name", "match.1", "json.channel", "counter", "time"} <= names


BAD = {
    "bad regex": ("""
        [[rule]]
        regex = '(unclosed'
        reply = "x"
        """, 2, "regex: bad regular expression: missing )"),
    "backreference (not linear)": ("""
        [[rule]]
        regex = '(a)\\1'
        reply = "x"
        """, 2, "not supported by RE2, the linear-time engine rules run on: invalid escape "
                "sequence: \\1 (backreferences and look-arounds cannot run in linear time"),
    "look-ahead (not linear)": ("""
        [[rule]]
        regex = 'a(?=b)'
        reply = "x"
        """, 2, "linear time"),
    "unknown placeholder": ("""
        [[rule]]
        text = "a"

        [[rule]]
        text = "b"
        reply = "hi {mesage}"
        """, 6, "reply: unknown placeholder {mesage} (did you mean {message}?)"),
    "group the regex lacks": ("""
        [[rule]]
        regex = '^(\\d+)$'
        reply = "{match.2}"
        """, 3, "the regex has no group '2'"),
    "bad JSON path": ("""
        [[rule]]
        json = { type = "x" }
        reply = "{json.a..b}"
        """, 3, "bad JSON path 'a..b'"),
    "json placeholder in text rule": ("""
        [[rule]]
        text = "x"
        reply = "{json.a}"
        """, 3, "needs a rule that matches JSON"),
    "negative delay": ("""
        [[rule]]
        text = "x"
        [[rule.send]]
        text = "a"
        [[rule.send]]
        text = "b"
        delay = -1
        """, 7, "delay: expected seconds between 0 and 86400"),
    "delay not a number": ("""
        [[greeting]]
        text = "hi"
        delay = "soon"
        """, 3, "delay: expected a number of seconds"),
    "unknown key in rule": ("""
        [[rule]]
        text = "x"
        replay = "y"
        """, 3, "unknown key 'replay' in [[rule]] (did you mean reply?); expected one of:"),
    "unknown key in send": ("""
        [[rule]]
        text = "x"
        [[rule.send]]
        txt = "y"
        """, 4, "unknown key 'txt' in [[send]] (did you mean text?)"),
    "unknown top-level table": ("""
        [[rules]]
        text = "x"
        """, 1, "unknown key 'rules' in the rules file (did you mean rule?)"),
    "two matchers": ("""
        [[rule]]
        text = "x"
        regex = "y"
        reply = "z"
        """, 3, "binary_prefix, json_like; got text, regex"),
    "no matcher": ("""
        [[rule]]
        reply = "z"
        """, 1, "a rule needs exactly one of"),
    "bad hex": ("""
        [[rule]]
        binary = true
        [[rule.send]]
        hex = "zz"
        """, 4, "hex: not valid hex"),
    "bad base64": ("""
        [[greeting]]
        base64 = "***"
        """, 2, "base64: not valid base64"),
    "bad prefix": ("""
        [[rule]]
        binary_prefix = "xyz"
        """, 2, "binary_prefix: expected hex digits"),
    "bad close code": ("""
        [[rule]]
        text = "x"
        close = { code = 1005 }
        """, 3, "close: expected code 1000"),
    "stop of unknown ticker": ("""
        [[rule]]
        text = "start"
        start_ticker = { name = "prices", every = 1, text = "p" }
        [[rule]]
        text = "stop"
        stop_ticker = "price"
        """, 6, "no rule starts a ticker named 'price' (started: prices)"),
    "ticker too fast": ("""
        [[rule]]
        text = "start"
        [rule.start_ticker]
        name = "t"
        every = 0
        text = "p"
        """, 5, "every: expected seconds between 0.01"),
    "cycle of one": ("""
        [[rule]]
        text = "x"
        cycle = true
        reply = "only"
        """, 3, "cycle: needs at least two messages"),
    "reply and send": ("""
        [[rule]]
        text = "x"
        reply = "a"
        [[rule.send]]
        text = "b"
        """, 4, "use either reply"),
    "once not a boolean": ("""
        [[rule]]
        text = "x"
        once = "yes"
        """, 3, "once: expected true or false"),
    "invalid TOML": ("""
        [[rule]]
        text = "x
        """, 2, "invalid TOML"),
    "nothing to say": ("""
        # only a comment
        """, None, "the file says nothing about the route"),
    "fragments not a count": ("""
        [[rule]]
        text = "x"
        reply = "y"
        fragments = 0
        """, 4, "fragments: expected a whole number of frames from 1 to 10000"),
    "drop and close": ("""
        [[rule]]
        text = "x"
        close = 1000
        drop = true
        """, 4, "drop: a connection is either dropped or closed"),
    "ping payload too long": ("""
        [[rule]]
        text = "x"
        ping = "%s"
        """ % ("p" * 126), 3, "ping: the payload may be at most 125 bytes"),
    "pause_reading too long": ("""
        [[rule]]
        text = "x"
        pause_reading = 7200
        """, 3, "pause_reading: expected seconds between 0 and 3600"),
    "handshake subprotocol not a token": ("""
        [handshake]
        subprotocols = ["chat v2"]
        [default]
        reply = "x"
        """, 1, "subprotocol 'chat v2' is not an HTTP token"),
    "handshake status not an error": ("""
        [handshake]
        refuse_next = 1
        refuse_status = 200
        [default]
        reply = "x"
        """, 1, "refuse_status must be from 400 to 599"),
    "handshake unknown key": ("""
        [handshake]
        refuse = 1
        [default]
        reply = "x"
        """, 2, "unknown key 'refuse' in [handshake]"),
    "message with two bodies": ("""
        [[greeting]]
        text = "a"
        hex = "00"
        """, 3, "exactly one of text, hex or base64"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_rules_refused_with_line(case: str, tmp_path: Path) -> None:
    """Bad rules refused with line."""
    text, line, fragment = BAD[case]
    with pytest.raises(RulesError) as info:
        load_rules(write(tmp_path, text))
    assert fragment in info.value.message
    assert info.value.line == line


def test_toml_lines_address_nested_tables() -> None:
    """TOML lines address nested tables."""
    lines = TomlLines(textwrap.dedent("""
        [[rule]]
        text = "a"
        [[rule.send]]
        text = "first"
        [[rule]]
        text = '''
        multi = line
        '''
        [[rule.send]]
        delay = 3
        [default]
        reply = "d"
        """))
    assert lines.line_of(("rule", 0), "text") == 3
    assert lines.line_of(("rule", 0, "send", 0), "text") == 5
    assert lines.line_of(("rule", 1)) == 6
    assert lines.line_of(("rule", 1), "multi") == 6  # inside a string: not a key
    assert lines.line_of(("rule", 1, "send", 0), "delay") == 11
    assert lines.line_of(("default",), "reply") == 13


def test_fault_actions_and_handshake_load(tmp_path: Path) -> None:
    """Fault actions and [handshake] load into the rules, and make a rule not
    'immediate' (it cannot be answered as a plain value)."""
    rules = load_rules(write(tmp_path, """
        [handshake]
        subprotocols = ["chat.v2", "chat.v1"]
        refuse_next = 2
        refuse_headers = { Retry-After = "5" }

        [[rule]]
        text = "a"
        reply = ["one", "two"]
        fragments = 4
        stall_replies = 0.5

        [[rule]]
        text = "b"
        ping = { payload = "hb", timeout = 2 }
        pause_reading = 1.5
        drop = true

        [[rule]]
        text = "c"
        [[rule.send]]
        text = "split"
        fragments = 2
        [[rule.send]]
        text = "whole"
        """))
    plan = rules.handshake
    assert plan is not None and plan.subprotocols == ("chat.v2", "chat.v1")
    assert (plan.refuse_next, plan.refuse_status, plan.refuse_headers) == (
        2, 503, (("Retry-After", "5"),))
    a, b, c = rules.rules
    assert [m.fragments for m in a.messages] == [4, 4] and a.stall_replies == 0.5
    assert b.ping is not None and (b.ping.payload, b.ping.timeout) == (b"hb", 2.0)
    assert (b.pause_reading, b.drop) == (1.5, True)
    assert [m.fragments for m in c.messages] == [2, 1]
    assert not any(rule.immediate for rule in rules.rules)


def test_a_file_with_only_handshake_answers_nothing(tmp_path: Path) -> None:
    """A rules file with only [handshake] is loaded (as the README says,
    without rules a route answers nothing): handshakes go by it, messages
    get no answer."""
    from twisted.internet.task import Clock

    from wsdaemon.strategies.scripted.strategy import ScriptedStrategy
    from wsdaemon.testing import RecordingSession

    rules = load_rules(write(tmp_path, """
        [handshake]
        subprotocols = ["v2"]
        """))
    assert rules.handshake is not None and rules.handshake.subprotocols == ("v2",)
    assert (rules.rules, rules.greetings, rules.default) == ((), (), None)
    strategy = ScriptedStrategy(rules, Clock())
    session = RecordingSession()
    strategy.connection_opened(session)
    assert strategy.message_received(session, "anything") in (None, [])
    assert session.sent == []
