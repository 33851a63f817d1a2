"""
A bot's rules file (issue 22, item 5): the scripted format read with
C{bot=True}: C{handoff} taken (true or a reason), refused on a scripted
route's rules; what acts on a WebSocket connection refused in a bot's file,
each with its line. And the engine's C{answer}, which says which rule
answered.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from tests.daemon import REPO
from wsdaemon.strategies.scripted.rules import RulesError, load_rules, parse_rules
from wsdaemon.strategies.scripted.strategy import ScriptedStrategy


def bot_rules(text: str, *, bot: bool = True):  # type: ignore[no-untyped-def]
    return parse_rules(textwrap.dedent(text).lstrip().encode(), Path("bot.toml"), bot=bot)


def test_handoff_true_or_a_reason() -> None:
    """handoff = true gives the rule's name as the reason; a string is the reason."""
    rules = bot_rules("""
        [[rule]]
        name = "refunds"
        regex = '(?i)refund'
        reply = "Let me find someone for that."
        handoff = true

        [[rule]]
        regex = 'invoice'
        handoff = "  invoice   question "

        [[rule]]
        text = "hi"
        reply = "Hello!"
        handoff = false

        [default]
        reply = "Sorry?"
        handoff = true
        """)
    assert [r.handoff for r in rules.rules] == ["refunds", "invoice question", None]
    assert rules.default is not None and rules.default.handoff == "default"


def test_handoff_refused_outside_a_bot() -> None:
    """A scripted route's rules cannot hand over: refused with the line, saying where it works."""
    with pytest.raises(RulesError) as caught:
        bot_rules("""
            [[rule]]
            text = "x"
            handoff = true
            """, bot=False)
    assert caught.value.line == 3
    assert "only a bot's rules hand a conversation over" in caught.value.message
    assert "bot = FILE" in caught.value.message


@pytest.mark.parametrize(("text", "line", "expected"), [
    ('[[rule]]\ntext = "x"\nhandoff = 3\n', 3, "handoff: expected true, false or a reason"),
    ('[[rule]]\ntext = "x"\nhandoff = ""\n', 3, "handoff: expected true, false or a reason"),
    ('[[rule]]\ntext = "x"\nclose = 1000\n', 3, "close: not in a bot's rules (acts on a "
                                                "WebSocket connection"),
    ('[[rule]]\ntext = "x"\nreply = "a"\ndrop = true\n', 4, "drop: not in a bot's rules"),
    ('[[rule]]\ntext = "x"\nreply = "a"\nbroadcast = true\n', 4, "broadcast: not in a bot's"),
    ('[[rule]]\ntext = "x"\nscenario = "s"\nset_state = "b"\n', 3, "scenario: not in a bot's "
                                                                   "rules (a scenario's state"),
    ('[[rule]]\nwhen = { query = { a = "1" } }\nreply = "a"\n', 2, "when: not in a bot's"),
    ('[[rule]]\ntext = "x"\nsteps = [{ send = "a" }]\n', 3, "steps: not in a bot's rules"),
    ('[[rule]]\ntext = "x"\n[[rule.send]]\nhex = "00"\n', 4, "hex: not in a bot's rules (a bot "
                                                             "writes text messages)"),
    ('[handshake]\ndelay = 1\n', 1, "handshake: not in a bot's rules"),
    ('[[greeting]]\nbase64 = "AA=="\n', 2, "base64: not in a bot's rules"),
    ('[[rule]]\ntext = "x"\nhandof = true\n', 3, "did you mean handoff?"),
])
def test_what_a_bot_cannot_do_is_refused_with_its_line(text: str, line: int,
                                                      expected: str) -> None:
    """Each key that acts on a connection (or would be shared by every visitor) names its line."""
    with pytest.raises(RulesError) as caught:
        bot_rules(text)
    assert expected in caught.value.message
    assert caught.value.line == line


def test_a_bot_keeps_text_delays_templates_and_greetings() -> None:
    """What a bot does use loads as for a scripted route."""
    rules = bot_rules("""
        [[greeting]]
        text = "Hi, I am the bot."

        [[rule]]
        regex = 'order (?P<n>\\d+)'
        once = true
        [[rule.send]]
        text = "Looking up order {match.n}..."
        [[rule.send]]
        text = "Order {match.n} ships tomorrow."
        delay = 1.5
        """)
    [rule] = rules.rules
    assert rule.once and [m.delay for m in rule.messages] == [0.0, 1.5]
    assert len(rules.greetings) == 1


def test_answer_says_which_rule_answered() -> None:
    """answer returns the rule with the reply; no rule and no [default]: (None, None)."""
    rules = bot_rules("""
        [[rule]]
        name = "hello"
        text = "hi"
        reply = "Hello!"
        """)
    engine = ScriptedStrategy(rules, Clock())

    class Session:
        session_id = "s1"
        route = "/support"

        def send(self, message: str | bytes) -> bool:
            return True

    rule, reply = engine.answer(Session(), "hi")  # type: ignore[arg-type]
    assert rule is not None and rule.name == "hello" and reply == "Hello!"
    assert engine.answer(Session(), "what?") == (None, None)  # type: ignore[arg-type]
    assert engine.message_received(Session(), "hi") == "Hello!"  # type: ignore[arg-type]


def test_the_shipped_bot_example_loads_as_a_bot() -> None:
    """etc/support-bot.toml: a greeting, delays, a rule that hands over, [default]."""
    rules = load_rules(REPO / "etc" / "support-bot.toml", bot=True)
    assert len(rules.greetings) == 1 and rules.default is not None
    assert any(m.delay for r in rules.rules for m in r.messages)
    assert [r.handoff for r in rules.rules if r.handoff] == ["refund request"]
    engine = ScriptedStrategy(rules, Clock())

    class Session:
        session_id = "s1"
        route = "/support"

        def send(self, message: str | bytes) -> bool:
            return True

    rule, reply = engine.answer(Session(), "Where is order #12345?")  # type: ignore[arg-type]
    assert rule is not None and rule.name == "order status"
    rule, reply = engine.answer(Session(), "can I get a refund")  # type: ignore[arg-type]
    assert rule is not None and rule.handoff == "refund request"
