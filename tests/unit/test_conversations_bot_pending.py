"""
What a bot owes, in the core (issue 22, item 5): a visitor message to the
bot is owed an answer from when it is stored (in its own commit); a
L{BotPending} (delayed messages, a handoff after them, a backend's
request) is stored with the conversation (C{bot_due}, C{bot_handoff},
through the codec too); its last delayed message or the handoff clears it;
still owed L{BOT_GRACE} past its time, the C{bot} timer hands the
conversation over with the owed reason (or L{LOST}) as the note; the
operators taking it, or a new episode, owe nothing.
"""

from __future__ import annotations

from tests.conversation_desk import ROUTE, Desk, cid
from wsdaemon.conversations import (
    BotPending,
    BotReply,
    Commit,
    Handoff,
    OperatorReply,
    Resolve,
    Status,
    Timer,
    TimerFired,
    TimerKind,
    VisitorMessage,
    due_times,
)
from wsdaemon.conversations.bot_events import LOST
from wsdaemon.conversations.codec import conversation_from_row, conversation_row
from wsdaemon.conversations.model import BOT_GRACE

ACK = "Thanks! An operator will answer here soon."


def bot_due(desk: Desk, visitor: str = "v1") -> float | None:
    return due_times(desk.conversation(visitor), desk.settings)[TimerKind.BOT]


def fire(desk: Desk, at: float, visitor: str = "v1") -> None:
    desk.step(TimerFired(Timer(TimerKind.BOT, cid(visitor))), at=at)


def notes(desk: Desk, visitor: str = "v1") -> list[str]:
    return [n.body for n in desk.conversation(visitor).notes]


def pending_desk(handoff: str | None = "refund request") -> Desk:
    desk = Desk(fallback_after=0, ack_message=ACK)
    desk.online("alice")
    desk.step(VisitorMessage(ROUTE, "v1", "I want a refund", None, bot=True), at=100)
    desk.step(BotPending(ROUTE, "v1", 160.0, handoff), at=100)
    return desk


def test_what_the_bot_owes_is_stored_and_sets_the_bot_timer() -> None:
    """Committed (one conversation record), kept through the codec; the
    timer is due BOT_GRACE after it; a later promise extends it, an
    earlier one does not shorten it."""
    desk = pending_desk()
    [commit] = desk.effects(Commit)
    [stored] = commit.conversations
    assert (stored.bot_due, stored.bot_handoff) == (160.0, "refund request")
    assert conversation_from_row(conversation_row(stored)) == stored
    assert bot_due(desk) == 160.0 + BOT_GRACE
    desk.step(BotPending(ROUTE, "v1", 130.0), at=101)
    assert desk.effects(Commit) == []
    desk.step(BotPending(ROUTE, "v1", 170.0), at=102)
    conversation = desk.conversation("v1")
    assert (conversation.bot_due, conversation.bot_handoff) == (170.0, "refund request")


def test_an_overdue_handoff_is_made_by_the_core_with_its_reason() -> None:
    """The daemon that owed it is gone: the timer hands the conversation
    over, the rule's reason as the note, as the bot would have."""
    desk = pending_desk()
    fire(desk, at=160.0 + BOT_GRACE - 1)
    assert desk.conversation("v1").with_bot  # not due yet: nothing
    fire(desk, at=160.0 + BOT_GRACE)
    conversation = desk.conversation("v1")
    assert conversation.awaits_operator and desk.inbox.waiting(10) == [conversation]
    assert (conversation.bot_due, conversation.bot_handoff) == (None, None)
    assert conversation.waiting_since == 160.0 + BOT_GRACE
    assert notes(desk) == ["handed over: refund request"]
    assert bot_due(desk) is None


def test_lost_delayed_replies_hand_over_saying_so() -> None:
    """Delayed replies that never came (no handoff owed): handed over, LOST the note."""
    desk = pending_desk(handoff=None)
    fire(desk, at=200.0)
    assert not desk.conversation("v1").with_bot
    assert notes(desk) == [f"handed over: {LOST}"]


def test_the_last_delayed_reply_clears_what_was_owed() -> None:
    """Replies before the due time leave it; the one at its time clears it
    (no handoff owed); the timer then finds nothing to do."""
    desk = pending_desk(handoff=None)
    desk.step(BotReply(ROUTE, "v1", "Let me look...", None), at=130)
    assert desk.conversation("v1").bot_due == 160.0
    desk.step(BotReply(ROUTE, "v1", "Here it is.", None), at=160.0)
    assert desk.conversation("v1").bot_due is None and bot_due(desk) is None
    fire(desk, at=200.0)
    assert desk.conversation("v1").with_bot and notes(desk) == []


def test_an_owed_handoff_is_cleared_only_by_the_handoff() -> None:
    """With a handoff owed, the last reply leaves it (the handoff follows);
    the bot's own handoff clears it, and the timer finds nothing."""
    desk = pending_desk()
    desk.step(BotReply(ROUTE, "v1", "Checking your refund...", None), at=160.0)
    assert desk.conversation("v1").bot_due == 160.0
    desk.step(Handoff(ROUTE, "v1", "refund request"), at=160.0)
    conversation = desk.conversation("v1")
    assert (conversation.bot_due, conversation.bot_handoff) == (None, None)
    fire(desk, at=200.0)
    assert notes(desk) == ["handed over: refund request"]


def test_the_operators_taking_it_or_a_new_episode_owe_nothing() -> None:
    """An operator's reply takes it (no timer, a late promise ignored);
    resolved and opened again, the new episode owes only the answer to its
    first message (nothing of the last one's)."""
    desk = pending_desk()
    desk.step(OperatorReply(cid("v1"), "alice", "Alice here."), at=110)
    assert bot_due(desk) is None
    desk.step(BotPending(ROUTE, "v1", 300.0, "late"), at=111)
    assert desk.effects(Commit) == []
    fire(desk, at=400.0)
    assert notes(desk) == []
    desk.step(Resolve(cid("v1"), "alice"), at=120)
    desk.step(VisitorMessage(ROUTE, "v1", "me again", None, bot=True), at=130)
    conversation = desk.conversation("v1")
    assert conversation.with_bot and conversation.status is Status.OPEN
    assert (conversation.bot_due, conversation.bot_handoff) == (130.0, None)


def test_a_backends_answer_settles_what_was_owed() -> None:
    """A backend bot owes an answer until its request's time is up: the
    answer's last message settles it early; an answer with no message
    settles it with BotPending(until=None); nothing owed, nothing committed."""
    desk = pending_desk(handoff=None)
    desk.step(BotReply(ROUTE, "v1", "Open 9-17.", None, settles=True), at=101)
    assert desk.conversation("v1").bot_due is None and bot_due(desk) is None
    desk.step(BotPending(ROUTE, "v1", 170.0), at=102)
    assert desk.conversation("v1").bot_due == 170.0
    desk.step(BotPending(ROUTE, "v1", None), at=103)
    conversation = desk.conversation("v1")
    assert (conversation.bot_due, conversation.bot_handoff) == (None, None)
    desk.step(BotPending(ROUTE, "v1", None), at=104)
    assert desk.effects(Commit) == []
    fire(desk, at=400.0)
    assert desk.conversation("v1").with_bot and notes(desk) == []


def test_a_visitor_message_to_the_bot_is_owed_an_answer_in_its_own_commit() -> None:
    """Stored with the message: owed from now (the timer BOT_GRACE later);
    the bot's reply clears it; nobody answering, the timer hands over; a
    message to the operators owes nothing of the bot."""
    desk = Desk(fallback_after=0, ack_message=ACK)
    desk.step(VisitorMessage(ROUTE, "v1", "hello", None, bot=True), at=100)
    [commit] = desk.effects(Commit)
    assert [c.bot_due for c in commit.conversations] == [100.0]
    assert bot_due(desk) == 100.0 + BOT_GRACE
    desk.step(BotReply(ROUTE, "v1", "Hi!", None), at=100.01)
    assert desk.conversation("v1").bot_due is None
    desk.step(VisitorMessage(ROUTE, "v1", "anyone?", None, bot=True), at=200)
    fire(desk, at=200 + BOT_GRACE)
    assert not desk.conversation("v1").with_bot
    assert notes(desk) == [f"handed over: {LOST}"]
    desk.step(VisitorMessage(ROUTE, "v2", "hello", None), at=300)
    assert desk.conversation("v2").bot_due is None
