"""
Queue positions in O(log n): a Fenwick (binary indexed) tree over arrival
slots. An item takes the next slot when it arrives and frees it when it
leaves; its position is the number of occupied slots up to its own. Slots
are renumbered once most of them are free, so memory follows the number of
open items, not how many ever arrived.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["ArrivalRanks"]

#: Below this many slots the tree is never compacted.
_MIN_COMPACT = 1024


class ArrivalRanks:
    def __init__(self) -> None:
        self._tree: list[int] = [0]  # 1-based; _tree[i] sums slots (i - lowbit(i), i]
        self._keys: list[Hashable | None] = [None]
        self._slot: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._slot

    def append(self, key: Hashable) -> None:
        """
        C{key} arrives, behind every key present.
        """
        if key in self._slot:
            raise KeyError(f"{key!r} is already ranked")
        i = len(self._tree)
        # The new node covers slots (i - lowbit(i), i]: the ones before i
        # are already counted in the prefix sums.
        covered = self._prefix(i - 1) - self._prefix(i - (i & -i))
        self._tree.append(1 + covered)
        self._keys.append(key)
        self._slot[key] = i

    def remove(self, key: Hashable) -> None:
        i = self._slot.pop(key)
        self._keys[i] = None
        self._add(i, -1)
        slots = len(self._keys) - 1
        if slots > _MIN_COMPACT and len(self._slot) * 4 < slots:
            self._compact()

    def rank(self, key: Hashable) -> int:
        """
        @return: 1 for the earliest key present, 2 for the next...
        @raise KeyError: for a key not present.
        """
        return self._prefix(self._slot[key])

    def _prefix(self, i: int) -> int:
        total = 0
        tree = self._tree
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def _add(self, i: int, delta: int) -> None:
        tree = self._tree
        n = len(tree)
        while i < n:
            tree[i] += delta
            i += i & -i

    def _compact(self) -> None:
        keys = [key for key in self._keys[1:] if key is not None]
        self._tree, self._keys, self._slot = [0], [None], {}
        for key in keys:
            self.append(key)
