"""
What a webhook route counts for C{/metrics}: plain numbers, read when
Prometheus scrapes (nothing from prometheus_client on the request path).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

__all__ = ["LATENCY_BUCKETS", "HookStats"]

#: Upper bounds (seconds) of the latency histogram's buckets.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HookStats:
    """
    One webhook route's requests.

    @ivar in_flight: events under way (attempts, waits between them).
    @ivar errors: failures by kind (C{unreachable}, C{timeout}, C{too_big},
        C{failed}, C{status}, C{invalid}, C{queue}).
    @ivar buckets: per bucket of L{LATENCY_BUCKETS} (and one past the last),
        the events answered (or failed) within it; not cumulative.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self.errors: Counter[str] = Counter()
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, seconds: float) -> None:
        """One event's time from its first attempt to its answer or failure."""
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """@return: (le, count) pairs as Prometheus wants them, +Inf last."""
        pairs = []
        total = 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.buckets,
                                strict=True):
            total += count
            pairs.append((bound, total))
        return pairs
