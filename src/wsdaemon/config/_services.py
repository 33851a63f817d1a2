"""
The values of the C{[broker]} section (Redis). (C{[operator]}'s are the
support component's: L{wsdaemon.support.settings}.)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BrokerSettings"]


@dataclass(frozen=True)
class BrokerSettings:
    """
    The C{[broker]} section when it selects Redis.

    @ivar prefix: prepended to every key, so several services can share one
        Redis.
    @ivar timeout: seconds a call may take before it fails.
    @ivar heartbeat: seconds between a daemon's heartbeats; a daemon silent
        for three heartbeats counts as gone (its operators, its clients).
    @ivar sweep_interval: seconds between checks for expired leases and
        due fallbacks (every daemon checks; each item is handled once).
    @ivar daemon_id: this daemon's name among the others; empty: the
        assembly makes one up (host, process, a random part).
    """

    url: str
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password: str | None = None
    prefix: str = "wsdaemon:"
    timeout: float = 5.0
    heartbeat: float = 2.0
    sweep_interval: float = 1.0
    daemon_id: str = ""
