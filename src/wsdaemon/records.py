"""
The values that pass through the interfaces: what the operator queue stores
(items and messages) and whom a push is for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ItemRecord", "MessageRecord", "PushTarget"]


@dataclass(frozen=True)
class ItemRecord:
    """
    One client message waiting for (or answered by) an operator.

    @ivar state: C{queued}, C{claimed}, C{answered} or C{expired}.
    @ivar operator: who holds the claim, or who answered.
    """

    item_id: str
    route: str
    client_id: str
    text: str
    created_at: float
    state: str = "queued"
    operator: str | None = None
    answered_at: float | None = None
    fallback_sent: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MessageRecord:
    """
    One line of a conversation.

    @ivar direction: C{in} (from the client) or C{out} (to the client).
    @ivar sender: C{client}, an operator's name, or C{system} (fallback,
        acknowledgement).
    @ivar delivered: for C{out} messages, whether it was written to a
        connection of the client.
    @ivar failed: for C{out} messages, whether writing it to the client
        failed for good (too big for its route): it is not tried again.
    """

    client_id: str
    route: str
    direction: str
    sender: str
    body: str
    at: float
    item_id: str | None = None
    delivered: bool = False
    seq: int | None = None
    failed: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PushTarget:
    """
    Whom a push is for.

    @ivar kind: C{session}, C{client}, C{route} or C{all}.
    @ivar value: the session id, client id or route path (None for all).
    """

    kind: str
    value: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}
