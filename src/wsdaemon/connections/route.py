"""
A route as it runs: its path, its built strategy and its protocol settings
(built by L{wsdaemon.server.assembly} from the config's values).
"""

from __future__ import annotations

from dataclasses import dataclass

from wsdaemon.config import ProtocolSettings
from wsdaemon.interfaces import IReplyStrategy

__all__ = ["Route"]


@dataclass(frozen=True)
class Route:
    """
    @ivar strategy: the route's strategy, built from C{strategy_name} and
        the route's options.
    @ivar section: the config section it comes from (for messages).
    """

    path: str
    strategy: IReplyStrategy
    protocol: ProtocolSettings
    strategy_name: str = ""
    section: str = ""
