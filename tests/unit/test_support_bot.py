"""
A support route's bot (issue 22, item 5), on the real conversation driver,
a memory store and a L{Clock}: the scripted rules answer a new episode
(greeting, templates, delays), each reply stored then delivered as the
bot's; a handoff phrase, a rule's C{handoff} (after its delayed messages)
and a message no rule answers hand over to the operators with the reason
as a note; once an operator has it the bot stays quiet; episodes are
bounded; a bot's episode on a route without a bot is handed over.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from tests.driver_bench import ROUTE, GatedStore, RecordingPorts, cid
from wsdaemon.conversations import (
    Author,
    ConversationSettings,
    DeliverMessage,
    Inbox,
    OperatorReply,
    Resolve,
    SignalVisitor,
    VisitorMessage,
)
from wsdaemon.conversations.bot_events import LOST
from wsdaemon.conversations.model import BOT_GRACE
from wsdaemon.strategies.scripted.rules import parse_rules
from wsdaemon.support.bot import ASKED, UNMATCHED
from wsdaemon.support.bot_settings import BotSettings, Unmatched
from wsdaemon.support.bots import GONE, MAX_COUNTED_ROUTES, Bots
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.metrics import ConversationCollector, ConversationMeasures

ACK = "Thanks! An operator will answer here soon."
#: What a handoff's visitor is told with nobody online (instead of ACK).
OFFLINE = ConversationSettings().offline_message

RULES = """
    [[greeting]]
    text = "Hi, I am Robo."

    [[rule]]
    regex = '(?i)order (?P<n>\\d+)'
    reply = "Order {match.n} ships tomorrow (message {counter})."

    [[rule]]
    name = "refund"
    regex = '(?i)refund'
    handoff = "refunds need a person"
    [[rule.send]]
    text = "Let me look..."
    delay = 1
    [[rule.send]]
    text = "A colleague will take over."
    delay = 2

    [[rule]]
    regex = '(?i)slow'
    [[rule.send]]
    text = "Thinking..."
    delay = 5

    [[rule]]
    text = "once"
    once = true
    reply = "Only once per episode."
    """


class BotDesk:
    """A started driver whose operator port is the bots, one bot on ROUTE."""

    def __init__(self, rules: str = RULES, *, unmatched: Unmatched = Unmatched.HANDOFF,
                 max_episodes: int = 100, serve: bool = True,
                 store: GatedStore | None = None, start: float = 1000) -> None:
        self.clock = Clock()
        self.clock.advance(start)
        self.store = store if store is not None else GatedStore()
        self.ports = RecordingPorts(self.store)
        settings = ConversationSettings(fallback_after=0, ack_message=ACK)
        self.bots = Bots(self.ports, self.clock, max_episodes=max_episodes, visitors=self.ports)
        self.driver = ConversationDriver(self.store, Inbox(settings), self.clock, self.ports,
                                         self.bots, self.ports)
        self.bots.attach(self.driver.submit)
        assert self.driver.start().called
        parsed = parse_rules(textwrap.dedent(rules).encode(), Path("bot.toml"), bot=True)
        self.settings = BotSettings(parsed, "Robo", unmatched=unmatched)
        if serve:
            self.bot = self.bots.serve(ROUTE, self.settings)

    def say(self, text: str, visitor: str = "v1", bot: bool = True) -> None:
        """What the visitor's strategy does: submit, then hand the transition to the bots."""
        failures: list[Any] = []
        self.driver.submit(VisitorMessage(ROUTE, visitor, text, None, bot=bot)) \
            .addCallbacks(self.bots.answer, failures.append)
        assert not failures, failures

    def thread(self, visitor: str = "v1") -> list[tuple[str, str]]:
        """The visitor's and the bot's messages (the daemon's notices apart)."""
        log = self.store.inner.message_log.get(cid(visitor), {})
        return [(str(m.author), m.body) for _, m in sorted(log.items())
                if m.author is not Author.SYSTEM]

    def notices(self, visitor: str = "v1") -> list[str]:
        log = self.store.inner.message_log.get(cid(visitor), {})
        return [m.body for _, m in sorted(log.items()) if m.author is Author.SYSTEM]

    def delivered(self, visitor: str = "v1") -> list[tuple[str, str | None, str]]:
        return [(str(e.message.author), e.message.display_name, e.message.body)
                for e in self.ports.of(DeliverMessage) if e.visitor == visitor]

    def conversation(self, visitor: str = "v1") -> Any:
        return self.driver.inbox.conversation(cid(visitor))

    def notes(self, visitor: str = "v1") -> list[tuple[str, str]]:
        return [(n.operator, n.body) for n in self.conversation(visitor).notes]


def test_the_rules_answer_and_the_bot_keeps_it() -> None:
    """Greeting then the rule's reply (template filled), stored as the bot's
    and delivered named; the conversation stays the bot's, not queued."""
    desk = BotDesk()
    desk.say("Where is order 42?")
    assert desk.thread() == [
        ("visitor", "Where is order 42?"), ("bot", "Hi, I am Robo."),
        ("bot", "Order 42 ships tomorrow (message 1).")]
    assert desk.delivered() == [("bot", "Robo", "Hi, I am Robo."),
                                ("bot", "Robo", "Order 42 ships tomorrow (message 1).")]
    conversation = desk.conversation()
    assert conversation.with_bot and conversation.waiting_since is None
    assert desk.driver.inbox.waiting(10) == []
    desk.say("and order 7?")
    assert desk.thread()[-1] == ("bot", "Order 7 ships tomorrow (message 2).")
    assert desk.thread().count(("bot", "Hi, I am Robo.")) == 1, "greeted once per episode"


def test_a_handoff_phrase_hands_over_without_asking_the_rules() -> None:
    """'I want a HUMAN' (any case, whole word): handed over at once, the
    reason a note by bot, the acknowledgement sent, the wait started."""
    desk = BotDesk()
    desk.say("order 1")
    desk.say("No, I want a  HUMAN please")
    conversation = desk.conversation()
    assert not conversation.with_bot and conversation.waiting_since == desk.clock.seconds()
    assert desk.notes() == [("bot", "handed over: " + ASKED.format(phrase="HUMAN"))]
    assert desk.thread()[-1] == ("visitor", "No, I want a  HUMAN please")
    assert desk.notices()[0] == OFFLINE
    assert [c.conversation_id for c in desk.driver.inbox.waiting(10)] == [cid("v1")]
    assert len(desk.bot) == 0, "the episode is forgotten"


def test_no_phrase_inside_a_word() -> None:
    """'humanity' and 'personal' are not a request for a person."""
    desk = BotDesk()
    desk.say("order 3 is for humanity, a personal gift")
    assert desk.conversation().with_bot
    assert desk.thread()[-1] == ("bot", "Order 3 ships tomorrow (message 1).")


def test_a_rules_handoff_comes_after_its_delayed_messages() -> None:
    """The rule's messages go at their delays, then the handoff, in that order."""
    desk = BotDesk()
    desk.say("I want a refund")
    assert desk.conversation().with_bot
    desk.clock.advance(1)
    assert desk.thread()[-1] == ("bot", "Let me look...")
    assert desk.conversation().with_bot
    desk.clock.advance(2)
    assert desk.thread()[-1] == ("bot", "A colleague will take over.")
    assert not desk.conversation().with_bot
    assert desk.notes() == [("bot", "handed over: refunds need a person")]
    assert desk.notices()[0] == OFFLINE


def test_an_unmatched_message_hands_over_or_waits() -> None:
    """bot_unmatched = handoff (default) hands over; silent leaves it with the bot."""
    desk = BotDesk()
    desk.say("blah")
    assert not desk.conversation().with_bot
    assert desk.notes() == [("bot", "handed over: " + UNMATCHED)]
    quiet = BotDesk(unmatched=Unmatched.SILENT)
    quiet.say("blah")
    assert quiet.conversation().with_bot and quiet.notes() == []
    assert quiet.thread() == [("visitor", "blah"), ("bot", "Hi, I am Robo.")]


def test_once_an_operator_has_it_the_bot_stays_quiet() -> None:
    """An operator replies while the bot's delayed reply waits: it is never sent."""
    desk = BotDesk()
    desk.say("this is slow")
    desk.driver.submit(OperatorReply(cid("v1"), "alice", "I am here."))
    assert not desk.conversation().with_bot
    assert len(desk.bot) == 0
    desk.clock.advance(10)
    assert ("bot", "Thinking...") not in desk.thread()
    desk.say("order 5")
    assert desk.thread()[-1] == ("visitor", "order 5"), "the operators' conversation now"


def test_each_episode_starts_the_rules_again() -> None:
    """once and the greeting count per episode: resolved, the next message
    is the bot's again with its counters from the start."""
    desk = BotDesk()
    desk.say("once")
    desk.say("once")
    assert desk.thread().count(("bot", "Only once per episode.")) == 1
    desk.driver.submit(OperatorReply(cid("v1"), "alice", "Done."))
    desk.driver.submit(Resolve(cid("v1"), "alice"))
    desk.clock.advance(5)
    desk.say("once")
    assert desk.conversation().with_bot
    assert desk.thread().count(("bot", "Only once per episode.")) == 2
    assert desk.thread().count(("bot", "Hi, I am Robo.")) == 2


def test_episodes_are_bounded() -> None:
    """At most max_episodes remembered: the least recently active goes, its
    delayed replies cancelled (the conversation owed them: the core hands
    it over once overdue, saying so); one that owed nothing stays with the
    bot, its counters starting again, without a second greeting."""
    desk = BotDesk(max_episodes=2)
    desk.say("slow", "v1")
    desk.say("order 1", "v2")
    desk.say("order 2", "v3")
    assert len(desk.bot) == 2
    desk.say("order 3", "v4")
    desk.clock.advance(4)
    assert ("bot", "Thinking...") not in desk.thread("v1")
    assert desk.conversation("v1").with_bot
    desk.clock.advance(1 + BOT_GRACE)
    assert not desk.conversation("v1").with_bot
    assert desk.notes("v1") == [("bot", "handed over: " + LOST)]
    desk.say("order 9", "v2")
    assert desk.thread("v2")[-1] == ("bot", "Order 9 ships tomorrow (message 1)."), \
        "counters start again; no second greeting mid-episode"
    assert desk.thread("v2").count(("bot", "Hi, I am Robo.")) == 1
    assert desk.conversation("v2").with_bot


def test_a_route_without_a_bot_hands_its_bot_episodes_over() -> None:
    """A conversation left with the bot on a route that has none any more
    (a reload removed it) is handed over at the visitor's next message."""
    desk = BotDesk()
    desk.say("order 1")
    desk.bots.drop(ROUTE)
    desk.say("hello?", bot=False)
    assert not desk.conversation().with_bot
    assert desk.notes() == [("bot", "handed over: " + GONE)]


def test_a_new_rules_file_replaces_the_routes_bot() -> None:
    """serve again (a reload): the old episodes are forgotten, their timers
    cancelled; what they owed is stored, so the conversation is handed over
    once it is overdue (the core's timer is the only one left)."""
    desk = BotDesk()
    desk.say("slow")
    old = desk.bot
    desk.bots.serve(ROUTE, desk.settings)
    assert len(old) == 0
    assert [call.func.__self__ for call in desk.clock.getDelayedCalls()] == [desk.driver.timers]
    assert desk.bots.routes[ROUTE] is not old
    desk.clock.advance(5 + BOT_GRACE)
    assert ("bot", "Thinking...") not in desk.thread()
    assert desk.notes() == [("bot", "handed over: " + LOST)]


def test_bot_messages_are_the_bots_in_the_store() -> None:
    """The stored messages carry author bot and the bot's name."""
    desk = BotDesk()
    desk.say("order 8")
    log = desk.store.inner.message_log[cid("v1")]
    assert [(m.author, m.display_name) for m in log.values()][1:] == [
        (Author.BOT, "Robo"), (Author.BOT, "Robo")]


def test_a_commit_adopted_from_another_daemon_is_not_answered() -> None:
    """With daemons sharing Redis, the others are notified of the visitor's
    message too (the operators' port): only the daemon it was written to answers."""
    desk = BotDesk()
    failures: list[Any] = []
    desk.driver.submit(VisitorMessage(ROUTE, "v1", "order 4", None, bot=True)) \
        .addErrback(failures.append)
    assert not failures
    assert desk.thread() == [("visitor", "order 4")]
    assert desk.conversation().with_bot


def test_what_the_bots_did_is_counted_for_metrics() -> None:
    """Episodes, replies and handoffs by why, per route, kept across a new
    rules file; the collector shows them as counters."""
    desk = BotDesk()
    desk.say("order 1", "v1")  # greeting + reply
    desk.say("I want an agent", "v2")  # asked
    desk.say("refund", "v3")
    desk.clock.advance(3)  # two delayed messages, then the rule's handoff
    desk.say("blah", "v4")  # greeting, then unmatched
    desk.bots.serve(ROUTE, desk.settings)
    desk.say("order 2", "v5")
    desk.say("order 3", "v5")
    assert desk.bots.counts == {(ROUTE, "episode"): 5, (ROUTE, "reply"): 9,
                                (ROUTE, "asked"): 1, (ROUTE, "rule"): 1,
                                (ROUTE, "unmatched"): 1}
    collector = ConversationCollector(ConversationMeasures(), lambda: desk.driver.inbox,
                                      desk.clock.seconds, desk.bots.counts)
    families = {f.name: f for f in collector.collect()}
    [replies] = families["wsdaemon_bot_replies"].samples
    assert (replies.name, replies.labels, replies.value) == (
        "wsdaemon_bot_replies_total", {"route": ROUTE}, 9)
    [episodes] = [s for s in families["wsdaemon_bot_episodes"].samples
                  if s.name.endswith("_total")]
    assert episodes.value == 5
    handoffs = {s.labels["reason"]: s.value for s in families["wsdaemon_bot_handoffs"].samples
                if s.name.endswith("_total")}
    assert handoffs == {"asked": 1, "rule": 1, "unmatched": 1}


def test_counted_routes_are_bounded() -> None:
    """Past MAX_COUNTED_ROUTES routes, counts go under "(other)"."""
    bots = Bots(RecordingPorts(GatedStore()), Clock())
    for n in range(MAX_COUNTED_ROUTES + 3):
        bots.count(f"/r{n}", "reply")
    bots.count("/r0", "asked")
    assert bots.counts[("(other)", "reply")] == 3
    assert bots.counts[("/r0", "asked")] == 1
    assert len({route for route, _ in bots.counts}) == MAX_COUNTED_ROUTES + 1


def typing(desk: BotDesk, visitor: str = "v1") -> list[tuple[bool, str | None]]:
    return [(e.on, e.name) for e in desk.ports.of(SignalVisitor)
            if e.signal == "typing" and e.visitor == visitor]


def test_the_visitor_sees_the_bot_typing_while_a_reply_waits() -> None:
    """On while a delayed message waits, off once the last went; none for
    replies sent at once."""
    desk = BotDesk()
    desk.say("order 1")
    assert typing(desk) == []
    desk.say("I want a refund")  # two messages, at 1 s and 3 s
    assert typing(desk) == [(True, "Robo")]
    desk.clock.advance(1)
    assert typing(desk) == [(True, "Robo")]
    desk.clock.advance(2)
    assert typing(desk) == [(True, "Robo"), (False, "Robo")]


def test_typing_stops_when_the_operators_take_it() -> None:
    """The episode forgotten with a reply waiting: typing off at once."""
    desk = BotDesk()
    desk.say("this is slow")
    desk.say("order 2")  # sent at once while the slow one waits: typing stays on
    assert typing(desk) == [(True, "Robo")]
    desk.driver.submit(OperatorReply(cid("v1"), "alice", "I am here."))
    assert typing(desk) == [(True, "Robo"), (False, "Robo")]
    desk.clock.advance(10)
    assert typing(desk) == [(True, "Robo"), (False, "Robo")]


def test_a_handoff_waits_for_its_own_delayed_messages() -> None:
    """A reply sent at once meanwhile (another rule) does not count as one
    of them: the handoff still comes after the rule's last message."""
    desk = BotDesk()
    desk.say("I want a refund")  # at 1 s and 3 s, then the handoff
    desk.say("order 5")
    desk.say("order 6")
    assert desk.conversation().with_bot
    desk.clock.advance(1)
    assert desk.conversation().with_bot
    desk.clock.advance(2)
    assert desk.thread()[-1] == ("bot", "A colleague will take over.")
    assert not desk.conversation().with_bot


def test_a_stopping_daemon_makes_the_handoffs_its_bots_owe() -> None:
    """A rule's handoff still waiting for its delayed messages is made when
    the bots stop (the messages are lost), then committed before the driver stops."""
    desk = BotDesk()
    desk.say("I want a refund", "v1")
    desk.say("order 3", "v2")
    desk.bots.stop()
    assert not desk.conversation("v1").with_bot
    assert desk.notes("v1") == [("bot", "handed over: refunds need a person")]
    assert desk.conversation("v2").with_bot, "nothing owed for v2"
    assert len(desk.bot) == 0
    desk.clock.advance(10)
    assert ("bot", "A colleague will take over.") not in desk.thread("v1")
    assert desk.driver.stop().called


def test_another_rules_delayed_message_does_not_bring_the_handoff_forward() -> None:
    """A slow reply (5 s) asked for before a handing-over rule (1 s, 3 s):
    the handoff still comes after the handing-over rule's last message."""
    desk = BotDesk()
    desk.say("this is slow")  # "Thinking..." at 5 s
    desk.clock.advance(3)
    desk.say("I want a refund")  # at 4 s and 6 s, then the handoff
    desk.clock.advance(1)  # 4 s: "Let me look..."
    desk.clock.advance(1)  # 5 s: "Thinking..." (not the rule's)
    assert desk.conversation().with_bot
    desk.clock.advance(1)  # 6 s: the rule's last, then the handoff
    assert desk.thread()[-1] == ("bot", "A colleague will take over.")
    assert not desk.conversation().with_bot


def test_the_bound_is_logged_once() -> None:
    """Reaching the bound is said once, not at every episode it drops."""
    events: list[Any] = []

    def observe(event: Any) -> None:
        if "episodes remembered" in str(event.get("log_format", "")):
            events.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        desk = BotDesk(max_episodes=1)
        for visitor in ("v1", "v2", "v3", "v4"):
            desk.say("order 1", visitor)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert len(desk.bot) == 1 and len(events) == 1
