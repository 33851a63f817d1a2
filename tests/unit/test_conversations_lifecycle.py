"""
The conversation core, one conversation at a time (manual routing): states
and the moves between them, messages and notices, waiting, first-response
and resolution times, unread counts, receipts, typing, notes, labels,
contacts, caps and bounds, and every refused move.
"""

from __future__ import annotations

import pytest

from tests.conversation_desk import ROUTE, Desk, cid
from wsdaemon.conversations import (
    VISITOR_BOUND,
    AddNote,
    Assign,
    Author,
    Bounds,
    CancelTimer,
    Commit,
    ConfirmVisitorMessage,
    DeliverMessage,
    InvalidMove,
    LeaveContact,
    Measure,
    Metric,
    NotifyOperators,
    OperatorRead,
    OperatorReply,
    OperatorTyping,
    RefuseVisitor,
    Reopen,
    Resolve,
    SetLabels,
    SetTimer,
    SignalVisitor,
    Snooze,
    Status,
    Timer,
    TimerFired,
    TimerKind,
    Transfer,
    VisitorDelivered,
    VisitorMessage,
    VisitorRead,
    VisitorTyping,
    conversation_id_for,
)

ACK = "Thanks! An operator will answer here soon."


def write(desk: Desk, text: str = "hello", visitor: str = "v1", at: float | None = None,
          client_message_id: str | None = None) -> None:
    desk.step(VisitorMessage(ROUTE, visitor, text, client_message_id), at)


def bodies(desk: Desk) -> list[str]:
    return [effect.message.body for effect in desk.effects(DeliverMessage)]


# -- opening ------------------------------------------------------------------


def test_first_message_opens_an_unassigned_conversation_committed_first() -> None:
    """A visitor's first message opens its conversation: stored (with the
    acknowledgement) before anything else, confirmed as seq 1, announced."""
    desk = Desk()
    desk.online("alice")
    write(desk, "Hello, is anyone there?", at=10.0)
    conversation = desk.conversation("v1")
    assert (conversation.status, conversation.assignee, conversation.version) == \
        (Status.OPEN, None, 1)
    assert (conversation.created_at, conversation.opened_at, conversation.waiting_since) == \
        (10.0, 10.0, 10.0)
    commit = desk.all_effects[0]
    assert isinstance(commit, Commit)
    assert [(m.seq, m.author, m.body) for m in commit.messages] == \
        [(1, Author.VISITOR, "Hello, is anyone there?"), (2, Author.SYSTEM, ACK)]
    assert desk.effects(ConfirmVisitorMessage) == [
        ConfirmVisitorMessage(ROUTE, "v1", None, 1)]
    assert [n.kind for n in desk.effects(NotifyOperators)] == ["conversation", "message"]
    assert bodies(desk) == [ACK]
    assert conversation.preview == "Hello, is anyone there?"


def test_conversation_ids_are_per_visitor_per_route() -> None:
    """The same visitor and route give the same id anywhere; another route another id."""
    assert conversation_id_for("/a", "v") == conversation_id_for("/a", "v")
    assert conversation_id_for("/a", "v") != conversation_id_for("/b", "v")
    assert conversation_id_for("/a", "v") != conversation_id_for("/a", "w")
    assert len(conversation_id_for("/a", "v")) == 20


def test_acknowledgement_once_per_episode() -> None:
    """The acknowledgement comes with the message that opens an episode, not every message."""
    desk = Desk()
    desk.online("alice")
    write(desk)
    assert bodies(desk) == [ACK]
    write(desk, "still there?")
    assert bodies(desk) == []
    desk.step(Resolve(cid("v1"), "alice"))
    write(desk, "one more thing")
    assert bodies(desk) == [ACK]


def test_notices_after_every_message_when_configured() -> None:
    """notices_once = False keeps the old behaviour: an acknowledgement every time."""
    desk = Desk(notices_once=False)
    desk.online("alice")
    write(desk)
    write(desk, "again")
    assert bodies(desk) == [ACK]


def test_offline_notice_once_when_nobody_is_online() -> None:
    """With no operator online the visitor is told (once an episode) to leave an email."""
    desk = Desk(ack_message="")
    write(desk)
    assert bodies(desk) == [desk.settings.offline_message]
    write(desk, "hello?")
    assert bodies(desk) == []
    desk.online("alice")
    desk.step(Resolve(cid("v1"), "alice"))
    write(desk, "back")
    assert bodies(desk) == []


# -- replies, waiting, times --------------------------------------------------


def test_reply_is_delivered_named_and_takes_the_conversation() -> None:
    """A reply is stored, delivered with the operator's display name, and an
    unassigned conversation becomes the replier's."""
    desk = Desk()
    desk.online("alice")
    write(desk, at=1.0)
    desk.step(OperatorReply(cid("v1"), "alice", "Hi! Alice here.", "Alice B."), at=4.0)
    assert isinstance(desk.all_effects[0], Commit)
    (delivery,) = desk.effects(DeliverMessage)
    assert (delivery.message.seq, delivery.message.author, delivery.message.operator,
            delivery.message.display_name) == (3, Author.OPERATOR, "alice", "Alice B.")
    conversation = desk.conversation("v1")
    assert (conversation.assignee, conversation.assigned_at) == ("alice", 4.0)


def test_waiting_time_runs_from_the_oldest_unanswered_message() -> None:
    """Waiting starts at the first unanswered message, a second does not move
    it, a reply ends it, and the next message starts it again."""
    desk = Desk()
    desk.online("alice")
    write(desk, at=10.0)
    write(desk, "hello?", at=25.0)
    assert desk.conversation("v1").waiting_time(30.0) == 20.0
    desk.step(OperatorReply(cid("v1"), "alice", "Hi"), at=40.0)
    assert desk.conversation("v1").waiting_since is None
    assert desk.conversation("v1").waiting_time(50.0) == 0.0
    write(desk, "thanks, and...", at=60.0)
    assert desk.conversation("v1").waiting_time(61.0) == 1.0


def test_first_response_time_measured_once_per_episode() -> None:
    """The first reply of an episode is measured from its opening; later ones are not."""
    desk = Desk()
    desk.online("alice")
    write(desk, at=100.0)
    desk.step(OperatorReply(cid("v1"), "alice", "Hi"), at=130.0)
    assert desk.effects(Measure) == [Measure(Metric.FIRST_RESPONSE, ROUTE, 30.0)]
    assert desk.conversation("v1").first_response_time == 30.0
    write(desk, "and?", at=140.0)
    desk.step(OperatorReply(cid("v1"), "alice", "And..."), at=150.0)
    assert desk.effects(Measure) == []


def test_resolve_measures_resolution_and_ends_waiting() -> None:
    """Resolving ends the wait, measures the episode and tells the visitor."""
    desk = Desk()
    desk.online("alice")
    write(desk, at=100.0)
    desk.step(Resolve(cid("v1"), "alice"), at=400.0)
    conversation = desk.conversation("v1")
    assert (conversation.status, conversation.waiting_since, conversation.resolved_at) == \
        (Status.RESOLVED, None, 400.0)
    assert conversation.resolution_time == 300.0
    assert desk.effects(Measure) == [Measure(Metric.RESOLUTION, ROUTE, 300.0)]
    assert desk.effects(SignalVisitor) == [
        SignalVisitor(ROUTE, "v1", "status", status="resolved")]
    assert CancelTimer(Timer(TimerKind.FALLBACK, cid("v1"))) in desk.all_effects


def test_visitor_message_reopens_a_resolved_conversation_as_a_new_episode() -> None:
    """The same conversation reopens: its numbering goes on, times and unread start over."""
    desk = Desk()
    desk.online("alice")
    write(desk, at=1.0)
    desk.step(OperatorReply(cid("v1"), "alice", "Hi"), at=2.0)
    desk.step(Resolve(cid("v1"), "alice"), at=3.0)
    write(desk, "it broke again", at=50.0)
    conversation = desk.conversation("v1")
    assert (conversation.status, conversation.opened_at, conversation.first_response_at,
            conversation.resolved_at, conversation.waiting_since) == \
        (Status.OPEN, 50.0, None, None, 50.0)
    assert conversation.conversation_id == cid("v1")
    assert conversation.assignee == "alice"  # by hand, it stays with who had it
    assert [m.seq for m in desk.all_effects[0].messages] == [4, 5]  # type: ignore[union-attr]
    assert conversation.unread_for("bob") == 1
    assert [n.kind for n in desk.effects(NotifyOperators)][0] == "message"
    # The visitor's other tabs (and its widget) hear it open again.
    assert desk.effects(SignalVisitor) == [SignalVisitor(ROUTE, "v1", "status", status="open")]
    write(desk, "still broken", at=51.0)
    assert desk.effects(SignalVisitor) == [], "an open conversation is not reopened"


def test_operator_reopens_and_the_visitor_hears_it() -> None:
    """An operator reopens a resolved conversation; reopening an open one is refused."""
    desk = Desk()
    desk.online("alice")
    write(desk)
    desk.step(Resolve(cid("v1"), "alice"))
    desk.step(Reopen(cid("v1"), "alice"), at=9.0)
    assert desk.conversation("v1").status is Status.OPEN
    assert desk.conversation("v1").opened_at == 9.0
    assert desk.effects(SignalVisitor) == [SignalVisitor(ROUTE, "v1", "status", status="open")]
    with pytest.raises(InvalidMove, match="is open \\(unassigned\\): cannot reopen"):
        desk.step(Reopen(cid("v1"), "alice"))


# -- snoozing -----------------------------------------------------------------


def test_snooze_until_a_time_wakes_then() -> None:
    """Snoozed until T: a wake timer at T; a timer that fires early changes
    nothing; at T the conversation is open again."""
    desk = Desk(fallback_after=0)
    desk.online("alice")
    write(desk, at=0.0)
    desk.step(Snooze(cid("v1"), "alice", until=100.0), at=10.0)
    assert desk.conversation("v1").status is Status.SNOOZED
    assert SetTimer(Timer(TimerKind.WAKE, cid("v1")), 100.0) in desk.all_effects
    desk.step(TimerFired(Timer(TimerKind.WAKE, cid("v1"))), at=50.0)
    assert desk.all_effects == () and desk.conversation("v1").status is Status.SNOOZED
    desk.step(TimerFired(Timer(TimerKind.WAKE, cid("v1"))), at=100.0)
    conversation = desk.conversation("v1")
    assert (conversation.status, conversation.snoozed_until) == (Status.OPEN, None)
    assert conversation.opened_at == 0.0  # the same episode goes on


def test_visitor_message_wakes_a_snoozed_conversation_early() -> None:
    """Snoozed until T, the visitor writes first: open at once, the wake timer cancelled."""
    desk = Desk(fallback_after=0)
    desk.online("alice")
    write(desk, at=0.0)
    desk.step(Snooze(cid("v1"), "alice", until=100.0), at=10.0)
    write(desk, "hello?", at=20.0)
    assert desk.conversation("v1").status is Status.OPEN
    assert CancelTimer(Timer(TimerKind.WAKE, cid("v1"))) in desk.all_effects
    assert bodies(desk) == []  # waking is not a new episode: no second acknowledgement


def test_snooze_until_the_next_message_sets_no_timer() -> None:
    """Snoozed with no time: only the visitor's next message wakes it."""
    desk = Desk(fallback_after=0)
    desk.online("alice")
    write(desk)
    desk.step(Snooze(cid("v1"), "alice"), at=5.0)
    assert not desk.effects(SetTimer)
    desk.step(TimerFired(Timer(TimerKind.WAKE, cid("v1"))), at=10_000.0)
    assert desk.conversation("v1").status is Status.SNOOZED
    write(desk, "hi again", at=10_001.0)
    assert desk.conversation("v1").status is Status.OPEN


def test_snooze_refusals() -> None:
    """A resolved conversation cannot be snoozed, nor anything until a time already past."""
    desk = Desk()
    desk.online("alice")
    write(desk, at=10.0)
    with pytest.raises(InvalidMove, match="later than now"):
        desk.step(Snooze(cid("v1"), "alice", until=10.0))
    desk.step(Resolve(cid("v1"), "alice"))
    with pytest.raises(InvalidMove, match="is resolved: cannot snooze"):
        desk.step(Snooze(cid("v1"), "alice", until=99.0))


def test_operator_wakes_a_snoozed_conversation() -> None:
    """Reopen on a snoozed conversation wakes it, in the same episode."""
    desk = Desk()
    desk.online("alice")
    write(desk, at=1.0)
    desk.step(Snooze(cid("v1"), "alice", until=500.0), at=2.0)
    desk.step(Reopen(cid("v1"), "alice"), at=3.0)
    assert desk.conversation("v1").status is Status.OPEN
    assert CancelTimer(Timer(TimerKind.WAKE, cid("v1"))) in desk.all_effects
    assert not desk.effects(SignalVisitor)


# -- notes --------------------------------------------------------------------


def test_notes_are_never_sent_to_the_visitor() -> None:
    """A private note is stored and shown to operators; nothing reaches the visitor."""
    desk = Desk()
    desk.online("alice")
    write(desk)
    desk.step(AddNote(cid("v1"), "alice", "VIP customer, be nice"))
    commit = desk.all_effects[0]
    assert isinstance(commit, Commit)
    assert commit.messages == () and [n.body for n in commit.notes] == ["VIP customer, be nice"]
    assert not [e for e in desk.all_effects if isinstance(e, VISITOR_BOUND)]
    assert [n.kind for n in desk.effects(NotifyOperators)] == ["note"]
    assert desk.conversation("v1").last_seq == 2  # not a message


def test_notes_kept_in_memory_are_bounded() -> None:
    """Only the newest notes stay in memory; every note is committed and counted."""
    desk = Desk(bounds=Bounds(max_notes_kept=2))
    write(desk)
    for n in range(5):
        desk.step(AddNote(cid("v1"), "alice", f"note {n}"))
    conversation = desk.conversation("v1")
    assert [note.body for note in conversation.notes] == ["note 3", "note 4"]
    assert conversation.note_count == 5
    desk.step(Resolve(cid("v1"), "alice"))
    desk.step(AddNote(cid("v1"), "alice", "after resolving"))  # any state
    assert desk.conversation("v1").note_count == 6


# -- refusals -----------------------------------------------------------------


def test_invalid_moves_name_conversation_state_and_action() -> None:
    """Refused moves say which conversation, in which state, cannot do what."""
    desk = Desk()
    desk.online("alice")
    write(desk)
    key = cid("v1")
    desk.step(Resolve(key, "alice"))
    with pytest.raises(InvalidMove) as raised:
        desk.step(OperatorReply(key, "alice", "late"))
    assert str(raised.value) == f"conversation {key} is resolved: cannot reply (reopen it first)"
    assert (raised.value.conversation_id, raised.value.state, raised.value.action) == \
        (key, "resolved", "reply")
    with pytest.raises(InvalidMove, match="is resolved: cannot resolve"):
        desk.step(Resolve(key, "alice"))
    with pytest.raises(InvalidMove, match="unknown: cannot reply"):
        desk.step(OperatorReply("nope", "alice", "hi"))
    desk.step(Reopen(key, "alice"))
    with pytest.raises(InvalidMove, match="the text is empty"):
        desk.step(OperatorReply(key, "alice", "  "))


def test_a_refused_move_changes_nothing() -> None:
    """decide() never touches the inbox; after a refusal it is as it was."""
    desk = Desk()
    desk.online("alice")
    write(desk)
    before = desk.conversation("v1")
    desk.inbox.decide(OperatorReply(cid("v1"), "alice", "not committed"), 5.0)
    assert desk.conversation("v1") is before
    with pytest.raises(InvalidMove):
        desk.step(Transfer(cid("v1"), "alice", "alice"))
    assert desk.conversation("v1") is before


# -- assignment by hand -------------------------------------------------------


def test_assign_transfer_unassign_by_hand() -> None:
    """Assign to a known operator, transfer to another, unassign: each refused where wrong."""
    desk = Desk()
    desk.online("alice", "bob")
    write(desk)
    key = cid("v1")
    with pytest.raises(InvalidMove, match="nobody has it: assign it instead"):
        desk.step(Transfer(key, "bob", "alice"))
    with pytest.raises(InvalidMove) as unknown:
        desk.step(Assign(key, "zed", "alice"))
    # The reason leads: the conversation's state is not why.
    assert str(unknown.value) == f"conversation {key}: cannot assign to zed: no operator named zed"
    desk.step(Assign(key, "alice", "alice"), at=3.0)
    assert desk.effects(NotifyOperators)[-1] == NotifyOperators(
        "assigned", desk.conversation("v1"), operator="alice")
    with pytest.raises(InvalidMove, match="it already is"):
        desk.step(Assign(key, "alice", "alice"))
    desk.step(Transfer(key, "bob", "alice"), at=4.0)
    assert (desk.conversation("v1").assignee, desk.conversation("v1").assigned_at) == ("bob", 4.0)
    with pytest.raises(InvalidMove, match="bob has it already"):
        desk.step(Transfer(key, "bob", "alice"))
    desk.step(Assign(key, None, "bob"))
    assert desk.conversation("v1").assignee is None
    with pytest.raises(InvalidMove, match="it is not assigned"):
        desk.step(Assign(key, None, "bob"))


# -- unread, receipts ---------------------------------------------------------


def test_unread_counts_per_operator() -> None:
    """Each operator's unread count is the visitor messages after its own read mark."""
    desk = Desk()
    desk.online("alice", "bob")
    for text in ("one", "two", "three"):
        write(desk, text)  # seqs 1 (then the ack, 2), 3, 4
    conversation = desk.conversation("v1")
    assert (conversation.unread_for("alice"), conversation.unread_for("bob")) == (3, 3)
    desk.step(OperatorRead(cid("v1"), "alice", 3))
    assert desk.conversation("v1").unread_for("alice") == 1
    assert desk.conversation("v1").unread_for("bob") == 3
    assert desk.effects(NotifyOperators)[0].operator == "alice"
    assert desk.effects(SignalVisitor) == [SignalVisitor(ROUTE, "v1", "read", upto=3)]
    desk.step(OperatorRead(cid("v1"), "alice", 2))  # behind its mark: nothing
    assert desk.all_effects == ()
    desk.step(OperatorReply(cid("v1"), "bob", "hi"))  # replying reads
    assert desk.conversation("v1").unread_for("bob") == 0
    assert desk.conversation("v1").unread_for("alice") == 1


def test_unread_is_counted_up_to_its_bound() -> None:
    """Past max_unread, the count stays at the bound (a console shows 99+)."""
    desk = Desk(bounds=Bounds(max_unread=3), max_unanswered=0)
    for n in range(6):
        write(desk, f"m{n}")
    assert desk.conversation("v1").unread_for("alice") == 3
    assert len(desk.conversation("v1").recent_visitor_seqs) == 3


def test_read_marks_are_bounded_and_a_forgotten_one_counts_from_the_episode() -> None:
    """Past max_read_marks the least recent reader is forgotten: its unread
    count falls back to the episode's, never below zero."""
    desk = Desk(bounds=Bounds(max_read_marks=2))
    write(desk)
    write(desk, "again")
    for name in ("alice", "bob", "carol"):
        desk.step(OperatorRead(cid("v1"), name, 99))  # clamped to the last message
    conversation = desk.conversation("v1")
    assert [name for name, _ in conversation.read_marks] == ["bob", "carol"]
    assert conversation.unread_for("alice") == 2
    assert conversation.unread_for("carol") == 0


def test_visitor_receipts_move_watermarks_forward_only() -> None:
    """Delivered and read are watermarks: clamped to the last message, never moved back;
    read implies delivered."""
    desk = Desk()
    desk.online("alice")
    write(desk)
    desk.step(OperatorReply(cid("v1"), "alice", "hi"))  # seq 3
    desk.step(VisitorDelivered(ROUTE, "v1", 99))
    assert desk.conversation("v1").delivered_upto == 3
    assert [n.kind for n in desk.effects(NotifyOperators)] == ["delivered"]
    desk.step(VisitorDelivered(ROUTE, "v1", 2))
    assert desk.all_effects == ()
    desk.step(VisitorRead(ROUTE, "v1", 3))
    assert (desk.conversation("v1").visitor_read_upto, desk.conversation("v1").delivered_upto) \
        == (3, 3)
    desk.step(VisitorRead(ROUTE, "nobody", 3))
    assert desk.all_effects == ()


# -- resends and caps ---------------------------------------------------------


def test_a_resent_message_is_confirmed_not_stored_twice() -> None:
    """The same client message id again: confirmed with its first seq, nothing committed."""
    desk = Desk()
    write(desk, "hi", client_message_id="c-1")
    write(desk, "hi", client_message_id="c-1")
    assert desk.all_effects == (ConfirmVisitorMessage(ROUTE, "v1", "c-1", 1, duplicate=True),)
    assert desk.conversation("v1").last_seq == 2  # message, offline notice (not the ack too)


def test_resend_memory_is_bounded() -> None:
    """Only the newest max_recent_client_ids are remembered."""
    desk = Desk(bounds=Bounds(max_recent_client_ids=2), max_unanswered=0)
    for n in range(3):
        write(desk, f"m{n}", client_message_id=f"c-{n}")
    assert [i for i, _ in desk.conversation("v1").recent_client_ids] == ["c-1", "c-2"]
    write(desk, "m0", client_message_id="c-0")
    assert desk.effects(ConfirmVisitorMessage)[0].duplicate is False


def test_unanswered_messages_are_capped_until_an_answer() -> None:
    """Past max_unanswered waiting messages the visitor is refused (nothing
    stored) until an operator answers."""
    desk = Desk(max_unanswered=2)
    desk.online("alice")
    write(desk, "1")
    write(desk, "2")
    write(desk, "3")
    assert desk.all_effects == (RefuseVisitor(ROUTE, "v1", "unanswered", 2),)
    desk.step(OperatorReply(cid("v1"), "alice", "yes?"))
    write(desk, "3")
    assert isinstance(desk.all_effects[0], Commit)


def test_open_conversations_are_capped_per_route_and_in_all() -> None:
    """A message that would open one conversation too many is refused; a
    resolved conversation's new message counts as opening one."""
    desk = Desk(max_open_per_route=2, max_open_total=3)
    write(desk, visitor="a")
    write(desk, visitor="b")
    write(desk, visitor="c")
    assert desk.all_effects == (RefuseVisitor(ROUTE, "c", "route_full", 2),)
    desk.step(VisitorMessage("/other", "c", "hi"))
    desk.step(VisitorMessage("/other", "d", "hi"))
    assert desk.all_effects == (RefuseVisitor("/other", "d", "inbox_full", 3),)
    write(desk, "more", visitor="a")  # an open one takes more messages
    assert isinstance(desk.all_effects[0], Commit)
    desk.step(Resolve(cid("a"), "alice"))
    write(desk, visitor="c")
    assert desk.conversation("c").status is Status.OPEN
    desk.step(Resolve(cid("c"), "alice"))
    write(desk, visitor="a")
    assert desk.conversation("a").status is Status.OPEN


# -- labels, contacts ---------------------------------------------------------


def test_labels_are_normalised_and_bounded() -> None:
    """Labels are trimmed and lower-cased, at most max_labels, each printable and short."""
    desk = Desk(bounds=Bounds(max_labels=2, max_label_length=8))
    write(desk)
    key = cid("v1")
    desk.step(SetLabels(key, "alice", add=(" Billing ", "vip")))
    assert desk.conversation("v1").labels == ("billing", "vip")
    with pytest.raises(InvalidMove, match="at most 2 labels"):
        desk.step(SetLabels(key, "alice", add=("refund",)))
    with pytest.raises(InvalidMove, match="1 to 8 printable"):
        desk.step(SetLabels(key, "alice", add=("much-too-long",)))
    with pytest.raises(InvalidMove, match="1 to 8 printable"):
        desk.step(SetLabels(key, "alice", add=("a\x1bb",)))
    desk.step(SetLabels(key, "alice", add=("refund",), remove=("VIP",)))
    assert desk.conversation("v1").labels == ("billing", "refund")
    desk.step(SetLabels(key, "alice", add=("refund",)))
    assert desk.all_effects == ()


def test_leaving_a_contact() -> None:
    """An email address is kept on the conversation and the visitor told when
    and where the answer comes; anything else is refused."""
    desk = Desk()
    write(desk)
    desk.step(LeaveContact(ROUTE, "v1", " ann@example.com "))
    assert desk.conversation("v1").contact == "ann@example.com"
    assert bodies(desk) == ["Got it: the team will see your email address (ann@example.com) "
                            "and may write to you there."]
    for wrong in ("ann", "ann@example", "a b@example.com", "x" * 250 + "@example.com"):
        with pytest.raises(InvalidMove, match="not an email address"):
            desk.step(LeaveContact(ROUTE, "v1", wrong))
    with pytest.raises(InvalidMove, match="write a message first"):
        desk.step(LeaveContact(ROUTE, "nobody", "ann@example.com"))


# -- typing -------------------------------------------------------------------


def test_visitor_typing_is_shown_to_operators_and_runs_out() -> None:
    """Typing on: operators told once, a timer; the timer running out turns it off."""
    desk = Desk(typing_timeout=5.0)
    write(desk, at=0.0)
    desk.step(VisitorTyping(ROUTE, "v1", True), at=1.0)
    assert [n.kind for n in desk.effects(NotifyOperators)] == ["typing"]
    assert desk.effects(SetTimer) == [SetTimer(Timer(TimerKind.TYPING, cid("v1")), 6.0)]
    assert not desk.effects(Commit)
    desk.step(VisitorTyping(ROUTE, "v1", True), at=3.0)  # renewed, not announced again
    assert desk.effects(NotifyOperators) == []
    desk.step(TimerFired(Timer(TimerKind.TYPING, cid("v1"))), at=6.0)  # stale: renewed to 8
    assert desk.all_effects == ()
    desk.step(TimerFired(Timer(TimerKind.TYPING, cid("v1"))), at=8.0)
    assert desk.conversation("v1").visitor_typing_until is None
    desk.step(VisitorTyping(ROUTE, "nobody", True))
    assert desk.all_effects == ()


def test_operator_typing_is_shown_to_the_visitor_with_its_name() -> None:
    """An operator typing: the visitor sees the name; a reply ends it."""
    desk = Desk()
    desk.online("alice")
    write(desk)
    version = desk.conversation("v1").version
    desk.step(OperatorTyping(cid("v1"), "alice", True, "Alice"))
    assert desk.effects(SignalVisitor) == [SignalVisitor(ROUTE, "v1", "typing", on=True,
                                                         name="Alice")]
    assert desk.conversation("v1").version == version  # ephemeral: nothing committed
    desk.step(OperatorReply(cid("v1"), "alice", "Hi"))
    assert SignalVisitor(ROUTE, "v1", "typing", on=False, name="alice") in desk.all_effects
    assert desk.conversation("v1").typing == ()


def test_typing_operators_are_bounded() -> None:
    """Past max_typing the longest typing operator is dropped (and its indicator ended)."""
    desk = Desk(bounds=Bounds(max_typing=2))
    write(desk)
    for name in ("alice", "bob", "carol"):
        desk.step(OperatorTyping(cid("v1"), name, True))
    assert desk.conversation("v1").operators_typing() == ("bob", "carol")
    assert CancelTimer(Timer(TimerKind.TYPING, cid("v1"), "alice")) in desk.all_effects


# -- fallback, versions -------------------------------------------------------


def test_fallback_once_per_episode_and_cancelled_by_a_reply() -> None:
    """The fallback comes fallback_after seconds into a wait, once an episode;
    a reply cancels it."""
    desk = Desk(fallback_after=60.0, ack_message="")
    desk.online("alice")
    write(desk, at=0.0)
    assert desk.effects(SetTimer) == [SetTimer(Timer(TimerKind.FALLBACK, cid("v1")), 60.0)]
    desk.step(TimerFired(Timer(TimerKind.FALLBACK, cid("v1"))), at=60.0)
    assert bodies(desk) == [desk.settings.fallback_message]
    desk.step(OperatorReply(cid("v1"), "alice", "sorry!"), at=70.0)
    write(desk, "ok", at=80.0)
    assert not desk.effects(SetTimer)  # sent this episode already
    desk.step(OperatorReply(cid("v1"), "alice", "so"), at=90.0)
    write(desk, "and?", at=100.0)
    desk.step(OperatorReply(cid("v1"), "alice", "here"), at=110.0)
    assert CancelTimer(Timer(TimerKind.FALLBACK, cid("v1"))) not in desk.all_effects


def test_fallback_after_every_wait_when_configured() -> None:
    """notices_once = False: each unanswered wait may get its fallback."""
    desk = Desk(fallback_after=60.0, ack_message="", notices_once=False)
    desk.online("alice")
    write(desk, at=0.0)
    desk.step(TimerFired(Timer(TimerKind.FALLBACK, cid("v1"))), at=60.0)
    desk.step(OperatorReply(cid("v1"), "alice", "sorry!"), at=70.0)
    write(desk, "ok", at=80.0)
    assert desk.effects(SetTimer) == [SetTimer(Timer(TimerKind.FALLBACK, cid("v1")), 140.0)]
    desk.step(OperatorReply(cid("v1"), "alice", "here"), at=90.0)
    assert CancelTimer(Timer(TimerKind.FALLBACK, cid("v1"))) in desk.all_effects


def test_every_durable_change_is_one_version() -> None:
    """Each committed transition moves the version by exactly one, however much changed."""
    desk = Desk()
    desk.online("alice")
    write(desk)
    versions = [desk.conversation("v1").version]
    for event in (OperatorReply(cid("v1"), "alice", "hi"), AddNote(cid("v1"), "alice", "n"),
                  SetLabels(cid("v1"), "alice", add=("x",)), Resolve(cid("v1"), "alice")):
        desk.step(event)
        commit = desk.all_effects[0]
        assert isinstance(commit, Commit)
        versions.append(commit.conversations[0].version)
    assert versions == [1, 2, 3, 4, 5]
