"""
A store that keeps everything in memory: for tests, and for a throw-away
queue where losing items on restart is acceptable. It meets the same store
contract as the SQLite store (its Deferreds have already fired).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from wsdaemon.records import ItemRecord, MessageRecord
from wsdaemon.strategies.operator.ports import IQueueStore

__all__ = ["MemoryStore"]


@implementer(IQueueStore)
class MemoryStore:
    def __init__(self) -> None:
        self.items: dict[str, ItemRecord] = {}
        self.messages: list[MessageRecord] = []
        self.is_open = False

    def open(self) -> Deferred[None]:
        self.is_open = True
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.is_open = False
        return succeed(None)

    def load_open_items(self, preview: int = 0) -> Deferred[list[tuple[ItemRecord, int]]]:
        open_items = sorted((i for i in self.items.values() if i.state in ("queued", "claimed")),
                            key=lambda i: i.created_at)
        return succeed([(replace(i, text=i.text[:preview] if preview else i.text), len(i.text))
                        for i in open_items])

    def item_text(self, item_id: str) -> Deferred[str | None]:
        item = self.items.get(item_id)
        return succeed(None if item is None else item.text)

    def message_body(self, seq: int) -> Deferred[str | None]:
        if 1 <= seq <= len(self.messages):
            return succeed(self.messages[seq - 1].body)
        return succeed(None)

    def add_item(self, item: ItemRecord, message: MessageRecord) -> Deferred[None]:
        if item.item_id in self.items:
            raise KeyError(f"item {item.item_id} exists")
        self.items[item.item_id] = item
        self._append(message)
        return succeed(None)

    def update_item(self, item: ItemRecord) -> Deferred[None]:
        known = self.items.get(item.item_id)
        if known is None:
            raise LookupError(f"no stored item {item.item_id}")
        # The text is stored once, on add (the queue may hold a preview).
        self.items[item.item_id] = replace(item, text=known.text)
        return succeed(None)

    def answer_item(self, item: ItemRecord, reply: MessageRecord) -> Deferred[int]:
        self.update_item(item)
        return succeed(self._append(reply))

    def add_message(self, message: MessageRecord) -> Deferred[int]:
        return succeed(self._append(message))

    def _append(self, message: MessageRecord) -> int:
        seq = len(self.messages) + 1
        self.messages.append(replace(message, seq=seq))
        return seq

    def undelivered(self, client_id: str) -> Deferred[list[MessageRecord]]:
        return succeed([m for m in self.messages if m.client_id == client_id
                        and m.direction == "out" and not m.delivered and not m.failed])

    def mark_delivered(self, seqs: Iterable[int]) -> Deferred[None]:
        for seq in seqs:
            self.messages[seq - 1] = replace(self.messages[seq - 1], delivered=True)
        return succeed(None)

    def mark_failed(self, seqs: Iterable[int]) -> Deferred[None]:
        for seq in seqs:
            self.messages[seq - 1] = replace(self.messages[seq - 1], failed=True)
        return succeed(None)

    def transcript(self, client_id: str | None, before: int | None = None,
                   limit: int | None = None) -> Deferred[list[MessageRecord]]:
        found = [m for m in self.messages if (client_id is None or m.client_id == client_id)
                 and (before is None or (m.seq or 0) < before)]
        return succeed(found if limit is None else found[-limit:] if limit else [])
