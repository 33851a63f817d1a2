"""
The core's records: L{evolve}, the fast copy the core's moves make.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from tests.conversation_desk import ROUTE, Desk
from wsdaemon.conversations import VisitorMessage
from wsdaemon.conversations.model import Conversation, evolve


def a_conversation() -> Conversation:
    desk = Desk()
    desk.step(VisitorMessage(ROUTE, "v1", "hello", None))
    return desk.conversation("v1")


def test_evolve_is_replace() -> None:
    """The copy equals what dataclasses.replace makes, the original is
    unchanged, and the copy is a new, still frozen, record."""
    conversation = a_conversation()
    copy = evolve(conversation, labels=("billing",), unanswered=0)
    assert copy == dataclasses.replace(conversation, labels=("billing",), unanswered=0)
    assert copy is not conversation
    assert conversation.labels == () and copy.labels == ("billing",)
    assert hash(copy) == hash(dataclasses.replace(conversation, labels=("billing",),
                                                  unanswered=0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.labels = ()  # type: ignore[misc]


def test_evolve_refuses_unknown_fields() -> None:
    """An unknown field is refused as replace refuses it."""
    with pytest.raises(TypeError):
        evolve(a_conversation(), no_such_field=1)


def test_evolve_refuses_records_that_need_init() -> None:
    """A record whose __init__ does more than set its fields is refused
    (evolve would skip it)."""

    @dataclass(frozen=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            assert self.n >= 0

    @dataclass(frozen=True)
    class Derived:
        n: int
        double: int = field(init=False, default=0)

    with pytest.raises(TypeError):
        evolve(Checked(1), n=2)
    with pytest.raises(TypeError):
        evolve(Derived(1), n=2)
