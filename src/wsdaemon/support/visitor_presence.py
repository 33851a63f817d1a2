"""
Whether a conversation's visitor is connected now, and when it was last
seen: what the operators' inbox shows next to the composer ("Not connected:
they will see your reply when they come back") and in the summaries
(C{visitor_online}, C{visitor_last_seen}).

L{VisitorPresence} counts each visitor's open connections on this daemon
(bounded by the connections themselves) and remembers when the last one of
a visitor closed, for at most C{max_remembered} visitors (the oldest
forgotten first; default L{DEFAULT_MAX_REMEMBERED}). With several daemons
sharing a store (C{shared}), a visitor not connected here may be connected
to another daemon: it is then "unknown" (None), never "gone".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime

__all__ = ["DEFAULT_MAX_REMEMBERED", "VisitorPresence"]

#: Visitors whose last-seen time is remembered (about 100 bytes each).
DEFAULT_MAX_REMEMBERED = 10_000


class VisitorPresence:
    def __init__(self, clock: IReactorTime, *, max_remembered: int = DEFAULT_MAX_REMEMBERED,
                 shared: bool = False) -> None:
        if not IReactorTime.providedBy(clock):
            raise TypeError(f"{clock!r} does not provide IReactorTime")
        if max_remembered < 1:
            raise ValueError(f"max_remembered must be at least 1, not {max_remembered}")
        self._clock = clock
        self.max_remembered = max_remembered
        #: Another daemon may hold the visitor's connection (a shared store).
        self.shared = shared
        self._open: dict[tuple[str, str], int] = {}
        self._last_seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        #: Called with (route, visitor) when its first connection opens or
        #: its last one closes (the operators' hub tells the operators).
        self.on_change: Callable[[str, str], None] | None = None

    def opened(self, route: str, visitor: str) -> None:
        key = (route, visitor)
        count = self._open.get(key, 0) + 1
        self._open[key] = count
        if count == 1:
            self._changed(route, visitor)

    def closed(self, route: str, visitor: str) -> None:
        key = (route, visitor)
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
            return
        self._open.pop(key, None)
        self._last_seen.pop(key, None)
        self._last_seen[key] = self._clock.seconds()
        while len(self._last_seen) > self.max_remembered:
            self._last_seen.popitem(last=False)
        self._changed(route, visitor)

    def state(self, route: str, visitor: str) -> dict[str, Any]:
        """
        C{visitor_online}: True (connected here), False (not connected; a
        lone daemon knows), None (not here, perhaps on another daemon);
        C{visitor_last_seen}: when its last connection here closed, or None.
        """
        key = (route, visitor)
        if key in self._open:
            return {"visitor_online": True, "visitor_last_seen": None}
        return {"visitor_online": None if self.shared else False,
                "visitor_last_seen": self._last_seen.get(key)}

    def _changed(self, route: str, visitor: str) -> None:
        if self.on_change is not None:
            self.on_change(route, visitor)
