"""
Operator protocol v2 on the channel, end to end in memory: real Autobahn
handshakes and frames against the conversation driver on a memory store and
a Clock. Authentication, the greeting, every request, errors, events fanned
out to several operators (each with its own unread count), viewing,
the last connection taking the operator offline.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.internet.defer import fail

from tests.support_channel_kit import ROUTE, Desk
from wsdaemon.config import ProtocolSettings
from wsdaemon.conversations import (
    AddNote,
    Availability,
    DeliverMessage,
    SignalVisitor,
    Status,
    conversation_id_for,
)
from wsdaemon.conversations.aliases import alias_for
from wsdaemon.support.operator_requests import REQUESTS

ALICE, BOB = "a" * 20, "b" * 20


def cid(visitor: str) -> str:
    return conversation_id_for(ROUTE, visitor)


def ok(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["type"] == "ok", answer
    return answer


def error(answer: dict[str, Any]) -> str:
    assert answer["type"] == "error", answer
    return str(answer["error"])


def test_no_token_and_bad_token_are_refused() -> None:
    """Without a token the handshake is refused (401), with a wrong one 403; never opened."""
    desk = Desk()
    for token, reason in ((None, "no_token"), ("x" * 20, "bad_token")):
        operator = desk.connect(token)
        assert not operator.opened
        assert desk.factory.refusals[reason] == 1
    assert desk.hub.links == []


def test_origin_refused() -> None:
    """An Origin the channel's policy does not allow is refused before the token is looked at."""
    desk = Desk()
    operator = desk.connect(ALICE, headers={"Origin": "https://evil.example"})
    assert not operator.opened and desk.factory.refusals == {"origin": 1}


def test_hello_says_protocol_2_and_lists_most_waiting_first() -> None:
    """The greeting: protocol 2, who you are, conversations most waiting first, the team."""
    desk = Desk()
    desk.visitor("early")
    desk.clock.advance(60)
    desk.visitor("late")
    alice = desk.connect(ALICE)
    hello = alice.got[0]
    assert hello["type"] == "hello" and hello["protocol"] == 2
    assert hello["operator"] == "alice" and hello["display_name"] == "Alice A."
    assert [c["id"] for c in hello["conversations"]] == [cid("early"), cid("late")]
    first = hello["conversations"][0]
    assert first["alias"] == alias_for("early") and first["waiting"] == 60
    assert first["unread"] == 1 and first["status"] == "open" and first["assignee"] is None
    assert hello["total"] == 2 and hello["more"] is False and hello["canned"] == 2


def test_request_id_is_echoed_and_unknown_types_listed() -> None:
    """Every request gets one answer carrying its id; an unknown type lists the known ones."""
    desk = Desk()
    alice = desk.connect(ALICE)
    answer = desk.ask(alice, {"type": "list"})
    assert answer["id"] == 1
    assert "unknown type 'list'" in error(answer)
    assert all(kind in answer["error"] for kind in REQUESTS)
    alice.sendMessage(b"{not json", False)
    desk.flush()
    assert alice.got[-1] == {"type": "error", "id": None, "request": None, "error": "not JSON"}


def test_open_by_alias_and_prefix_shows_thread_with_notes() -> None:
    """open takes an alias or an id prefix; the thread interleaves messages and notes by time."""
    desk = Desk()
    desk.visitor("ann", "first")
    desk.clock.advance(1)
    desk.driver.submit(AddNote(cid("ann"), "bob", "VIP customer"))
    desk.clock.advance(1)
    desk.visitor("ann", "second")
    alice = desk.connect(ALICE)
    by_alias = ok(desk.ask(alice, {"type": "open", "conversation": alias_for("ann")}))
    kinds = [(e["kind"], e["text"]) for e in by_alias["entries"]]
    assert kinds[0] == ("message", "first")
    assert ("note", "VIP customer") in kinds
    assert kinds.index(("note", "VIP customer")) < kinds.index(("message", "second"))
    by_prefix = ok(desk.ask(alice, {"type": "open", "conversation": cid("ann")[:5]}))
    assert by_prefix["conversation"]["id"] == cid("ann")
    assert by_prefix["conversation"]["viewing"] == ["alice"]


def test_ambiguous_reference_lists_candidates() -> None:
    """A prefix several conversations share is refused with (bounded) candidates."""
    desk = Desk()
    for n in range(30):
        desk.visitor(f"v{n}")
    alice = desk.connect(ALICE)
    answer = desk.ask(alice, {"type": "open", "conversation": "visitor"})
    assert "matches more than one conversation" in error(answer)
    assert len(answer["candidates"]) == 10 and answer["more"] is True
    assert {"id", "alias"} <= set(answer["candidates"][0])
    assert "no conversation matches" in error(
        desk.ask(alice, {"type": "open", "conversation": "zzzzzz"}))


def test_reply_needs_a_conversation_and_reaches_the_visitor() -> None:
    """reply without a conversation is refused; with one it is stored, answered, delivered."""
    desk = Desk()
    desk.visitor("ann")
    alice = desk.connect(ALICE)
    assert "needs a 'conversation'" in error(desk.ask(alice, {"type": "reply", "text": "hi"}))
    answer = ok(desk.ask(alice, {"type": "reply", "conversation": alias_for("ann"),
                                 "text": "Hello Ann"}))
    assert answer["message"]["text"] == "Hello Ann" and answer["message"]["name"] == "Alice A."
    assert answer["conversation"]["assignee"] == "alice"
    delivered = [e for e in desk.visitors.said if isinstance(e, DeliverMessage)]
    assert delivered[-1].message.body == "Hello Ann"
    assert desk.store.message_log[cid("ann")][answer["message"]["seq"]].body == "Hello Ann"
    assert "non-empty string" in error(
        desk.ask(alice, {"type": "reply", "conversation": cid("ann"), "text": "  "}))
    assert "at most" in error(desk.ask(alice, {"type": "reply", "conversation": cid("ann"),
                                               "text": "x" * 20_000}))


def test_note_reaches_operators_never_the_visitor() -> None:
    """A note is stored, shown to the other operators, and no effect carries it to the visitor."""
    desk = Desk()
    desk.visitor("ann")
    alice, bob = desk.connect(ALICE), desk.connect(BOB)
    said = len(desk.visitors.said)
    answer = ok(desk.ask(alice, {"type": "note", "conversation": cid("ann"),
                                 "text": "call back tomorrow"}))
    assert answer["note"]["text"] == "call back tomorrow"
    assert bob.events("note")[-1]["note"]["text"] == "call back tomorrow"
    assert desk.visitors.said[said:] == []


def test_unread_is_per_operator_in_fanned_out_events() -> None:
    """Both operators get each event; each copy carries that operator's own unread count."""
    desk = Desk()
    desk.visitor("ann")
    alice, bob = desk.connect(ALICE), desk.connect(BOB)
    ok(desk.ask(alice, {"type": "read", "conversation": cid("ann")}))
    desk.visitor("ann", "still there?")
    a_event, b_event = alice.events("message")[-1], bob.events("message")[-1]
    assert a_event["message"]["text"] == b_event["message"]["text"] == "still there?"
    assert a_event["conversation"]["unread"] == 1
    assert b_event["conversation"]["unread"] == 2


def test_resolve_reopen_snooze_and_invalid_moves() -> None:
    """resolve, reopen and snooze move the conversation; a move its state forbids is explained."""
    desk = Desk()
    desk.visitor("ann")
    alice = desk.connect(ALICE)
    until = desk.clock.seconds() + 3600
    snoozed = ok(desk.ask(alice, {"type": "snooze", "conversation": cid("ann"),
                                  "until": until}))["conversation"]
    assert snoozed["status"] == "snoozed" and snoozed["snoozed_until"] == until
    resolved = ok(desk.ask(alice, {"type": "resolve", "conversation": cid("ann")}))
    assert resolved["conversation"]["status"] == "resolved"
    refused = error(desk.ask(alice, {"type": "reply", "conversation": cid("ann"),
                                     "text": "late"}))
    assert refused.startswith(f"conversation {cid('ann')} is resolved: cannot")
    # The resolved conversation left memory: its alias still names it.
    assert desk.inbox.conversation(cid("ann")) is None
    reopened = ok(desk.ask(alice, {"type": "reopen", "conversation": alias_for("ann")}))
    assert reopened["conversation"]["status"] == "open"
    assert "finite" in error(desk.ask(alice, {"type": "snooze", "conversation": cid("ann"),
                                              "until": 1e400}))


def test_assign_transfer_and_the_assigned_event() -> None:
    """assign and transfer move the assignee; only the new assignee gets 'assigned'."""
    desk = Desk()
    desk.visitor("ann")
    alice, bob = desk.connect(ALICE), desk.connect(BOB)
    assert ok(desk.ask(alice, {"type": "assign", "conversation": cid("ann"),
                               "operator": "alice"}))["conversation"]["assignee"] == "alice"
    assert alice.events("assigned") and not bob.events("assigned")
    ok(desk.ask(bob, {"type": "availability", "availability": "away"}))
    moved = ok(desk.ask(alice, {"type": "transfer", "conversation": cid("ann"), "to": "bob"}))
    assert moved["conversation"]["assignee"] == "bob"
    assert moved["conversation"]["assignee_name"] == "Bob B."
    assert bob.events("assigned")[-1]["conversation"]["id"] == cid("ann")
    unassigned = ok(desk.ask(alice, {"type": "assign", "conversation": cid("ann"),
                                     "operator": None}))
    assert unassigned["conversation"]["assignee"] is None
    assert "needs 'operator'" in error(desk.ask(alice, {"type": "assign",
                                                        "conversation": cid("ann")}))


def test_labels_and_list_filters() -> None:
    """labels adds and removes; conversations filters by view, label and search, paged."""
    desk = Desk()
    for n in range(5):
        desk.visitor(f"v{n}", f"question {n}")
        desk.clock.advance(1)
    alice = desk.connect(ALICE)
    answer = ok(desk.ask(alice, {"type": "labels", "conversation": cid("v1"),
                                 "add": [" Billing "], "remove": []}))
    assert answer["conversation"]["labels"] == ["billing"]
    found = ok(desk.ask(alice, {"type": "conversations", "label": "billing"}))
    assert [c["id"] for c in found["conversations"]] == [cid("v1")]
    found = ok(desk.ask(alice, {"type": "conversations", "search": "QUESTION 3"}))
    assert [c["id"] for c in found["conversations"]] == [cid("v3")]
    ok(desk.ask(alice, {"type": "assign", "conversation": cid("v4"), "operator": "alice"}))
    mine = ok(desk.ask(alice, {"type": "conversations", "view": "mine"}))
    assert [c["id"] for c in mine["conversations"]] == [cid("v4")]
    first = ok(desk.ask(alice, {"type": "conversations", "limit": 2}))
    assert first["more"] and first["total"] == 5
    rest = ok(desk.ask(alice, {"type": "conversations", "limit": 10, "after": first["next"]}))
    shown = [c["id"] for c in first["conversations"] + rest["conversations"]]
    assert shown == [cid(f"v{n}") for n in range(5)] and not rest["more"]
    assert "'after' must be" in error(desk.ask(alice, {"type": "conversations",
                                                       "after": "x"}))
    assert "'limit' must be from 1 to 500" in error(
        desk.ask(alice, {"type": "conversations", "limit": 501}))


def test_typing_reaches_the_visitor_with_the_name_and_the_others() -> None:
    """typing on: the visitor is signalled with the display name; the others see it."""
    desk = Desk()
    desk.visitor("ann")
    alice, bob = desk.connect(ALICE), desk.connect(BOB)
    answer = ok(desk.ask(alice, {"type": "typing", "conversation": cid("ann"), "on": True}))
    assert answer["conversation"]["typing"] == ["alice"]
    signals = [e for e in desk.visitors.said if isinstance(e, SignalVisitor)]
    assert signals[-1].signal == "typing" and signals[-1].name == "Alice A."
    assert bob.events("typing")[-1]["conversation"]["typing"] == ["alice"]
    assert "'on' must be" in error(desk.ask(alice, {"type": "typing",
                                                    "conversation": cid("ann")}))


def test_viewing_is_visible_to_the_others() -> None:
    """Opening a conversation tells every operator who views it; closing or leaving ends it."""
    desk = Desk()
    desk.visitor("ann")
    alice, bob = desk.connect(ALICE), desk.connect(BOB)
    ok(desk.ask(alice, {"type": "open", "conversation": cid("ann")}))
    assert bob.events("viewing")[-1] == {"type": "viewing", "conversation": cid("ann"),
                                         "operators": ["alice"]}
    ok(desk.ask(bob, {"type": "open", "conversation": cid("ann")}))
    assert alice.events("viewing")[-1]["operators"] == ["alice", "bob"]
    alice.sendClose(1000)
    desk.flush()
    assert bob.events("viewing")[-1]["operators"] == ["bob"]
    ok(desk.ask(bob, {"type": "close"}))
    assert desk.hub.viewers(cid("ann")) == []


def test_availability_capacity_and_last_connection_offline() -> None:
    """availability and capacity answer with the team and tell the others; the last
    connection closing takes the operator offline."""
    desk = Desk()
    alice, bob = desk.connect(ALICE), desk.connect(BOB)
    team = ok(desk.ask(alice, {"type": "availability", "availability": "online"}))["team"]
    assert team == [{"name": "alice", "display_name": "Alice A.", "availability": "online",
                     "capacity": 0, "load": 0}]
    assert bob.events("team")[-1]["operator"]["availability"] == "online"
    assert ok(desk.ask(alice, {"type": "capacity", "n": 3}))["team"][0]["capacity"] == 3
    assert "'availability' must be" in error(
        desk.ask(alice, {"type": "availability", "availability": "busy"}))
    assert "'n' must be" in error(desk.ask(alice, {"type": "capacity", "n": -1}))
    second = desk.connect(ALICE)
    second.sendClose(1000)
    desk.flush()
    assert desk.inbox.team.is_online("alice")
    alice.sendClose(1000)
    desk.flush()
    operator = desk.inbox.team.get("alice")
    assert operator is not None and operator.availability is Availability.OFFLINE


def test_store_failure_and_stopped_driver_are_clear_errors() -> None:
    """A commit the store fails, or a driver not running, is answered saying nothing changed."""
    desk = Desk()
    desk.visitor("ann")
    alice = desk.connect(ALICE)
    desk.store.commit = lambda commit: fail(sqlite3.OperationalError("disk I/O error"))  # type: ignore[method-assign]
    answer = desk.ask(alice, {"type": "resolve", "conversation": cid("ann")})
    assert "nothing changed" in error(answer) and "disk" not in answer["error"]
    conversation = desk.inbox.conversation(cid("ann"))
    assert conversation is not None and conversation.status is Status.OPEN
    desk.driver.running = False
    assert "not running" in error(desk.ask(alice, {"type": "resolve",
                                                   "conversation": cid("ann")}))


def test_canned_replies_are_served_in_pages() -> None:
    """canned answers the replies a page at a time."""
    desk = Desk(canned="".join(f"/r{n:02d} reply {n}\n" for n in range(30)))
    alice = desk.connect(ALICE)
    first = ok(desk.ask(alice, {"type": "canned", "limit": 20}))
    assert first["total"] == 30 and first["more"] and len(first["canned"]) == 20
    rest = ok(desk.ask(alice, {"type": "canned", "after": first["next"]}))
    assert [c["shortcut"] for c in rest["canned"]] == [f"r{n}" for n in range(20, 30)]


def test_reload_revokes_a_removed_token() -> None:
    """update() with alice's token gone closes her connection with 4001; bob stays."""
    desk = Desk()
    alice, bob = desk.connect(ALICE), desk.connect(BOB)
    desk.factory.update({BOB: "bob"}, {"bob": "Bobby"}, desk.canned, desk.factory.settings)
    desk.flush()
    assert alice.closed is not None and alice.closed[1] == 4001
    assert bob.closed is None and desk.hub.display_name("bob") == "Bobby"


def test_slow_operator_is_dropped_and_never_slows_the_others() -> None:
    """An operator that stops reading is dropped past max_outbound_buffer; the other operator
    gets every event meanwhile."""
    desk = Desk(protocol=ProtocolSettings(max_message_size=1 << 20, max_frame_size=1 << 20,
                                          max_outbound_buffer=8 * 1024))
    alice = desk.connect(ALICE)
    desk.connect(BOB)
    slow = next(c for c in desk.factory.connections if c.operator == "bob")
    slow_pump = desk.pumps[1]
    desk.pumps.remove(slow_pump)
    slow.transport.producer.pauseProducing()  # its writes pile up: it does not read
    before = len(alice.events("conversation"))
    for n in range(40):
        desk.visitor(f"v{n}", "x" * 500)
    assert len(alice.events("conversation")) - before == 40
    assert slow.transport.disconnecting or slow.transport.disconnected
