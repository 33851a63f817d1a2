"""
Conversations on /metrics: the driver's measures become histograms per
route, the inbox's counts gauges, read when Prometheus scrapes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from tests.driver_bench import ROUTE, GatedStore, RecordingPorts, cid
from wsdaemon.conversations import (
    Availability,
    ConversationSettings,
    Inbox,
    OperatorAvailability,
    OperatorReply,
    Resolve,
    Snooze,
    VisitorMessage,
)
from wsdaemon.conversations.effects import Measure, Metric
from wsdaemon.server.metrics import WORKER_MERGE
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.metrics import (
    BUCKETS,
    FAMILIES,
    MAX_ROUTES,
    ConversationCollector,
    ConversationMeasures,
)
from wsdaemon.support.ports import IConversationMeasures


def scrape(collector: ConversationCollector) -> dict[str, dict[tuple[str, ...], float]]:
    """Every sample by family name, then by (sample name, label values)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    found: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            key = (sample.name, *(f"{k}={v}" for k, v in sorted(sample.labels.items())))
            found.setdefault(family.name, {})[key] = sample.value
    return found


def test_a_working_day_shows_on_metrics() -> None:
    """First response and resolution land in their histograms with the
    right bucket; states, the team and the oldest wait are gauges."""
    clock = Clock()
    clock.advance(1_000)
    store = GatedStore()
    ports = RecordingPorts(store)
    measures = ConversationMeasures()
    assert verifyObject(IConversationMeasures, measures)
    driver = ConversationDriver(store, Inbox(ConversationSettings(fallback_after=0)), clock,
                                ports, ports, measures)
    driver.start()
    collector = ConversationCollector(measures, lambda: driver.inbox, clock.seconds)
    driver.submit(OperatorAvailability("alice", Availability.ONLINE))
    driver.submit(OperatorAvailability("bob", Availability.AWAY))
    for visitor in ("v1", "v2", "v3"):
        driver.submit(VisitorMessage(ROUTE, visitor, "Hello?", None))
        clock.advance(10)
    clock.advance(25)  # v1 has waited 55 s, v3 35 s
    driver.submit(OperatorReply(cid("v1"), "alice", "Hi!", "Alice"))
    driver.submit(Snooze(cid("v2"), "alice", None))
    clock.advance(100)
    driver.submit(Resolve(cid("v1"), "alice"))

    found = scrape(collector)
    first = found["wsdaemon_conversation_first_response_seconds"]
    assert first[("wsdaemon_conversation_first_response_seconds_count", f"route={ROUTE}")] == 1
    assert first[("wsdaemon_conversation_first_response_seconds_sum", f"route={ROUTE}")] == 55
    assert first[("wsdaemon_conversation_first_response_seconds_bucket", "le=30.0",
                  f"route={ROUTE}")] == 0
    assert first[("wsdaemon_conversation_first_response_seconds_bucket", "le=60.0",
                  f"route={ROUTE}")] == 1
    resolution = found["wsdaemon_conversation_resolution_seconds"]
    assert resolution[("wsdaemon_conversation_resolution_seconds_sum", f"route={ROUTE}")] == 155
    states = found["wsdaemon_conversations"]
    assert states[("wsdaemon_conversations", "state=snoozed")] == 1
    assert states[("wsdaemon_conversations", "state=bot")] == 0
    assert states[("wsdaemon_conversations", "state=unassigned")] == 1  # v3
    assert states[("wsdaemon_conversations", "state=assigned")] == 0  # v1 resolved
    assert found["wsdaemon_conversation_oldest_wait_seconds"][
        ("wsdaemon_conversation_oldest_wait_seconds",)] == 135  # v3 (v2 waited longer: snoozed)
    team = found["wsdaemon_conversation_operators"]
    assert team[("wsdaemon_conversation_operators", "availability=online")] == 1
    assert team[("wsdaemon_conversation_operators", "availability=away")] == 1
    assert team[("wsdaemon_conversation_operators", "availability=offline")] == 0


def test_histograms_are_bounded_in_routes() -> None:
    """Measures of more than MAX_ROUTES routes share one "(other)" series."""
    measures = ConversationMeasures()
    for n in range(MAX_ROUTES + 5):
        measures.observe(Measure(Metric.FIRST_RESPONSE, f"/r{n}", 1.0))
    routes = {route for _, route in measures.histograms}
    assert len(routes) == MAX_ROUTES + 1
    assert "(other)" in routes
    other = measures.histograms[(Metric.FIRST_RESPONSE, "(other)")]
    assert sum(other.buckets) == 5
    assert other.buckets[0] == 5 and BUCKETS[0] >= 1.0


def test_families_are_declared_for_workers() -> None:
    """Every family is declared in the supervisor's merge table."""
    for name in FAMILIES:
        assert name in WORKER_MERGE, name
