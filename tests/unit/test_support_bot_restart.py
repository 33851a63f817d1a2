"""
A route's bot of rules and what it owes across a restart, a reload and its
bound (issue 22, item 5), on the real driver, a memory store and a
L{Clock}: delayed messages (and a handoff after them) are stored as owed
(L{BotPending}); a daemon started again on the same store hands the
conversation over once they are overdue (the rule's reason, or saying the
answer was never sent); a reload or the bound makes an owed handoff at
once; what is sent clears what was owed.
"""

from __future__ import annotations

from typing import Any

from tests.driver_bench import GatedStore
from tests.unit.test_support_bot import ROUTE, BotDesk
from wsdaemon.conversations import Author, Commit, VisitorMessage
from wsdaemon.conversations.bot_events import LOST
from wsdaemon.conversations.model import BOT_GRACE
from wsdaemon.support.bot_settings import Unmatched

REFUND = "handed over: refunds need a person"


def restarted(desk: BotDesk, after: float = 0.0) -> BotDesk:
    """A daemon started on C{desk}'s store C{after} seconds later (C{desk}
    crashed: nothing of its shutdown ran)."""
    return BotDesk(store=GatedStore(desk.store.inner), start=desk.clock.seconds() + after)


def test_delayed_messages_and_their_handoff_are_stored_as_owed() -> None:
    """The refund rule (1 s, then 2 s, then the handoff): owed until 3 s
    from now with its reason; the handoff clears it."""
    desk = BotDesk()
    desk.say("I want a refund")
    conversation = desk.conversation()
    assert (conversation.bot_due, conversation.bot_handoff) == (1003.0, "refunds need a person")
    desk.clock.advance(3)
    conversation = desk.conversation()
    assert not conversation.with_bot and conversation.bot_due is None
    assert desk.notes() == [("bot", REFUND)]


def test_the_last_delayed_reply_clears_what_was_owed() -> None:
    """A slow reply (5 s, no handoff): owed, then cleared once it is sent;
    the conversation stays with the bot."""
    desk = BotDesk()
    desk.say("this is slow")
    assert desk.conversation().bot_due == 1005.0
    desk.clock.advance(5)
    assert desk.thread()[-1] == ("bot", "Thinking...")
    assert desk.conversation().bot_due is None
    desk.clock.advance(60)
    assert desk.conversation().with_bot and desk.notes() == []


def test_a_crash_before_an_owed_handoff_is_made_after_the_restart() -> None:
    """The daemon dies while the refund rule's messages wait: started again
    (at once, or long after), the conversation is handed over BOT_GRACE
    after it was due, with the rule's reason; the lost messages are not sent."""
    for after in (0.0, 600.0):
        first = BotDesk()
        first.say("I want a refund")
        again = restarted(first, after)
        assert again.conversation().with_bot
        again.clock.advance(max(0.0, 3 + BOT_GRACE - after) - 0.5)
        assert again.conversation().with_bot, "not before it is overdue"
        again.clock.advance(0.5)
        assert not again.conversation().with_bot
        assert again.notes() == [("bot", REFUND)]
        assert ("bot", "Let me look...") not in again.thread()
        assert again.bots.counts == {}, "the core's handoff is not the new bot's"


def test_a_crash_before_a_delayed_reply_hands_over_saying_so() -> None:
    """The daemon dies while a slow reply waits: after the restart the
    conversation goes to the operators, the note saying it was never sent."""
    first = BotDesk()
    first.say("this is slow")
    again = restarted(first)
    again.clock.advance(5 + BOT_GRACE)
    assert not again.conversation().with_bot
    assert again.notes() == [("bot", "handed over: " + LOST)]
    assert again.conversation().waiting_since == again.clock.seconds()


def test_no_second_greeting_after_a_restart() -> None:
    """The episode's next message after a restart: answered, not greeted
    again; the rules' counters start again."""
    first = BotDesk()
    first.say("order 1")
    first.say("order 2")
    assert first.thread()[-1] == ("bot", "Order 2 ships tomorrow (message 2).")
    again = restarted(first, 10)
    again.say("order 3")
    assert again.thread().count(("bot", "Hi, I am Robo.")) == 1
    assert again.thread()[-1] == ("bot", "Order 3 ships tomorrow (message 1).")


def test_a_reload_makes_an_owed_handoff_at_once() -> None:
    """serve again (a reload rebuilds the bot): the refund rule's handoff,
    waiting for its messages, is made at once, not left with the bot."""
    desk = BotDesk()
    desk.say("I want a refund")
    desk.bots.serve(ROUTE, desk.settings)
    assert not desk.conversation().with_bot
    assert desk.notes() == [("bot", REFUND)]
    assert desk.bots.counts[(ROUTE, "rule")] == 1


def test_the_bound_makes_an_owed_handoff_at_once() -> None:
    """An episode dropped for max_episodes while its rule's handoff waits:
    handed over at once, with the rule's reason."""
    desk = BotDesk(max_episodes=1)
    desk.say("I want a refund", "v1")
    desk.say("order 1", "v2")
    assert not desk.conversation("v1").with_bot
    assert desk.notes("v1") == [("bot", REFUND)]
    desk.clock.advance(10)
    assert ("bot", "A colleague will take over.") not in desk.thread("v1")


def test_what_is_owed_is_stored_before_anything_the_visitor_sees() -> None:
    """The greeting (sent now) comes after the commit that stores the
    refund rule's delayed message and handoff as owed: a visitor who saw
    the greeting cannot be left with a bot that died owing the rest."""
    desk = BotDesk()
    inner = desk.store.inner
    made: list[Commit] = []
    commit = inner.commit

    def recording(what: Commit) -> Any:
        made.append(what)
        return commit(what)

    inner.commit = recording  # type: ignore[method-assign]
    desk.say("I want a refund")
    owed = [i for i, c in enumerate(made) if any(x.bot_due is not None for x in c.conversations)]
    bots = [i for i, c in enumerate(made) if any(m.author is Author.BOT for m in c.messages)]
    assert owed and bots and owed[0] < bots[0], made
    assert desk.thread()[1] == ("bot", "Hi, I am Robo.")


def test_silence_is_an_answer_and_a_lost_one_is_not() -> None:
    """bot_unmatched = silent: the message is owed nothing (it stays with
    the bot, long after); a message the bot never heard (its daemon died
    between storing it and answering) is handed over once overdue."""
    quiet = BotDesk(unmatched=Unmatched.SILENT)
    quiet.say("order 1")
    quiet.say("something else entirely")
    assert quiet.conversation().bot_due is None
    quiet.clock.advance(600)
    assert quiet.conversation().with_bot and quiet.notes() == []
    # The visitor's message stored, but the bots never told of it (a crash).
    failures: list[Any] = []
    quiet.driver.submit(VisitorMessage(ROUTE, "v1", "hello?", None, bot=True)) \
        .addErrback(failures.append)
    again = restarted(quiet, 1)
    again.clock.advance(BOT_GRACE)
    assert not failures and not again.conversation().with_bot
    assert again.notes() == [("bot", "handed over: " + LOST)]
