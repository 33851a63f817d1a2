"""
/metrics: the daemon's state in the Prometheus text format.

Nothing is counted through prometheus_client on the message path: routes
keep plain integer counters (L{wsdaemon.connections.stats.RouteStats}) and this
collector reads them when Prometheus scrapes.

With workers, each worker's collector runs in its own process and the
supervisor's admin API combines their expositions (L{merge_metrics}), family
by family as L{WORKER_MERGE} declares: a family added to the collector is
declared there too (a unit test checks).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families

from wsdaemon.server.admin import PushCounters
from wsdaemon.strategies.webhook.stats import HookStats

__all__ = ["DaemonCollector", "Merge", "WORKER_MERGE", "make_registry", "merge_metrics"]


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
        yield from _webhook_families(source.factories)

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


def _webhook_families(factories: Mapping[str, Any]) -> Iterator[Metric]:
    """The requests of the webhook routes (none: no families)."""
    hooks = [(path, stats) for path, factory in sorted(factories.items())
             if isinstance(stats := getattr(getattr(getattr(factory, "route", None), "strategy",
                                                    None), "hook_stats", None), HookStats)]
    if not hooks:
        return
    latency = HistogramMetricFamily(
        "wsdaemon_webhook_latency_seconds", "Time from an event's first attempt to the "
        "backend's answer or the failure, retries included", labels=["route"])
    errors = CounterMetricFamily("wsdaemon_webhook_errors", "Webhook events that failed, by "
                                 "kind", labels=["route", "kind"])
    in_flight = GaugeMetricFamily("wsdaemon_webhook_in_flight", "Webhook events under way",
                                  labels=["route"])
    for path, stats in hooks:
        latency.add_metric([path], stats.cumulative(), sum_value=stats.latency_sum)
        for kind, count in sorted(stats.errors.items()):
            errors.add_metric([path, kind], count)
        in_flight.add_metric([path], stats.in_flight)
    yield latency
    yield errors
    yield in_flight


def make_registry(source: MetricsSource, push: PushCounters) -> CollectorRegistry:
    """
    A registry of our own (not the process-global one), holding the collector.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(source, push))
    return registry


class Merge(enum.Enum):
    """
    How the supervisor combines one metric family of its workers.
    """

    #: Counters and per-process gauges: the daemon's total (the sum of every
    #: worker's open connections is the daemon's).
    SUM = "sum"
    #: Shared state that every worker reports alike (conversations on Redis): the
    #: family of the lowest-numbered worker answering, one snapshot, never a
    #: mix of two.
    SHARED = "shared"
    #: A flag every worker must raise: each series' lowest value; a worker
    #: that does not answer counts as 0.
    MIN = "min"
    #: A gauge not declared: each worker's series with a C{worker} label
    #: (prometheus_client's multiprocess default for gauges), neither
    #: summed nor dropped.
    EACH = "each"


#: Every family the collector yields, by name (a counter's without
#: C{_total}), and how the supervisor combines the workers' series.
WORKER_MERGE: Mapping[str, Merge] = {
    "wsdaemon_connections": Merge.SUM,
    "wsdaemon_connections_opened": Merge.SUM,
    "wsdaemon_messages_received": Merge.SUM,
    "wsdaemon_messages_sent": Merge.SUM,
    "wsdaemon_bytes_received": Merge.SUM,
    "wsdaemon_bytes_sent": Merge.SUM,
    "wsdaemon_handshakes_refused": Merge.SUM,
    # Buckets, sum and count add up across workers, as counters do.
    "wsdaemon_webhook_latency_seconds": Merge.SUM,
    "wsdaemon_webhook_errors": Merge.SUM,
    "wsdaemon_webhook_in_flight": Merge.SUM,
    "wsdaemon_push_calls": Merge.SUM,
    "wsdaemon_ready": Merge.MIN,
    "wsdaemon_broker_up": Merge.MIN,
    # Each worker has its own Redis connection: one outage seen by 3
    # workers counts 3, as 3 daemons would.
    "wsdaemon_broker_outages": Merge.SUM,
    "wsdaemon_broker_calls_failed": Merge.SUM,
    # Conversations (wsdaemon.support.metrics): the driver runs in one
    # process; a supervisor would see one worker's series.
    "wsdaemon_conversation_first_response_seconds": Merge.SUM,
    "wsdaemon_conversation_resolution_seconds": Merge.SUM,
    "wsdaemon_conversations": Merge.SHARED,
    "wsdaemon_conversation_oldest_wait_seconds": Merge.SHARED,
    "wsdaemon_conversation_operators": Merge.SHARED,
    "wsdaemon_bot_replies": Merge.SUM,
    "wsdaemon_bot_handoffs": Merge.SUM,
    "wsdaemon_bot_episodes": Merge.SUM,
    "wsdaemon_bot_backend_latency_seconds": Merge.SUM,
    "wsdaemon_bot_backend_errors": Merge.SUM,
    "wsdaemon_bot_backend_in_flight": Merge.SUM,
}

_Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def merge_metrics(texts: Mapping[int, str], expected: int | None = None) -> str:
    """
    Combine the workers' expositions as L{WORKER_MERGE} says; counters and
    families it does not name fall back to L{Merge.SUM} (a counter) or
    L{Merge.EACH} (anything else). C{_created} samples are left out (a
    process's start time: no combination of them means anything).

    @param texts: each answering worker's exposition, by worker number.
    @param expected: the workers there should be; given, the answer also
        says how many there are (C{wsdaemon_workers}) and answered
        (C{wsdaemon_workers_answering}), and fewer answering makes every
        L{Merge.MIN} series 0.
    @return: one exposition in the text format.
    """
    order: list[str] = []
    kinds: dict[str, tuple[str, str]] = {}
    merged: dict[str, _Series] = {}
    missing = expected is not None and len(texts) < expected
    for number in sorted(texts):
        for family in text_string_to_metric_families(texts[number]):
            if family.name not in kinds:
                order.append(family.name)
                kinds[family.name] = (family.type, family.documentation)
                merged[family.name] = {}
            default = Merge.SUM if family.type == "counter" else Merge.EACH
            how = WORKER_MERGE.get(family.name, default)
            series = merged[family.name]
            if how is Merge.SHARED and series:
                continue  # a lower-numbered worker's family is already there
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = dict(sample.labels)
                if how is Merge.EACH:
                    labels["worker"] = str(number)
                key = (sample.name, tuple(sorted(labels.items())))
                if how is Merge.MIN:
                    value = 0.0 if missing else sample.value
                    series[key] = min(series.get(key, value), value)
                else:
                    series[key] = series.get(key, 0.0) + sample.value
    if expected is not None:
        for name, doc, value in (
                ("wsdaemon_workers", "Worker processes configured", expected),
                ("wsdaemon_workers_answering", "Workers whose admin API answered this scrape",
                 len(texts))):
            order.append(name)
            kinds[name] = ("gauge", doc)
            merged[name] = {(name, ()): float(value)}
    return _exposition(order, kinds, merged)


def _exposition(order: list[str], kinds: Mapping[str, tuple[str, str]],
                merged: Mapping[str, _Series]) -> str:
    lines = []
    for name in order:
        kind, doc = kinds[name]
        # The text format names a counter by its samples' name (..._total).
        shown = f"{name}_total" if kind == "counter" else name
        lines.append(f"# HELP {shown} {_escape_help(doc)}")
        lines.append(f"# TYPE {shown} {kind}")
        for (sample_name, labels), value in merged[name].items():
            label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
            lines.append(f"{sample_name}{{{label_text}}} {value!r}" if labels
                         else f"{sample_name} {value!r}")
    return "\n".join(lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return _escape_help(value).replace('"', '\\"')
