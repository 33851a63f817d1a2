"""
A backend bot's request waiting for one of the route's C{bot_max_requests}
slots (issue 22, section 11 item 6), on the real driver, a memory store and
a L{Clock}: what the bot owes covers the wait and the request sent after
it, so the core's overdue timer never hands over a request that is still
out; and the wait is bounded (C{bot_timeout}): a request that gets no slot
in that time is never sent, the conversation handed over saying the
backend is busy, counted.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from twisted.internet.error import ConnectionRefusedError
from twisted.python.failure import Failure

from tests.driver_bench import ROUTE
from tests.unit.test_support_hook_bot import HookDesk
from wsdaemon.conversations.model import BOT_GRACE
from wsdaemon.support.bot_settings import BotSettings
from wsdaemon.support.hook_bot import BUSY, HookBot
from wsdaemon.support.hook_bot_request import attempts_time, owed_for
from wsdaemon.support.hook_bot_settings import BotBackend


def one_slot(retries: int = 0) -> HookDesk:
    """A desk whose backend bot has a single request slot (bot_max_requests = 1)."""
    desk = HookDesk(retries=retries)
    backend = desk.settings.backend
    assert backend is not None
    webhook = replace(backend.webhook, max_requests=1)
    desk.settings = BotSettings(None, "Helper", backend=BotBackend(webhook, backend.context))
    desk.bot = desk.bots.serve(ROUTE, desk.settings)
    assert isinstance(desk.bot, HookBot) and desk.bot.backend.webhook.max_requests == 1
    return desk


def hook_bot(desk: HookDesk) -> HookBot:
    assert isinstance(desk.bot, HookBot)
    return desk.bot


def test_a_request_that_waited_for_a_slot_is_not_handed_over_while_out() -> None:
    """v2's request waits 8.9 s behind v1's, then is sent: it is still with
    the bot past (its arrival + its own time + 5 s), and its answer is the
    bot's (before: the core handed it over at 19 s, its request still out)."""
    desk = one_slot()
    hook = desk.settings.backend.webhook  # type: ignore[union-attr]
    start = desk.clock.seconds()
    desk.say("one", visitor="v1")
    desk.clock.advance(1)
    desk.say("two", visitor="v2")
    assert len(desk.backend.requests) == 1  # waits for the slot
    assert hook_bot(desk).hook_stats.in_flight == 1  # the one sent
    assert desk.conversation("v2").bot_due == start + 1 + owed_for(hook, slot_free=False)
    desk.clock.advance(8.9)
    desk.backend.answer(0, "Answer one.")
    assert len(desk.backend.requests) == 2
    assert desk.backend.event(1)["message"]["text"] == "two"
    assert hook_bot(desk).hook_stats.in_flight == 1
    # Past the time it would have owed from its arrival (and the grace),
    # its request sent at 9.9 s and not timed out yet (19.9 s):
    desk.clock.advance(1 + attempts_time(hook) + BOT_GRACE + 0.5 - 9.9)
    assert desk.conversation("v2").with_bot, desk.notes("v2")
    assert desk.notes("v2") == []
    desk.backend.answer(1, "Answer two.")
    # Timed from when each was sent (9.9 s, then 9.6 s), not from arrival.
    stats = hook_bot(desk).hook_stats
    assert stats.in_flight == 0 and stats.latency_sum == pytest.approx(9.9 + 9.6)
    assert desk.thread("v2") == [("visitor", None, "two"), ("bot", "Helper", "Answer two.")]
    assert desk.conversation("v2").bot_due is None
    desk.clock.advance(60)
    assert desk.conversation("v2").with_bot and desk.notes("v2") == []


def test_a_request_sent_at_once_owes_only_its_own_time() -> None:
    """With a slot free, the answer is owed for the attempts alone."""
    desk = one_slot()
    hook = desk.settings.backend.webhook  # type: ignore[union-attr]
    start = desk.clock.seconds()
    desk.say("one")
    assert desk.conversation().bot_due == start + attempts_time(hook)


def test_a_request_without_a_slot_for_its_time_is_handed_over_never_sent() -> None:
    """v1's request holds the only slot (refused once, then retried and
    slow); v2's waits bot_timeout (10 s), is never sent, and v2 goes to the
    operators saying the backend is busy; counted as an error 'busy'."""
    desk = one_slot(retries=1)
    desk.say("one", visitor="v1")
    desk.clock.advance(1)
    desk.say("two", visitor="v2")
    desk.clock.advance(8)
    desk.backend.requests[0][3].errback(Failure(ConnectionRefusedError()))
    desk.clock.advance(0.2)  # the retry's backoff: v1's second attempt, slow
    assert len(desk.backend.requests) == 2
    desk.clock.advance(1.7)  # v2 has waited 9.9 s
    assert desk.conversation("v2").with_bot
    desk.clock.advance(0.2)
    assert not desk.conversation("v2").with_bot
    assert desk.notes("v2") == [("bot", "handed over: " + BUSY.format(
        why="all 1 of its requests (bot_max_requests) were out for 10s"))]
    assert hook_bot(desk).hook_stats.errors["busy"] == 1
    assert desk.bots.counts[(ROUTE, "backend_failed")] == 1
    # Never sent, and the slot still v1's: its answer is still the bot's.
    assert len(desk.backend.requests) == 2
    assert desk.conversation("v1").with_bot
    desk.backend.answer(1, "Answer one.")
    assert desk.thread("v1")[-1] == ("bot", "Helper", "Answer one.")
    # The slot is free again: the next message is sent at once.
    desk.say("three", visitor="v3")
    assert len(desk.backend.requests) == 3
    assert hook_bot(desk).hook_stats.in_flight == 1


def test_an_operator_taking_a_waiting_conversation_frees_its_place() -> None:
    """A waiting request cancelled (the episode forgotten) is never sent and
    takes no slot: the next one goes when the slot frees."""
    desk = one_slot()
    desk.say("one", visitor="v1")
    desk.say("two", visitor="v2")
    desk.bot.forget(desk.conversation("v2").conversation_id)
    desk.say("three", visitor="v3")
    desk.backend.answer(0, "Answer one.")
    assert len(desk.backend.requests) == 2
    assert desk.backend.event(1)["message"]["text"] == "three"
    desk.clock.advance(11)
    assert hook_bot(desk).hook_stats.errors["busy"] == 0
