"""
/metrics: the daemon's state in the Prometheus text format.

Nothing is counted through prometheus_client on the message path: routes
keep plain integer counters (L{wsdaemon.connections.stats.RouteStats}) and this
collector reads them when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from wsdaemon.server.admin import PushCounters

__all__ = ["DaemonCollector", "make_registry"]


class MetricsSource(Protocol):
    """
    What the collector reads: the running service.
    """

    @property
    def factories(self) -> dict[str, Any]: ...

    @property
    def operator_channel(self) -> Any: ...

    @property
    def index(self) -> Any: ...

    @property
    def ready(self) -> bool: ...

    def queue_stats(self) -> dict[str, Any] | None: ...

    def broker_status(self) -> dict[str, Any]: ...


class DaemonCollector:
    def __init__(self, source: MetricsSource, push: PushCounters) -> None:
        self.source = source
        self.push = push

    def collect(self) -> Iterator[Metric]:
        source = self.source
        open_by_route = source.index.count_by_route()
        gauge = GaugeMetricFamily("wsdaemon_connections", "Open client connections",
                                  labels=["route"])
        counters = {
            name: CounterMetricFamily(f"wsdaemon_{name}", text, labels=["route"])
            for name, text in (
                ("connections_opened", "Client connections opened"),
                ("messages_received", "Messages received from clients"),
                ("messages_sent", "Messages sent to clients"),
                ("bytes_received", "Payload bytes received from clients"),
                ("bytes_sent", "Payload bytes sent to clients"),
            )
        }
        refused = CounterMetricFamily("wsdaemon_handshakes_refused",
                                      "Handshakes refused, by route and reason",
                                      labels=["route", "reason"])
        for path, factory in sorted(source.factories.items()):
            stats = factory.stats
            gauge.add_metric([path], open_by_route.get(path, 0))
            counters["connections_opened"].add_metric([path], stats.opened)
            counters["messages_received"].add_metric([path], stats.messages_in)
            counters["messages_sent"].add_metric([path], stats.messages_out)
            counters["bytes_received"].add_metric([path], stats.bytes_in)
            counters["bytes_sent"].add_metric([path], stats.bytes_out)
            for reason, count in sorted(stats.refusals.items()):
                refused.add_metric([path, reason], count)
        channel = source.operator_channel
        if channel is not None:
            for reason, count in sorted(channel.refusals.items()):
                refused.add_metric([channel.path, reason], count)
        yield gauge
        yield from counters.values()
        yield refused

        queue = source.queue_stats()
        if queue is not None:
            items = GaugeMetricFamily("wsdaemon_queue_items", "Open operator queue items",
                                      labels=["state"])
            for state in ("queued", "claimed"):
                items.add_metric([state], queue["by_state"].get(state, 0))
            yield items
            yield GaugeMetricFamily("wsdaemon_queue_oldest_item_age_seconds",
                                    "Age of the oldest open item (0 when empty)",
                                    value=queue["oldest_age"])
            yield GaugeMetricFamily("wsdaemon_operators_online", "Operators connected",
                                    value=queue["operators_online"])

        calls = CounterMetricFamily("wsdaemon_push_calls", "Push API calls",
                                    labels=["target", "outcome"])
        for (kind, outcome), count in sorted(self.push.calls.items()):
            calls.add_metric([kind, outcome], count)
        yield calls
        yield GaugeMetricFamily("wsdaemon_ready", "1 once every listener is bound and the "
                                "store is open", value=1 if source.ready else 0)
        broker = source.broker_status()
        if broker["backend"] == "redis":
            yield GaugeMetricFamily("wsdaemon_broker_up", "1 while Redis answers, 0 during an "
                                    "outage", value=1 if broker["up"] else 0)
            yield CounterMetricFamily("wsdaemon_broker_outages", "Times Redis became "
                                      "unreachable", value=broker["outages"])
            yield CounterMetricFamily("wsdaemon_broker_calls_failed", "Redis calls that "
                                      "timed out or lost their connection",
                                      value=broker["calls_failed"])


def make_registry(source: MetricsSource, push: PushCounters) -> CollectorRegistry:
    """
    A registry of our own (not the process-global one), holding the collector.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(source, push))
    return registry
