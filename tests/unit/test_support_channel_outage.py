"""
The operator channel during a Redis outage, in memory: a request the store
could not take (Redis unreachable, stalled or loading) is answered with a
retryable error and logs no traceback (the link logs the outage once); one
whose answer never came is not said to have failed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import fail
from twisted.logger import LogEvent

from tests.support_channel_kit import ROUTE, Desk
from wsdaemon.conversations import Status, conversation_id_for
from wsdaemon.errors import BrokerOutcomeUnknown, BrokerUnavailable

ALICE = "a" * 20


def answer_with(problem: Exception, request: dict[str, Any]) -> tuple[Desk, dict[str, Any]]:
    desk = Desk()
    desk.visitor("ann")
    alice = desk.connect(ALICE)
    desk.store.commit = lambda commit: fail(problem)  # type: ignore[method-assign]
    conversation = conversation_id_for(ROUTE, "ann")
    answer = desk.ask(alice, {**request, "conversation": conversation})
    return desk, answer


def test_redis_unavailable_is_try_again_without_a_traceback(
        failures: list[LogEvent]) -> None:
    """
    Redis refused the commit (LOADING): the operator is told nothing changed
    and to try again, never "internal error"; no traceback is logged.
    """
    desk, answer = answer_with(
        BrokerUnavailable("Redis cannot take EVALSHA now: LOADING"), {"type": "resolve"})
    assert answer["type"] == "error", answer
    assert answer["error"].endswith("nothing changed; try again"), answer
    assert "LOADING" not in answer["error"] and "internal" not in answer["error"]
    conversation = desk.inbox.conversation(conversation_id_for(ROUTE, "ann"))
    assert conversation is not None and conversation.status is Status.OPEN
    assert failures == []


def test_an_unconfirmed_reply_is_not_said_to_have_failed(failures: list[LogEvent]) -> None:
    """
    The commit was sent and Redis never answered: the reply may be stored,
    so the operator is told to look before sending it again (a reply sent
    again would be stored twice), not that nothing changed; no traceback.
    """
    _, answer = answer_with(BrokerOutcomeUnknown("no answer within 1 s"),
                            {"type": "reply", "text": "On its way."})
    assert answer["type"] == "error", answer
    assert "may have been done" in answer["error"], answer
    assert "nothing changed" not in answer["error"]
    assert failures == []
