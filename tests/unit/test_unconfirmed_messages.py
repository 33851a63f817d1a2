"""
What a client on an operator route is told when the shared queue's Redis
cannot take its message, or took it and never said so; and what the queue
remembers so that the message sent again is not queued twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher

from wsdaemon.broker import queue as shared
from wsdaemon.broker.link import BrokerOutcomeUnknown, BrokerSettings, BrokerUnavailable
from wsdaemon.broker.queue import SharedOperatorQueue, message_digest
from wsdaemon.strategies.operator.queue import OperatorSettings
from wsdaemon.strategies.operator.strategy import (
    NOT_QUEUED,
    RECEIVED_BEFORE,
    UNCONFIRMED,
    OperatorStrategy,
)
from wsdaemon.testing import RecordingSession

SETTINGS = OperatorSettings(store_path=Path("unused"), fallback_after=0,
                            fallback_when_offline=False)


def item_json(item_id: str, state: str) -> str:
    return json.dumps({"item_id": item_id, "route": "/support", "client_id": "c1",
                       "text": "help", "created_at": "1", "state": state, "order": "1",
                       "version": "1"})


class ScriptedLink:
    """A Redis link whose enqueue script answers what the test says."""

    def __init__(self) -> None:
        self.settings = BrokerSettings(url="redis://127.0.0.1", daemon_id="d")
        self.daemon_id = "d"
        self.prefix = "t:"
        self.answers: list[Any] = []
        self.calls: list[tuple[Any, ...]] = []

    def script(self, name: str, *args: Any) -> Deferred[Any]:
        self.calls.append((name, *args))
        answer = self.answers.pop(0)
        return fail(answer) if isinstance(answer, Exception) else succeed(answer)


@pytest.fixture
def logged() -> Iterator[list[LogEvent]]:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def answer_to(strategy: OperatorStrategy, text: str = "help") -> Any:
    results: list[Any] = []
    d = strategy.message_received(RecordingSession(client_id="c1", route="/support"), text)
    assert isinstance(d, Deferred)
    d.addBoth(results.append)
    return results[0]


def strategy_on(link: ScriptedLink, clock: Clock) -> tuple[OperatorStrategy, Any]:
    queue = SharedOperatorQueue(SETTINGS, link, clock)  # type: ignore[arg-type]
    return OperatorStrategy(queue, "queued #{position} as {item}"), queue


def test_what_the_client_is_told(logged: list[LogEvent]) -> None:
    """
    Not sent (or refused for now): "could not be queued". Sent, no answer:
    "could not confirm" (never "could not be queued": it may be). Neither
    logs a traceback (the link logs the outage once).
    """
    link, clock = ScriptedLink(), Clock()
    strategy, _ = strategy_on(link, clock)
    link.answers = [BrokerUnavailable("Redis cannot take enqueue now: LOADING"),
                    BrokerOutcomeUnknown("Redis did not answer enqueue within 5 s")]
    assert answer_to(strategy) == NOT_QUEUED
    assert answer_to(strategy) == UNCONFIRMED
    assert not any(e.get("log_failure") for e in logged)


def test_sent_again_after_could_not_confirm(logged: list[LogEvent]) -> None:
    """
    The same message again: the script is told it may match a closed item
    (the client was told it could not be confirmed); the first send's item
    is acknowledged again, or, closed, the client is told it was received.
    """
    link, clock = ScriptedLink(), Clock()
    strategy, _ = strategy_on(link, clock)
    link.answers = [BrokerOutcomeUnknown("lost"), ["resent", item_json("i1", "queued"), 3, 0]]
    assert answer_to(strategy) == UNCONFIRMED
    assert answer_to(strategy) == "queued #3 as i1"
    assert [call[-1] for call in link.calls] == ["0", "1"]
    assert link.calls[0][12] == message_digest("/support", "c1", "help")
    link.answers = [BrokerOutcomeUnknown("lost"), ["resent", item_json("i1", "answered"), 0, 0],
                    ["ok", item_json("i2", "queued"), 1, 0]]
    assert answer_to(strategy) == UNCONFIRMED
    assert answer_to(strategy) == RECEIVED_BEFORE
    # Confirmed now: the next identical message is matched only while open.
    assert answer_to(strategy) == "queued #1 as i2"
    assert link.calls[-1][-1] == "0"


def test_unconfirmed_messages_are_bounded_in_number_and_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """At most MAX_UNCONFIRMED remembered (the oldest go first), each for the window."""
    monkeypatch.setattr(shared, "MAX_UNCONFIRMED", 3)
    link, clock = ScriptedLink(), Clock()
    strategy, queue = strategy_on(link, clock)
    link.answers = [BrokerOutcomeUnknown("lost")] * 5
    for n in range(5):
        assert answer_to(strategy, f"m{n}") == UNCONFIRMED
    assert len(queue._unconfirmed) == 3
    link.answers = [["ok", item_json("i1", "queued"), 1, 0]] * 2
    answer_to(strategy, "m0")
    assert link.calls[-1][-1] == "0"  # forgotten: the oldest went first
    clock.advance(shared.RESEND_WINDOW + 1)
    answer_to(strategy, "m4")
    assert link.calls[-1][-1] == "0"  # past the window
    assert not queue._unconfirmed
