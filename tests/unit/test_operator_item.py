"""
An item's state machine: the allowed moves, and every other move refused.
"""

from __future__ import annotations

import pytest

from wsdaemon.records import ItemRecord
from wsdaemon.strategies.operator.item import InvalidTransition, QueueItem


def fresh() -> QueueItem:
    return QueueItem(ItemRecord(item_id="i1", route="/s", client_id="c", text="hi",
                                created_at=1.0))


def test_claim_answer() -> None:
    """Claim answer."""
    item = fresh()
    assert item.state == "queued"
    item.claim("alice", "link-a")
    assert (item.state, item.record.state, item.record.operator, item.holder) == \
        ("claimed", "claimed", "alice", "link-a")
    item.answer("alice", 9.0)
    assert (item.state, item.record.answered_at, item.holder) == ("answered", 9.0, None)


def test_release_returns_to_queue() -> None:
    """Release returns to queue."""
    item = fresh()
    item.claim("alice", "a")
    item.release()
    assert (item.state, item.record.operator, item.holder) == ("queued", None, None)
    item.claim("bob", "b")
    assert item.record.operator == "bob"


def test_expire_from_queued_and_claimed() -> None:
    """Expire from queued and claimed."""
    for claim_first in (False, True):
        item = fresh()
        if claim_first:
            item.claim("alice", "a")
        item.expire()
        assert item.state == "expired"


@pytest.mark.parametrize(
    ("setup", "action"),
    [
        ([], "answer"),                       # answering needs a claim
        ([], "release"),                      # nothing to release
        (["claim"], "claim"),                 # second claim refused
        (["claim", "answer"], "answer"),      # never answered twice
        (["claim", "answer"], "claim"),
        (["claim", "answer"], "expire"),
        (["expire"], "answer"),
        (["expire"], "claim"),
    ],
)
def test_invalid_transitions_raise(setup: list[str], action: str) -> None:
    """Invalid transitions raise."""
    item = fresh()
    moves = {"claim": lambda: item.claim("x", "h"), "answer": lambda: item.answer("x", 1.0),
             "release": item.release, "expire": item.expire}
    for step in setup:
        moves[step]()
    state = item.state
    with pytest.raises(InvalidTransition, match=f"item i1 is {state}: cannot {action}"):
        moves[action]()
    assert item.state == state


def test_restore_brings_claims_back_as_queued() -> None:
    """Restore brings claims back as queued."""
    record = ItemRecord(item_id="i", route="/s", client_id="c", text="t", created_at=1.0,
                        state="claimed", operator="alice")
    item = QueueItem.restore(record)
    assert item.state == "queued" and item.record.operator is None
    with pytest.raises(ValueError):
        QueueItem.restore(ItemRecord(item_id="i", route="/s", client_id="c", text="t",
                                     created_at=1.0, state="answered"))
