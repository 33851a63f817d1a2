"""
What conversations show on C{/metrics} (issue 22, item 8): first-response
and resolution times as histograms per route, conversations by state,
operators by availability, how long the longest-waiting visitor has
waited, and what the routes' bots did (episodes, replies, handoffs by
why; a backend bot's requests: latency, errors by kind, in flight).

As elsewhere, nothing from prometheus_client runs on the message path: the
driver's L{Measure} effects add to plain counters (L{ConversationMeasures}),
and L{ConversationCollector} reads them and the inbox when Prometheus
scrapes. A scrape walks the live conversations once for the oldest wait
(100,000 live conversations: a few milliseconds, per scrape, never per
message); the counts by state come from the inbox's indexes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from zope.interface import implementer

from wsdaemon.conversations.effects import Measure
from wsdaemon.conversations.effects import Metric as Measured
from wsdaemon.conversations.inbox import Inbox
from wsdaemon.conversations.model import Availability, Status
from wsdaemon.strategies.webhook.stats import HookStats
from wsdaemon.support.ports import IConversationMeasures

__all__ = ["BUCKETS", "FAMILIES", "ConversationCollector", "ConversationMeasures"]

#: Upper bounds (seconds) of both histograms' buckets: support times run from
#: seconds to days.
BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0, 86400.0,
           3 * 86400.0)
#: The families the collector yields (a counter's without C{_total}).
FAMILIES = (
    "wsdaemon_conversation_first_response_seconds",
    "wsdaemon_conversation_resolution_seconds",
    "wsdaemon_conversations",
    "wsdaemon_conversation_oldest_wait_seconds",
    "wsdaemon_conversation_operators",
    "wsdaemon_bot_replies",
    "wsdaemon_bot_handoffs",
    "wsdaemon_bot_episodes",
    "wsdaemon_bot_backend_latency_seconds",
    "wsdaemon_bot_backend_errors",
    "wsdaemon_bot_backend_in_flight",
)
#: Routes a histogram keeps apart; measures of more routes are counted
#: under C{"(other)"} (routes come from the config, so this is a guard).
MAX_ROUTES = 100


class _Histogram:
    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        pairs: list[tuple[str, float]] = []
        count = 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), self.buckets, strict=True):
            count += n
            pairs.append((bound, count))
        return pairs


@implementer(IConversationMeasures)
class ConversationMeasures:
    """
    The driver's measures, kept as plain numbers per metric and route.
    """

    def __init__(self) -> None:
        self.histograms: dict[tuple[Measured, str], _Histogram] = {}
        #: Told each first response (route, seconds): what visitors hear
        #: as "we usually reply within" (L{wsdaemon.support.reply_times}).
        self.on_first_response: Callable[[str, float], None] | None = None
        #: Route -> conversations the core handed over from a bot that owed
        #: an answer past its time (C{wsdaemon_bot_handoffs_total}, reason
        #: C{overdue}: the bots count the handoffs they decided).
        self.overdue: dict[str, int] = {}

    def observe(self, effect: Measure) -> None:
        if effect.metric is Measured.FIRST_RESPONSE and self.on_first_response is not None:
            self.on_first_response(effect.route, effect.seconds)
        route = effect.route
        if effect.metric is Measured.BOT_OVERDUE:  # a count, not a histogram
            if route not in self.overdue and len(self.overdue) >= MAX_ROUTES:
                route = "(other)"
            self.overdue[route] = self.overdue.get(route, 0) + 1
            return
        if (effect.metric, route) not in self.histograms and len(
                {r for _, r in self.histograms}) >= MAX_ROUTES:
            route = "(other)"
        histogram = self.histograms.setdefault((effect.metric, route), _Histogram())
        histogram.observe(max(0.0, effect.seconds))


class ConversationCollector:
    """
    A prometheus_client collector over the running conversations.

    @param inbox: returns the live conversations' view (the driver's inbox).
    @param now: the clock's time.
    @param bots: the bots' counts, (route, outcome) -> n
        (L{wsdaemon.support.bots.Bots.counts}).
    @param hooks: the backend bots' requests, by route
        (L{wsdaemon.support.bots.Bots.hooks}).
    """

    def __init__(self, measures: ConversationMeasures, inbox: Callable[[], Inbox],
                 now: Callable[[], float],
                 bots: Mapping[tuple[str, str], int] | None = None,
                 hooks: Callable[[], list[tuple[str, HookStats]]] | None = None) -> None:
        self.bots = bots if bots is not None else {}
        self.hooks = hooks or list
        self.measures = measures
        self.inbox = inbox
        self.now = now

    def collect(self) -> Iterator[Metric]:
        for metric, name, text in (
                (Measured.FIRST_RESPONSE, FAMILIES[0],
                 "Time from a conversation opening to the first operator reply"),
                (Measured.RESOLUTION, FAMILIES[1],
                 "Time from a conversation opening to its resolution")):
            family = HistogramMetricFamily(name, text, labels=["route"])
            for (measured, route), histogram in sorted(self.measures.histograms.items()):
                if measured is metric:
                    family.add_metric([route], histogram.cumulative(),
                                      sum_value=histogram.total)
            yield family
        inbox = self.inbox()
        counts = inbox.status_counts()
        states = GaugeMetricFamily(FAMILIES[2], "Live conversations by state (resolved "
                                   "ones are not counted: they are in the store)",
                                   labels=["state"])
        for state in ("bot", "unassigned", "assigned", "snoozed"):
            states.add_metric([state], counts[state])
        yield states
        now = self.now()
        oldest = max((c.waiting_time(now) for c in inbox.conversations()
                      if c.status is Status.OPEN and not c.with_bot), default=0.0)
        yield GaugeMetricFamily(FAMILIES[3], "How long the longest-waiting visitor of an "
                                "open conversation has waited for an operator (snoozed ones "
                                "are parked on purpose, the bot's are not waiting for one; 0: "
                                "nobody waits)", value=oldest)
        team = GaugeMetricFamily(FAMILIES[4], "Operators by availability",
                                 labels=["availability"])
        by_availability = {a: 0 for a in Availability}
        for operator in inbox.team.operators:
            by_availability[operator.availability] += 1
        for availability, count in by_availability.items():
            team.add_metric([availability.value], count)
        yield team
        yield from self._bots()

    def _bots(self) -> Iterator[Metric]:
        replies = CounterMetricFamily(FAMILIES[5], "Messages the routes' bots sent",
                                      labels=["route"])
        handoffs = CounterMetricFamily(
            FAMILIES[6], "Conversations the routes' bots handed to the operators, by why: "
            "asked (a handoff phrase), rule (a rule's handoff), unmatched (no rule "
            "answered), gone (the route has no bot any more), backend (the backend's "
            "handoff), backend_failed (the backend down, slow, wrong or too slow for the "
            "visitor), overdue (the bot owed an answer past its time: its daemon stopped, "
            "or a reload replaced it, first; handed over by the daemon)",
            labels=["route", "reason"])
        episodes = CounterMetricFamily(
            FAMILIES[7], "Conversations (episodes) the routes' bots answered first; those "
            "not handed over were the bot's alone", labels=["route"])
        for (route, outcome), count in sorted(self.bots.items()):
            if outcome == "reply":
                replies.add_metric([route], count)
            elif outcome == "episode":
                episodes.add_metric([route], count)
            else:
                handoffs.add_metric([route, outcome], count)
        for route, count in sorted(self.measures.overdue.items()):
            handoffs.add_metric([route, "overdue"], count)
        yield replies
        yield handoffs
        yield episodes
        yield from self._hooks()

    def _hooks(self) -> Iterator[Metric]:
        hooks = self.hooks()
        if not hooks:
            return
        latency = HistogramMetricFamily(
            FAMILIES[8], "Time from a backend bot's request to its answer or failure, "
            "retries included", labels=["route"])
        errors = CounterMetricFamily(FAMILIES[9], "A backend bot's requests that failed, by "
                                     "kind", labels=["route", "kind"])
        in_flight = GaugeMetricFamily(FAMILIES[10], "A backend bot's requests under way",
                                      labels=["route"])
        for route, stats in hooks:
            latency.add_metric([route], stats.cumulative(), sum_value=stats.latency_sum)
            for kind, count in sorted(stats.errors.items()):
                errors.add_metric([route, kind], count)
            in_flight.add_metric([route], stats.in_flight)
        yield latency
        yield errors
        yield in_flight
