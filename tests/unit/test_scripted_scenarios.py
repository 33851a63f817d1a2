"""
Scenarios of the scripted strategy (WireMock's): a named state shared by
every connection of the route; a rule fires only in its C{when_state} and
moves the scenario to its C{set_state}; reset and replaced rules start each
scenario again in "Started"; the loader refuses mistakes with their line.
Broadcast rules, and step sequences (send, expect within a time, close),
each expectation journalled.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from wsdaemon.interfaces import IJournalNotes, IScenarios
from wsdaemon.strategies.scripted.rules import RulesError, parse_rules
from wsdaemon.strategies.scripted.strategy import ScriptedStrategy
from wsdaemon.testing import RecordingSession

CHECKOUT = """
    [[rule]]
    text = "pay"
    scenario = "checkout"
    when_state = "Started"
    set_state = "Paid"
    reply = "paid"

    [[rule]]
    text = "pay"
    scenario = "checkout"
    when_state = "Paid"
    reply = "already paid"

    [[rule]]
    text = "status"
    scenario = "checkout"
    when_state = "Paid"
    reply = "status: paid"

    [[rule]]
    text = "cancel"
    scenario = "checkout"
    set_state = "Started"
    reply = "cancelled"

    [default]
    reply = "status: open"
"""


def strategy(rules: str = CHECKOUT) -> ScriptedStrategy:
    return ScriptedStrategy(parse_rules(textwrap.dedent(rules).encode(), Path("r.toml")), Clock())


def opened(bot: ScriptedStrategy, name: str) -> RecordingSession:
    session = RecordingSession(session_id=name, route="/shop")
    bot.connection_opened(session)
    return session


def test_two_connections_share_the_scenario() -> None:
    """One connection's rule moves the state; the other connection's next
    message sees it; a rule without when_state fires in any state."""
    bot = strategy()
    verifyObject(IScenarios, bot)
    alice, bob = opened(bot, "a"), opened(bot, "b")
    assert bot.scenarios() == {"checkout": "Started"}
    assert bot.message_received(bob, "status") == "status: open"
    assert bot.message_received(alice, "pay") == "paid"
    assert bot.scenarios() == {"checkout": "Paid"}
    assert bot.message_received(bob, "status") == "status: paid"
    assert bot.message_received(bob, "pay") == "already paid"
    assert bot.message_received(bob, "cancel") == "cancelled"
    assert bot.message_received(alice, "status") == "status: open"


def test_state_outlives_connections_and_reset_starts_again() -> None:
    """The state is the route's: a connection closing keeps it; reset and
    replaced rules put every scenario back in "Started"."""
    bot = strategy()
    alice = opened(bot, "a")
    bot.message_received(alice, "pay")
    bot.connection_closed(alice, 1000, "")
    bob = opened(bot, "b")
    assert bot.message_received(bob, "status") == "status: paid"
    bot.reset()
    assert bot.scenarios() == {"checkout": "Started"}
    bot.message_received(bob, "pay")
    bot.replace_rules(textwrap.dedent(CHECKOUT).encode())
    assert bot.scenarios() == {"checkout": "Started"}
    bot.replace_rules(b'[default]\nreply = "x"\n')
    assert bot.scenarios() == {}


def test_set_scenario_moves_it_for_every_connection() -> None:
    """set_scenarios (the admin API's PUT) takes any state name; an unknown
    scenario is a KeyError, an empty or too long state a ValueError, and
    either changes nothing."""
    bot = strategy()
    alice = opened(bot, "a")
    bot.set_scenarios({"checkout": "Paid"})
    assert bot.message_received(alice, "status") == "status: paid"
    bot.set_scenarios({"checkout": "Shipped"})  # a state no rule names: nothing fires
    assert bot.message_received(alice, "pay") == "status: open"
    with pytest.raises(KeyError):
        bot.set_scenarios({"checkout": "Paid", "basket": "Paid"})
    with pytest.raises(ValueError):
        bot.set_scenarios({"checkout": " "})
    with pytest.raises(ValueError):
        bot.set_scenarios({"checkout": "x" * 201})
    assert bot.scenarios() == {"checkout": "Shipped"}


def test_a_rule_with_delays_moves_the_state_at_once() -> None:
    """The state moves when the rule answers, not when its delayed messages go."""
    clock = Clock()
    rules = parse_rules(textwrap.dedent("""
        [[rule]]
        text = "go"
        scenario = "s"
        set_state = "Gone"
        [[rule.send]]
        text = "later"
        delay = 5
    """).encode(), Path("r.toml"))
    bot = ScriptedStrategy(rules, clock)
    session = opened(bot, "a")
    bot.message_received(session, "go")
    assert bot.scenarios() == {"s": "Gone"}


@pytest.mark.parametrize(("rules", "line", "words"), [
    ('[[rule]]\ntext = "a"\nwhen_state = "Paid"\n', 3, "when_state: needs scenario"),
    ('[[rule]]\ntext = "a"\nset_state = "Paid"\n', 3, "set_state: needs scenario"),
    ('[[rule]]\ntext = "a"\nscenario = "s"\n', 3, "scenario: needs when_state, set_state"),
    ('[[rule]]\ntext = "a"\nscenario = ""\nset_state = "x"\n', 3,
     "scenario: expected a non-empty name"),
    ('[[rule]]\ntext = "a"\nscenario = "s"\nset_state = 3\n', 4,
     "set_state: expected a non-empty name"),
    ('[[rule]]\ntext = "a"\nscenario = "s"\nset_state = "Paid"\n\n'
     '[[rule]]\ntext = "b"\nscenario = "s"\nwhen_state = "Payd"\n', 9,
     "when_state: no rule moves scenario 's' to 'Payd' (did you mean Paid?); its states: "
     "'Paid', 'Started'"),
    ('[default]\nscenario = "s"\nset_state = "x"\n', 2, "unknown key 'scenario' in [default]"),
])
def test_scenario_mistakes_name_their_line_and_key(rules: str, line: int, words: str) -> None:
    """Each mistake is refused at load with the line of the key at fault."""
    with pytest.raises(RulesError) as info:
        parse_rules(rules.encode(), Path("r.toml"))
    assert words in info.value.message
    assert info.value.line == line


BROADCAST = """
    [[rule]]
    regex = '^say (?P<text>.+)$'
    broadcast = true
    reply = "{session}: {match.text}"

    [[rule]]
    text = "later"
    broadcast = true
    close = 1000
    [[rule.send]]
    text = "in a second"
    delay = 1
"""


def test_broadcast_reaches_every_connection_of_the_route() -> None:
    """A broadcast rule's messages, filled from the sender's message, go to
    the sender and every other open connection; closed ones get nothing."""
    bot = strategy(BROADCAST)
    alice, bob, carol = opened(bot, "a"), opened(bot, "b"), opened(bot, "c")
    bot.connection_closed(carol, 1000, "")
    assert bot.message_received(alice, "say hi") is None
    assert alice.sent == ["a: hi"] and bob.sent == ["a: hi"] and carol.sent == []


def test_a_delayed_broadcast_goes_on_each_connections_clock_and_close_stays_the_senders(
) -> None:
    """Delays run per receiving connection (cancelled when it closes); the
    rule's close closes only the sender."""
    clock = Clock()
    bot = ScriptedStrategy(parse_rules(textwrap.dedent(BROADCAST).encode(), Path("r.toml")),
                           clock)
    alice, bob, carol = opened(bot, "a"), opened(bot, "b"), opened(bot, "c")
    bot.message_received(alice, "later")
    bot.connection_closed(carol, 1000, "")
    clock.advance(1)
    assert alice.sent == ["in a second"] and bob.sent == ["in a second"] and carol.sent == []
    assert alice.closed == (1000, "") and bob.closed is None


def test_a_broadcast_with_nothing_to_send_is_refused() -> None:
    """broadcast = true on a rule without messages is a mistake, named with its line."""
    with pytest.raises(RulesError) as info:
        parse_rules(b'[[rule]]\ntext = "a"\nbroadcast = true\n', Path("r.toml"))
    assert info.value.line == 3 and "broadcast: the rule has no messages" in info.value.message


STEPS = """
    [[rule]]
    name = "login"
    text = "start"
    steps = [
        { send = "who are you?" },
        { expect = { regex = '^user \\w+$' }, within = 2 },
        { send = "welcome", delay = 0.5 },
        { expect = "bye" },
        { close = 1000 },
    ]
    fail_close = { code = 4002, reason = "script failed" }

    [default]
    reply = "rules: {message}"
"""


@implementer(IJournalNotes)
class NotedSession(RecordingSession):
    """A recording session that keeps the journal notes it is given."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id=session_id, route="/shop")
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def stepped() -> tuple[ScriptedStrategy, NotedSession, Clock]:
    clock = Clock()
    bot = ScriptedStrategy(parse_rules(textwrap.dedent(STEPS).encode(), Path("r.toml")), clock)
    session = NotedSession("a")
    bot.connection_opened(session)
    return bot, session, clock


def test_steps_run_through_and_are_journalled() -> None:
    """Send, expect (met), a delayed send, expect, close: each expectation met
    is noted, and the end; the messages a step takes never reach the rules."""
    bot, session, clock = stepped()
    bot.message_received(session, "start")
    assert session.sent == ["who are you?"]
    assert bot.message_received(session, "user ann") is None
    clock.advance(0.5)
    assert session.sent == ["who are you?", "welcome"]
    bot.message_received(session, "bye")
    assert session.closed == (1000, "")
    assert session.notes == [
        "rule login step 2: got 'user ann' as expected (regex = '^user \\w+$')",
        "rule login step 4: got 'bye' as expected (text = 'bye')",
        "rule login: steps done (closed 1000)"]


def test_a_step_missed_in_time_is_journalled_and_closes_with_fail_close() -> None:
    """Nothing within the expect step's time: a note says what was expected,
    and the connection is closed with the rule's fail_close."""
    bot, session, clock = stepped()
    bot.message_received(session, "start")
    clock.advance(2)
    assert session.notes == ["rule login step 2 failed: expected regex = '^user \\w+$' "
                             "within 2 s, got nothing"]
    assert session.closed == (4002, "script failed")


def test_a_wrong_message_fails_the_step_and_the_rules_answer_later_ones() -> None:
    """A message that does not match fails the step (noted with what came);
    without fail_close the connection stays open and the rules answer again."""
    rules = STEPS.replace('    fail_close = { code = 4002, reason = "script failed" }\n', "")
    clock = Clock()
    bot = ScriptedStrategy(parse_rules(textwrap.dedent(rules).encode(), Path("r.toml")), clock)
    session = NotedSession("a")
    bot.connection_opened(session)
    bot.message_received(session, "start")
    assert bot.message_received(session, "nobody") is None
    assert session.notes == ["rule login step 2 failed: expected regex = '^user \\w+$', "
                             "got 'nobody'"]
    assert session.closed is None
    assert bot.message_received(session, "hello") == "rules: hello"
    clock.advance(10)
    assert len(session.notes) == 1


def test_closing_or_reset_cancels_a_running_sequence() -> None:
    """A connection closed (or a reset) cancels its steps' timer: nothing is
    noted later."""
    bot, session, clock = stepped()
    bot.message_received(session, "start")
    bot.reset()
    clock.advance(5)
    assert session.notes == [] and clock.getDelayedCalls() == []


@pytest.mark.parametrize(("rules", "words"), [
    ('steps = [{ send = "a", expect = "b" }]', "steps[1]: expected exactly one of send"),
    ('steps = [{ expect = "b", within = -1 }]', "steps[1]: within: expected seconds"),
    ('steps = [{ expect = { regex = "(" } }]', "steps[1]: expect: regex"),
    ('steps = [{ close = 1006 }]', "steps[1]: close: expected code"),
    ('steps = [{ sned = "a" }]', "steps[1]: unknown key 'sned'"),
    ('steps = [{ expect = "b", delay = 1 }]', "steps[1]: delay: only a send step"),
    ('steps = []', "steps: expected a list of 1 to 100 steps"),
    ('steps = [{ send = "{mesage}" }]', "steps[1]: send: unknown placeholder {mesage}"),
    ('reply = "x"\nsteps = [{ send = "a" }]', "steps: a rule with steps says everything"),
    ('fail_close = 4000', "fail_close: only a rule with steps can fail"),
])
def test_step_mistakes_name_the_rule_line(rules: str, words: str) -> None:
    """Each mistake in steps is refused at load, naming the step and the line."""
    with pytest.raises(RulesError) as info:
        parse_rules(f'[[rule]]\ntext = "go"\n{rules}\n'.encode(), Path("r.toml"))
    assert words in info.value.message
    assert info.value.line in (3, 4)
