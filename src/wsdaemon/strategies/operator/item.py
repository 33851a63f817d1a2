"""
One queued item's life, as an explicit state machine:

    queued --claim--> claimed --answer--> answered
    claimed --release / lease expired / holder gone--> queued
    queued, claimed --expire--> expired     (fallback sent, item closed)

Any other move (answering an answered item, claiming a claimed one,
releasing a queued one) raises L{InvalidTransition}: never silently ignored.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from automat import MethodicalMachine, NoTransition

from wsdaemon.records import ItemRecord

__all__ = ["InvalidTransition", "QueueItem"]


class InvalidTransition(Exception):  # noqa: N818 - says what happened, as NoTransition does
    """
    The item is not in a state that allows this.
    """

    def __init__(self, item_id: str, state: str, action: str) -> None:
        super().__init__(f"item {item_id} is {state}: cannot {action}")
        self.item_id = item_id
        self.state = state
        self.action = action


class QueueItem:
    """
    An item and where it stands. C{record} is its current stored form.

    @ivar holder: the operator connection holding the claim (any object
        that identifies it), or None.
    """

    _machine = MethodicalMachine()

    def __init__(self, record: ItemRecord) -> None:
        self.record = record
        self.holder: object | None = None
        self.order = 0  # arrival order, for items queued in the same instant
        self.lease_call: Any = None
        self.fallback_call: Any = None
        #: The whole text's length in characters (the record may hold a preview).
        self.length = len(record.text)
        #: A change is being committed to the store: no other move until it lands.
        self.busy = False

    # -- states --------------------------------------------------------------

    @_machine.state(initial=True, serialized="queued")
    def _queued(self) -> None:
        "Waiting for an operator."

    @_machine.state(serialized="claimed")
    def _claimed(self) -> None:
        "Held by one operator, under a lease."

    @_machine.state(serialized="answered")
    def _answered(self) -> None:
        "Answered once; final."

    @_machine.state(serialized="expired")
    def _expired(self) -> None:
        "Given up on after the fallback; final."

    # -- inputs --------------------------------------------------------------

    @_machine.input()
    def _claim(self, operator: str, holder: object) -> None:
        "An operator takes the item."

    @_machine.input()
    def _release(self) -> None:
        "The holder gives it back, its lease runs out, or it disconnects."

    @_machine.input()
    def _answer(self, operator: str, at: float) -> None:
        "The holder answers."

    @_machine.input()
    def _expire(self) -> None:
        "Nobody answered in time and the item is not kept answerable."

    # -- outputs -------------------------------------------------------------

    @_machine.output()
    def _record_claim(self, operator: str, holder: object) -> None:
        self.holder = holder
        self.record = replace(self.record, state="claimed", operator=operator)

    @_machine.output()
    def _record_release(self) -> None:
        self.holder = None
        self.record = replace(self.record, state="queued", operator=None)

    @_machine.output()
    def _record_answer(self, operator: str, at: float) -> None:
        self.holder = None
        self.record = replace(self.record, state="answered", operator=operator, answered_at=at)

    @_machine.output()
    def _record_expiry(self) -> None:
        self.holder = None
        self.record = replace(self.record, state="expired")

    _queued.upon(_claim, enter=_claimed, outputs=[_record_claim])
    _claimed.upon(_release, enter=_queued, outputs=[_record_release])
    _claimed.upon(_answer, enter=_answered, outputs=[_record_answer])
    _queued.upon(_expire, enter=_expired, outputs=[_record_expiry])
    _claimed.upon(_expire, enter=_expired, outputs=[_record_expiry])

    @_machine.serializer()
    def _state_name(self, state: str) -> str:
        return state

    @_machine.unserializer()
    def _set_state(self, state: str) -> str:
        return state

    # -- public face ---------------------------------------------------------

    @classmethod
    def restore(cls, record: ItemRecord) -> QueueItem:
        """
        Rebuild an item from the store. A claim does not survive a restart
        (its operator's connection is gone): a claimed item comes back queued.
        """
        if record.state not in ("queued", "claimed"):
            raise ValueError(f"item {record.item_id} is {record.state}: not open")
        item = cls(replace(record, state="queued", operator=None))
        return item

    @property
    def state(self) -> str:
        return str(self._state_name())

    @property
    def item_id(self) -> str:
        return self.record.item_id

    def _move(self, action: str, step: Any, *args: Any) -> None:
        try:
            step(*args)
        except NoTransition:
            raise InvalidTransition(self.item_id, self.state, action) from None

    def claim(self, operator: str, holder: object) -> None:
        self._move("claim", self._claim, operator, holder)

    def release(self) -> None:
        self._move("release", self._release)

    def answer(self, operator: str, at: float) -> None:
        self._move("answer", self._answer, operator, at)

    def expire(self) -> None:
        self._move("expire", self._expire)

    def mark_fallback_sent(self) -> None:
        self.record = replace(self.record, fallback_sent=True)
