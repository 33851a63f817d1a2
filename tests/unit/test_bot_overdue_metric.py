"""
The core's handoffs of an overdue bot (issue 22): counted in
C{wsdaemon_bot_handoffs_total{reason="overdue"}}, beside the handoffs the
bots decided, on the real driver, a memory store and a L{Clock}.
"""

from __future__ import annotations

from tests.unit.test_support_bot import ROUTE, BotDesk
from tests.unit.test_support_bot_restart import restarted
from wsdaemon.conversations.effects import Measure, Metric
from wsdaemon.conversations.model import BOT_GRACE
from wsdaemon.support.metrics import MAX_ROUTES, ConversationCollector, ConversationMeasures


def handoffs(desk: BotDesk) -> dict[str, float]:
    """What /metrics says of the bots' handoffs, from the driver's measures."""
    measures = ConversationMeasures()
    for effect in desk.ports.of(Measure):
        measures.observe(effect)
    collector = ConversationCollector(measures, lambda: desk.driver.inbox, desk.clock.seconds,
                                      desk.bots.counts)
    families = {f.name: f for f in collector.collect()}
    return {s.labels["reason"]: s.value for s in families["wsdaemon_bot_handoffs"].samples
            if s.name == "wsdaemon_bot_handoffs_total" and s.labels["route"] == ROUTE}


def test_an_overdue_handoff_is_counted() -> None:
    """The daemon dies while the refund rule's messages wait; the one started
    again hands it over once overdue: one handoff, reason overdue, measured
    BOT_GRACE after it was due."""
    first = BotDesk()
    first.say("I want a refund")
    again = restarted(first)
    again.clock.advance(3 + BOT_GRACE)
    assert not again.conversation().with_bot
    assert handoffs(again) == {"overdue": 1}
    [measure] = [m for m in again.ports.of(Measure) if m.metric is Metric.BOT_OVERDUE]
    assert (measure.route, measure.seconds) == (ROUTE, BOT_GRACE)


def test_a_handoff_the_bot_made_is_not_overdue() -> None:
    """The refund rule's own handoff (3 s later) is the bot's: rule, not overdue."""
    desk = BotDesk()
    desk.say("I want a refund")
    desk.clock.advance(3 + BOT_GRACE)
    assert not desk.conversation().with_bot
    assert handoffs(desk) == {"rule": 1}


def test_overdue_routes_are_bounded() -> None:
    measures = ConversationMeasures()
    for n in range(MAX_ROUTES + 2):
        measures.observe(Measure(Metric.BOT_OVERDUE, f"/r{n}", 1.0))
    measures.observe(Measure(Metric.BOT_OVERDUE, "/r0", 1.0))
    assert len(measures.overdue) == MAX_ROUTES + 1
    assert measures.overdue["(other)"] == 2 and measures.overdue["/r0"] == 2
    assert not measures.histograms
