"""
Bot first (issue 22, item 5), in the core: a new episode on a route whose
bot answers first is the bot's (not queued, no notices, no timers, no
operator's load) until it hands over or an operator takes it.
"""

from __future__ import annotations

import pytest

from tests.conversation_desk import ROUTE, Desk, cid
from wsdaemon.conversations import (
    Assign,
    Author,
    BotReply,
    Commit,
    DeliverMessage,
    Handoff,
    InvalidMove,
    NotifyOperators,
    OperatorReply,
    Resolve,
    Routing,
    SetTimer,
    Snooze,
    Status,
    TimerKind,
    VisitorMessage,
)
from wsdaemon.conversations.codec import conversation_from_row, conversation_row

ACK = "Thanks! An operator will answer here soon."


def ask(desk: Desk, text: str = "where is my order?", visitor: str = "v1") -> None:
    desk.step(VisitorMessage(ROUTE, visitor, text, None, bot=True))


def test_a_new_episode_is_the_bots() -> None:
    """Nothing queued, no acknowledgement, no fallback timer, nobody's load;
    operators are still told (they see the bot's part)."""
    desk = Desk(fallback_after=60, routing=Routing.AUTO)
    desk.online("alice")
    ask(desk)
    conversation = desk.conversation("v1")
    assert conversation.with_bot and conversation.status is Status.OPEN
    assert desk.inbox.waiting(10) == []
    assert desk.inbox.load_of("alice") == 0 and conversation.assignee is None
    assert [e.message.body for e in desk.effects(DeliverMessage)] == []  # no ack
    assert not [t for t in desk.effects(SetTimer) if t.timer.kind is TimerKind.FALLBACK]
    assert [n.kind for n in desk.effects(NotifyOperators)] == ["conversation"]
    assert desk.inbox.status_counts()["bot"] == 1


def test_the_bots_answer_is_stored_delivered_and_ends_the_wait() -> None:
    """A bot reply is a message of the thread by the bot, delivered after the commit."""
    desk = Desk()
    ask(desk)
    desk.step(BotReply(ROUTE, "v1", "It ships tomorrow.", "Helper"))
    commit = desk.effects(Commit)[0]
    assert [(m.author, m.body, m.display_name) for m in commit.messages] == [
        (Author.BOT, "It ships tomorrow.", "Helper")]
    assert desk.all_effects[0] == commit
    assert [e.message.seq for e in desk.effects(DeliverMessage)] == [2]
    conversation = desk.conversation("v1")
    assert conversation.waiting_since is None and conversation.unanswered == 0
    assert conversation.preview == "It ships tomorrow."


def test_handoff_opens_it_for_the_operators() -> None:
    """The handoff queues it (auto routing assigns), sends the acknowledgement,
    starts the wait and the timers, and keeps why as a note."""
    desk = Desk(fallback_after=60, routing=Routing.AUTO)
    desk.online("alice")
    ask(desk)
    desk.step(BotReply(ROUTE, "v1", "Let me find someone.", None))
    desk.step(Handoff(ROUTE, "v1", "asked for a person"), at=10)
    conversation = desk.conversation("v1")
    assert not conversation.with_bot
    assert conversation.assignee == "alice" and desk.inbox.load_of("alice") == 1
    assert conversation.waiting_since == 10 and conversation.unanswered == 1
    assert [e.message.body for e in desk.effects(DeliverMessage)] == [ACK]
    assert [n.body for n in conversation.notes] == ["handed over: asked for a person"]
    assert [n.operator for n in desk.effects(Commit)[0].notes] == ["bot"]
    assert [t.at for t in desk.effects(SetTimer) if t.timer.kind is TimerKind.FALLBACK] == [70]
    assert "assigned" in [n.kind for n in desk.effects(NotifyOperators)]


def test_after_the_handoff_the_bot_is_refused_and_a_second_handoff_does_nothing() -> None:
    """Once the operators have it, the bot cannot answer (no two answers at once)."""
    desk = Desk()
    ask(desk)
    desk.step(Handoff(ROUTE, "v1"))
    with pytest.raises(InvalidMove, match=r"cannot answer as the bot \(the operators have it\)"):
        desk.step(BotReply(ROUTE, "v1", "Me again!"))
    transition = desk.step(Handoff(ROUTE, "v1", "again"))
    assert transition.effects == () and transition.conversations == ()


@pytest.mark.parametrize("take", ["reply", "assign", "snooze"])
def test_an_operator_who_acts_takes_it_from_the_bot(take: str) -> None:
    """Replying, assigning or snoozing ends the bot's episode."""
    desk = Desk()
    desk.online("alice")
    ask(desk)
    key = cid("v1")
    event = {"reply": OperatorReply(key, "alice", "I'm here."),
             "assign": Assign(key, "alice", "alice"),
             "snooze": Snooze(key, "alice", None)}[take]
    desk.step(event)
    assert not desk.conversation("v1").with_bot
    with pytest.raises(InvalidMove):
        desk.step(BotReply(ROUTE, "v1", "Hello?"))


def test_every_new_episode_starts_with_the_bot_but_not_a_woken_one() -> None:
    """Resolved, the visitor's next message is the bot's again; a snoozed
    conversation woken by the visitor stays the operators'."""
    desk = Desk()
    desk.online("alice")
    ask(desk)
    desk.step(OperatorReply(cid("v1"), "alice", "Done."))
    desk.step(Resolve(cid("v1"), "alice"))
    ask(desk, "one more thing")
    assert desk.conversation("v1").with_bot
    assert desk.inbox.load_of("alice") == 0, "alice kept as last assignee, not loaded"
    desk.step(Snooze(cid("v1"), "alice", None))
    ask(desk, "hello?")
    assert not desk.conversation("v1").with_bot
    assert desk.conversation("v1").status is Status.OPEN


def test_the_visitor_flooding_the_bot_is_capped() -> None:
    """max_unanswered counts the messages the bot has not answered yet."""
    desk = Desk(max_unanswered=2)
    ask(desk, "1")
    ask(desk, "2")
    desk.step(VisitorMessage(ROUTE, "v1", "3", None, bot=True))
    assert desk.conversation("v1").unanswered == 2
    desk.step(BotReply(ROUTE, "v1", "Slow down, please."))
    ask(desk, "3")
    assert desk.conversation("v1").unanswered == 1


def test_the_bots_episode_is_stored() -> None:
    """A row keeps whether the bot has the conversation."""
    desk = Desk()
    ask(desk)
    conversation = desk.conversation("v1")
    assert conversation_from_row(conversation_row(conversation)) == conversation
    desk.step(Handoff(ROUTE, "v1"))
    after = desk.conversation("v1")
    assert not conversation_from_row(conversation_row(after)).with_bot
