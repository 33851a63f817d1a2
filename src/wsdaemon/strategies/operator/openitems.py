"""
The embedded queue's open items: in arrival order, indexed by client and
counted by route, with their queue positions, and the caps a new message
must pass. Every operation a client message causes is O(1) or O(log n).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from wsdaemon.config import OperatorSettings
from wsdaemon.strategies.operator.errors import QueueError, QueueRefused, too_long
from wsdaemon.strategies.operator.item import QueueItem
from wsdaemon.strategies.operator.ranks import ArrivalRanks

__all__ = ["OpenItems"]


class OpenItems:
    def __init__(self) -> None:
        self._items: dict[str, QueueItem] = {}  # arrival order
        self._ranks = ArrivalRanks()
        self._by_client: dict[str, dict[str, QueueItem]] = {}
        self._per_route: Counter[str] = Counter()
        # Messages being stored: they count against the caps already.
        self._pending_client: Counter[str] = Counter()
        self._pending_route: Counter[str] = Counter()
        self._pending = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._items

    def add(self, item: QueueItem) -> None:
        record = item.record
        self._items[item.item_id] = item
        self._ranks.append(item.item_id)
        self._by_client.setdefault(record.client_id, {})[item.item_id] = item
        self._per_route[record.route] += 1

    def remove(self, item: QueueItem) -> None:
        record = item.record
        del self._items[item.item_id]
        self._ranks.remove(item.item_id)
        mine = self._by_client[record.client_id]
        del mine[item.item_id]
        if not mine:
            del self._by_client[record.client_id]
        _decrement(self._per_route, record.route)

    def get(self, item_id: str) -> QueueItem | None:
        return self._items.get(item_id)

    def position(self, item_id: str) -> int:
        """
        @return: 1 for the oldest open item, 2 for the next...; 0 if closed.
        """
        return self._ranks.rank(item_id) if item_id in self._ranks else 0

    def iter(self, client_id: str | None = None) -> Iterator[QueueItem]:
        """
        @return: the open items (of one client), oldest first (a snapshot).
        """
        source = self._items if client_id is None else self._by_client.get(client_id, {})
        return iter(list(source.values()))

    def find(self, item_id: str) -> QueueItem:
        """
        @param item_id: an item id, or an unambiguous prefix of one.
        @raise QueueError: if no open item (or several) match.
        """
        item = self._items.get(item_id)
        if item is not None:
            return item
        found = [i for key, i in self._items.items() if key.startswith(item_id)] \
            if item_id else []
        if len(found) == 1:
            return found[0]
        shown = item_id[:40]
        if not found:
            raise QueueError(f"no open item {shown!r} (answered, expired or unknown)")
        raise QueueError(f"item id {shown!r} is ambiguous: give more characters")

    def oldest_unclaimed(self) -> QueueItem:
        for item in self._items.values():
            if item.state == "queued" and not item.busy:
                return item
        raise QueueError("the queue is empty")

    def reserve(self, settings: OperatorSettings, client: str, route: str,
                text: str) -> Callable[[], None]:
        """
        Count a new message against the caps while it is being stored.

        @return: a function to call once it is stored (or not).
        @raise QueueRefused: if it is over one of the caps.
        """
        s = settings
        if too_long(text, s.max_item_size):
            raise QueueRefused("too_long", s.max_item_size)
        mine = self._by_client.get(client)
        if s.max_open_per_client and (len(mine) if mine else 0) \
                + self._pending_client[client] >= s.max_open_per_client:
            raise QueueRefused("client", s.max_open_per_client)
        if s.max_open_per_route and self._per_route[route] \
                + self._pending_route[route] >= s.max_open_per_route:
            raise QueueRefused("route", s.max_open_per_route)
        if s.max_open_total and len(self._items) + self._pending >= s.max_open_total:
            raise QueueRefused("total", s.max_open_total)
        self._pending_client[client] += 1
        self._pending_route[route] += 1
        self._pending += 1
        settled = False

        def settle() -> None:
            nonlocal settled
            if not settled:
                settled = True
                _decrement(self._pending_client, client)
                _decrement(self._pending_route, route)
                self._pending -= 1

        return settle


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if not counter[key]:
        del counter[key]
