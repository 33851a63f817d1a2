"""
Items and messages as the Redis scripts hand them over, and the mirror of
the open items each daemon keeps for listing, positions and id prefixes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wsdaemon.records import ItemRecord, MessageRecord
from wsdaemon.strategies.operator.errors import QueueError

__all__ = ["ItemMirror", "SharedItem", "message_json", "parse_item", "parse_message"]


@dataclass
class SharedItem:
    """
    One open item as this daemon last heard of it.

    @ivar version: bumped by every script that changes the item; a mirror
        keeps the highest it has seen.
    @ivar online: whether its client was connected to some daemon when the
        item last changed.
    @ivar resent: what an enqueue returns for a message sent again within
        the resend window: the item the first send made (nothing stored).
    """

    record: ItemRecord
    order: int
    version: int
    online: bool = False
    position: int = 0
    resent: bool = False

    @property
    def item_id(self) -> str:
        return self.record.item_id

    @property
    def state(self) -> str:
        return self.record.state


def parse_item(fields: dict[str, Any]) -> SharedItem:
    """
    @param fields: an item as the scripts encode it (strings from the hash).
    """
    answered = fields.get("answered_at") or ""
    record = ItemRecord(
        item_id=fields["item_id"], route=fields["route"], client_id=fields["client_id"],
        text=fields["text"], created_at=float(fields["created_at"]), state=fields["state"],
        operator=fields.get("operator") or None,
        answered_at=float(answered) if answered else None,
        fallback_sent=str(fields.get("fallback_sent")) == "1",
    )
    return SharedItem(record=record, order=int(fields.get("order", 0)),
                      version=int(fields.get("version", 0)), online=bool(fields.get("online")))


def parse_message(data: dict[str, Any], seq: int, delivered: bool = False) -> MessageRecord:
    return MessageRecord(
        client_id=data["client_id"], route=data["route"], direction=data["direction"],
        sender=data["sender"], body=data["body"], at=float(data["at"]),
        item_id=data.get("item_id") or None, delivered=delivered, seq=seq,
    )


def message_json(message: MessageRecord) -> str:
    """
    @return: the message as the scripts store it (no seq, no delivery flag:
        Redis gives the one and tracks the other).
    """
    data = message.to_json()
    del data["seq"], data["delivered"], data["failed"]
    return json.dumps(data, ensure_ascii=False)


class ItemMirror:
    """
    The open items, brought up to date by script results and stream events,
    which may arrive in any order: each change carries the item's version,
    and an item that closed is remembered a while so that a late event about
    an older version cannot bring it back.

    @param remember: seconds a closed item's version is kept.
    """

    def __init__(self, remember: float) -> None:
        self._items: dict[str, SharedItem] = {}
        self._closed: dict[str, tuple[int, float]] = {}
        self._remember = remember

    def replace_all(self, items: list[SharedItem]) -> None:
        self._items = {item.item_id: item for item in items}

    def apply(self, item: SharedItem, now: float) -> bool:
        """
        @return: whether C{item} was news (a newer version, or it closed).
        """
        known = self._items.get(item.item_id)
        if known is not None and known.version >= item.version:
            return False
        closed = self._closed.get(item.item_id)
        if closed is not None and closed[0] >= item.version:
            return False
        if item.state in ("queued", "claimed"):
            self._items[item.item_id] = item
            return True
        self._closed[item.item_id] = (item.version, now)
        return self._items.pop(item.item_id, None) is not None

    def get(self, item_id: str) -> SharedItem | None:
        return self._items.get(item_id)

    def forget_old(self, now: float) -> None:
        for item_id, (_, at) in list(self._closed.items()):
            if now - at > self._remember:
                del self._closed[item_id]

    def open_items(self) -> list[SharedItem]:
        return sorted(self._items.values(), key=lambda i: i.order)

    def count(self) -> int:
        return len(self._items)

    def find(self, item_id: str) -> str:
        """
        @return: the full id of the open item C{item_id} names (a prefix is
            enough when it is unambiguous among the items known here).
        @raise QueueError: for an ambiguous prefix.
        """
        if item_id in self._items:
            return item_id
        found = [key for key in self._items if key.startswith(item_id)] if item_id else []
        if len(found) > 1:
            raise QueueError(f"item id {item_id!r} is ambiguous: give more characters")
        if found:
            return found[0]
        if not item_id:
            raise QueueError("no open item ''")
        return item_id  # maybe not heard of yet: Redis decides

    def oldest_unclaimed(self) -> str:
        for item in self.open_items():
            if item.state == "queued":
                return item.item_id
        raise QueueError("the queue is empty")
