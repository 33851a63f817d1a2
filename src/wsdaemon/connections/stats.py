"""
A route's counters, read by /metrics at scrape time.
"""

from __future__ import annotations

__all__ = ["RouteStats"]


class RouteStats:
    """
    A route's counters since startup (read by /metrics at scrape time, so
    the per-message cost is one integer addition).
    """

    __slots__ = ("messages_in", "messages_out", "bytes_in", "bytes_out", "opened",
                 "refusals")

    def __init__(self) -> None:
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0
        self.opened = 0
        self.refusals: dict[str, int] = {}

    def refused(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1
