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
from wsdaemon.config import DaemonConfig
from wsdaemon.interfaces import IComponent, ISectionParser
from wsdaemon.support.component import SupportComponent
from wsdaemon.support.settings import OperatorSection, operator_settings

__all__ = ["SECTIONS", "operator_component"]

#: The components' config sections and their parsers, which the entry point
#: hands the config reader (L{wsdaemon.config.load_config}).
SECTIONS: dict[str, ISectionParser] = {"operator": OperatorSection()}


def operator_component(config: DaemonConfig, reactor: Any,
                       link: RedisLink | None) -> IComponent | None:
    """
    @param config: the config, whose C{[operator]} section it runs.
    @param link: the broker's link when daemons share Redis, else None.
    @return: the component (not started): conversations in Redis with a
        link, else in the section's SQLite file; None without the section.
    """
    settings = operator_settings(config)
    if settings is None:
        return None
    if link is None:
        return SupportComponent(settings, reactor)
    return SupportComponent(settings, reactor, link=link, heartbeat=link.settings.heartbeat)
