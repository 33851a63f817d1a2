"""
The operator queue (C{[operator] model = queue}, deprecated for
conversations) as a component (L{wsdaemon.interfaces.IComponent}): what
the daemon knew of it by name (the queue on SQLite or on Redis, the
C{operator} strategy bound to it, its operator channel and console page,
its gauges in C{/metrics} and its entry in C{/healthz}) behind the one hook
the assembly calls.

Here, at the layer that may import both queues: the embedded one
(L{wsdaemon.strategies.operator}) and the shared one on Redis
(L{wsdaemon.broker.queue}).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from prometheus_client.core import GaugeMetricFamily, Metric
from twisted.internet.defer import Deferred
from zope.interface import implementer

from wsdaemon.broker.link import RedisLink
from wsdaemon.broker.queue import SharedOperatorQueue
from wsdaemon.config import DaemonConfig, OperatorSettings, ProtocolSettings
from wsdaemon.interfaces import Contribution, IComponent
from wsdaemon.pages import StaticPage, render_page
from wsdaemon.strategies.operator.channel import OperatorChannelFactory
from wsdaemon.strategies.operator.ports import IOperatorQueue
from wsdaemon.strategies.operator.queue import OperatorQueue
from wsdaemon.strategies.operator.store import SQLiteStore
from wsdaemon.strategies.operator.strategy import OperatorStrategyFactory

__all__ = ["QueueCollector", "QueueComponent", "queue_stats"]


def _channel_limits(protocol: ProtocolSettings, operator: OperatorSettings) -> ProtocolSettings:
    """The channel's own limits, independent of the client routes'."""
    return replace(protocol, max_message_size=operator.max_message_size,
                   max_frame_size=operator.max_message_size,
                   max_outbound_buffer=operator.max_outbound_buffer)


def _send_limits(config: DaemonConfig) -> dict[str, int]:
    """What each route's clients accept: replies and pushes over it are
    refused at the operator, before anything is stored."""
    return {"": config.protocol.max_message_size,
            **{route.path: route.protocol.max_message_size for route in config.routes}}


def queue_stats(queue: IOperatorQueue, now: float) -> dict[str, Any]:
    """
    @return: the open items by state, the oldest one's age in seconds (0
        when none) and the operators online.
    """
    items = queue.open_items()
    by_state: dict[str, int] = {}
    for item in items:
        by_state[item.state] = by_state.get(item.state, 0) + 1
    oldest = max(0.0, now - items[0].record.created_at) if items else 0.0
    return {"by_state": by_state, "oldest_age": oldest,
            "operators_online": queue.operators_online}


class QueueCollector:
    """
    The queue's gauges in C{/metrics}, read at scrape time.
    """

    def __init__(self, queue: IOperatorQueue, clock: Any) -> None:
        self.queue = queue
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        stats = queue_stats(self.queue, self.clock.seconds())
        items = GaugeMetricFamily("wsdaemon_queue_items", "Open operator queue items",
                                  labels=["state"])
        for state in ("queued", "claimed"):
            items.add_metric([state], stats["by_state"].get(state, 0))
        yield items
        yield GaugeMetricFamily("wsdaemon_queue_oldest_item_age_seconds",
                                "Age of the oldest open item (0 when empty)",
                                value=stats["oldest_age"])
        yield GaugeMetricFamily("wsdaemon_operators_online", "Operators connected",
                                value=stats["operators_online"])


@implementer(IComponent)
class QueueComponent:
    """
    @param settings: the C{[operator]} section (C{model = queue}).
    @param reactor: time and threads for the store, the channel's reactor.
    @param link: the broker's link when daemons share Redis (the queue is
        then L{SharedOperatorQueue}), else None (the section's SQLite file).
    @param queue: the queue itself, instead of one made from the above.

    @ivar queue: the queue, kept by every reload.
    """

    name = "queue"

    def __init__(self, settings: OperatorSettings, reactor: Any, *,
                 link: RedisLink | None = None, queue: IOperatorQueue | None = None) -> None:
        self.reactor = reactor
        if queue is None:
            queue = (SharedOperatorQueue(settings, link, reactor) if link is not None
                     else OperatorQueue(settings, SQLiteStore(settings.store_path, reactor),
                                        reactor))
        self.queue: IOperatorQueue = queue
        self.collector = QueueCollector(queue, reactor)
        self._channel: OperatorChannelFactory | None = None

    def contribute(self, config: DaemonConfig) -> Contribution:
        """
        @return: the C{operator} strategy bound to the queue, the channel at
            the section's C{path} and its console page at C{console_path},
            and the queue's gauges.
        """
        operator = config.operator
        if operator is None:
            return Contribution(strategies=self.strategies, collectors=(self.collector,))
        if self._channel is None:
            self._channel = OperatorChannelFactory(self.queue, dict(operator.tokens),
                                                   _channel_limits(config.protocol, operator),
                                                   reactor=self.reactor)
            self._channel.path = operator.path
        return Contribution(
            strategies=self.strategies,
            resources={operator.path: WebSocketResource(self._channel),
                       operator.console_path: StaticPage(
                           render_page("console.html", {"channel": operator.path}))},
            collectors=(self.collector,), channel=self._channel)

    @property
    def strategies(self) -> dict[str, OperatorStrategyFactory]:
        """
        @return: the C{operator} strategy's factory, bound to the queue.
        """
        return {"operator": OperatorStrategyFactory(self.queue)}

    def update(self, config: DaemonConfig) -> None:
        """
        The queue takes the new settings and the routes' limits; the
        channel the new tokens and limits (a revoked token's connection is
        closed).
        """
        operator = config.operator
        if operator is None:
            return
        self.queue.settings = operator
        self.queue.send_limits = _send_limits(config)
        if self._channel is not None:
            self._channel.update(self.queue, dict(operator.tokens),
                                 _channel_limits(config.protocol, operator))
            self._channel.path = operator.path

    def start(self) -> Deferred[None]:
        """
        @return: a Deferred firing once the store is open (or Redis loaded).
        """
        d: Deferred[None] = self.queue.start()
        return d

    def stop(self) -> Deferred[None]:
        """
        @return: a Deferred firing once the store has finished its writes.
        """
        d: Deferred[None] = self.queue.stop().addCallback(lambda _: None)
        return d

    def health(self) -> dict[str, Any]:
        """
        @return: C{{"queue": {"started", "open_items"}}}.
        """
        return {"queue": {"started": self.queue.started,
                          "open_items": self.queue.count_open()}}
