"""
"We usually reply within N minutes": the median first response of the last
day, per route, as visitors are told it (C{reply_within} in C{welcome} and
in C{availability} frames).

Fed the core's first-response measures as they happen; bounded (at most
L{MAX_SAMPLES} kept per route, L{MAX_ROUTES} routes), the median worked out
at most once a L{REFRESH} per route (sorting at most 10,000 numbers), so
telling thousands of visitors at once costs one computation.
"""

from __future__ import annotations

import statistics
from collections import deque

from twisted.internet.interfaces import IReactorTime

__all__ = ["DAY", "MAX_ROUTES", "MAX_SAMPLES", "REFRESH", "ReplyTimes"]

#: How far back the median looks, in seconds.
DAY = 86_400.0
#: First responses kept per route (the newest).
MAX_SAMPLES = 10_000
#: Routes followed; first responses on more are not counted.
MAX_ROUTES = 100
#: Seconds a route's median is reused before it is worked out again.
REFRESH = 60.0


class ReplyTimes:
    """
    @param clock: when each first response happened, and now.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._samples: dict[str, deque[tuple[float, float]]] = {}
        self._cached: dict[str, tuple[float, float | None]] = {}

    def observe(self, route: str, seconds: float) -> None:
        """A conversation on C{route} got its first answer after C{seconds}."""
        samples = self._samples.get(route)
        if samples is None:
            if len(self._samples) >= MAX_ROUTES:
                return
            samples = self._samples[route] = deque(maxlen=MAX_SAMPLES)
        samples.append((self._clock.seconds(), max(0.0, seconds)))
        cached = self._cached.get(route)
        if cached is not None and cached[1] is None:
            del self._cached[route]  # the first one is told at once

    def reply_within(self, route: str) -> float | None:
        """
        @return: the median first response on C{route} over the last day,
            in whole seconds, or None when there was none.
        """
        now = self._clock.seconds()
        cached = self._cached.get(route)
        if cached is not None and now - cached[0] < REFRESH:
            return cached[1]
        samples = self._samples.get(route)
        value: float | None = None
        if samples:
            while samples and samples[0][0] < now - DAY:
                samples.popleft()
            if samples:
                value = float(round(statistics.median(s for _, s in samples)))
        if route in self._samples or len(self._cached) < MAX_ROUTES:
            self._cached[route] = (now, value)
        return value
