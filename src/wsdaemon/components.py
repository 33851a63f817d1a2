"""
The component that runs the C{[operator]} section: conversations
(L{wsdaemon.support.component.SupportComponent}), the only model since the
operator queue was retired (its store is taken over on start). The entry
point (L{wsdaemon.tap}) hands L{operator_component} to the assembly, which
then knows the feature only as an L{wsdaemon.interfaces.IComponent}:
L{wsdaemon.server} does not import the support component (a contract in
C{pyproject.toml} says so).
"""

from __future__ import annotations

from typing import Any

from wsdaemon.broker.link import RedisLink
from wsdaemon.config import OperatorSettings
from wsdaemon.interfaces import IComponent
from wsdaemon.support.component import SupportComponent

__all__ = ["operator_component"]


def operator_component(settings: OperatorSettings, reactor: Any,
                       link: RedisLink | None) -> IComponent:
    """
    @param settings: the C{[operator]} section.
    @param link: the broker's link when daemons share Redis, else None.
    @return: the component (not started): conversations in Redis with a
        link, else in the section's SQLite file.
    """
    if link is None:
        return SupportComponent(settings, reactor)
    return SupportComponent(settings, reactor, link=link, heartbeat=link.settings.heartbeat)
