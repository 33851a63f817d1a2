"""
The operators' list in its order (most waiting first, L{sort_key}) without
sorting every live conversation for each greeting: at 100,000 open
conversations a greeting's first page costs a few heap steps, not a pass
over all of them.

A heap of (key, conversation id) with lazy deletion: each time a
conversation is seen (the hub is told of every change) its current key is
recorded and pushed; entries whose key is no longer the current one are
dropped as they come up. Reading checks each entry against the inbox as
well (the record it holds now, and that it is still live): a conversation
that left, or moved later, without the hub being told is put right when it
comes up instead of shown wrong (one that moved earlier needs telling: the
driver notifies operators of every change that moves one). The heap is
rebuilt when stale entries outnumber live ones (bounded at twice the
conversations plus a constant).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

from wsdaemon.conversations.model import Conversation, Status
from wsdaemon.support.summaries import sort_key

__all__ = ["WaitingOrder"]

Key = tuple[int, float, str]


class WaitingOrder:
    """
    @param current: the inbox's record of a conversation now (None: gone).
    """

    def __init__(self, current: Callable[[str], Conversation | None]) -> None:
        self._current = current
        self._keys: dict[str, Key] = {}
        self._heap: list[tuple[Key, str]] = []

    def __len__(self) -> int:
        return len(self._keys)

    def see(self, conversation: Conversation) -> None:
        """A conversation changed (or was loaded): record where it stands now."""
        key = conversation.conversation_id
        if conversation.status is Status.RESOLVED:
            self._keys.pop(key, None)
            return
        order = sort_key(conversation)
        if self._keys.get(key) == order:
            return
        self._keys[key] = order
        heapq.heappush(self._heap, (order, key))
        if len(self._heap) > 2 * len(self._keys) + 1024:
            self._rebuild()

    def see_all(self, conversations: Iterable[Conversation]) -> None:
        for conversation in conversations:
            if conversation.status is not Status.RESOLVED:
                self._keys[conversation.conversation_id] = sort_key(conversation)
        self._rebuild()

    def _rebuild(self) -> None:
        self._heap = [(order, key) for key, order in self._keys.items()]
        heapq.heapify(self._heap)

    def first(self, limit: int, after: Key | None = None) -> list[Conversation]:
        """
        The first C{limit} live conversations in order (after C{after}),
        each as the inbox holds it now.
        """
        found: list[Conversation] = []
        taken: list[tuple[Key, str]] = []
        seen: set[str] = set()
        while self._heap and len(found) < limit:
            order, key = heapq.heappop(self._heap)
            if self._keys.get(key) != order or key in seen:
                continue  # stale, or a copy: one entry stands for it
            conversation = self._current(key)
            if conversation is None or conversation.status is Status.RESOLVED:
                del self._keys[key]
                continue
            now = sort_key(conversation)
            if now != order:
                # Changed without our being told: put it where it belongs.
                self._keys[key] = now
                heapq.heappush(self._heap, (now, key))
                continue
            seen.add(key)
            taken.append((order, key))
            if after is None or order > after:
                found.append(conversation)
        for entry in taken:
            heapq.heappush(self._heap, entry)
        return found
