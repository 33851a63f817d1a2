"""
A backend bot's request across a crash (issue 22, item 5), on the real
driver, a memory store and a L{Clock}: each request is stored as an
answer owed (L{BotPending}, until its attempts are surely over); the
answer settles it (its last message, or an empty answer); a daemon started
again on the same store after a crash hands the conversation over once the
answer is overdue, rather than leaving the visitor's message unanswered
with the bot.
"""

from __future__ import annotations

from tests.driver_bench import GatedStore
from tests.unit.test_support_hook_bot import HookDesk
from wsdaemon.conversations.bot_events import LOST
from wsdaemon.conversations.model import BOT_GRACE

#: retries 0: one attempt, connect_timeout 3 s + timeout 10 s.
LONGEST = 13.0


def test_a_request_out_is_an_answer_owed_until_its_answer() -> None:
    """Owed from the request until its attempts are over; a text answer
    settles it; a second message's request owes again, an empty answer
    (204) settles that."""
    desk = HookDesk()
    start = desk.clock.seconds()
    desk.say("When do you open?")
    assert desk.conversation().bot_due == start + LONGEST
    desk.clock.advance(1)
    desk.backend.answer(0, "We open at 9.")
    assert desk.conversation().bot_due is None
    desk.say("ok")
    assert desk.conversation().bot_due == start + 1 + LONGEST
    desk.backend.answer(1)
    assert desk.conversation().bot_due is None
    desk.clock.advance(LONGEST + BOT_GRACE)
    assert desk.conversation().with_bot and desk.notes() == []


def test_messages_waiting_behind_a_request_stay_owed() -> None:
    """Two messages: the first's answer does not settle what the second's
    request owes."""
    desk = HookDesk()
    start = desk.clock.seconds()
    desk.say("first")
    desk.say("second")
    desk.clock.advance(2)
    desk.backend.answer(0, "One.")
    assert desk.conversation().bot_due == start + 2 + LONGEST
    desk.backend.answer(1, "Two.")
    assert desk.conversation().bot_due is None


def test_a_crash_with_a_request_out_hands_over_after_the_restart() -> None:
    """The daemon dies while its request is out: started again on the same
    store, the conversation goes to the operators once the answer is
    overdue, the note saying the bot's answer never came."""
    first = HookDesk()
    first.say("When do you open?")
    again = HookDesk(store=GatedStore(first.store.inner), start=first.clock.seconds() + 1)
    assert again.conversation().with_bot
    again.clock.advance(LONGEST + BOT_GRACE - 1.5)
    assert again.conversation().with_bot, "not before it is overdue"
    again.clock.advance(0.5)
    assert not again.conversation().with_bot
    assert again.notes() == [("bot", "handed over: " + LOST)]
    assert again.backend.requests == [], "nothing is sent to the backend twice"
