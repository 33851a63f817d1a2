"""
The chooser: which component runs the C{[operator]} section, by its
C{model}. The entry point (L{wsdaemon.tap}) hands L{operator_component} to
the assembly, which then knows the feature only as an
L{wsdaemon.interfaces.IComponent}: L{wsdaemon.server} imports neither the
support component nor the queue (a contract in C{pyproject.toml} says so).
"""

from __future__ import annotations

from typing import Any

from wsdaemon.broker.link import RedisLink
from wsdaemon.broker.queue_component import QueueComponent
from wsdaemon.config import OperatorSettings
from wsdaemon.interfaces import IComponent
from wsdaemon.support.component import SupportComponent

__all__ = ["operator_component"]


def operator_component(settings: OperatorSettings, reactor: Any,
                       link: RedisLink | None) -> IComponent:
    """
    @param settings: the C{[operator]} section.
    @param link: the broker's link when daemons share Redis, else None.
    @return: the component (not started): conversations (C{model =
        conversations}: L{SupportComponent}, in Redis with a link, else in
        the section's SQLite file), or the queue (C{model = queue}).
    """
    if settings.model == "conversations":
        if link is None:
            return SupportComponent(settings, reactor)
        return SupportComponent(settings, reactor, link=link,
                                heartbeat=link.settings.heartbeat)
    return QueueComponent(settings, reactor, link=link)
