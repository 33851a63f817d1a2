"""
Who the visitor is, shown to operators (issue 22, item 3): summaries carry
the proven name and email (the contact left otherwise), an open
conversation carries the whole profile, search finds name and email, a
profile proven later reaches operators as an update, and the terminal
console shows it all escaped.
"""

from __future__ import annotations

from typing import Any

from tests.support_channel_kit import ROUTE, Desk
from tests.unit.test_support_console import Scripted, summary
from wsdaemon.conversations import Identify, LeaveContact, Profile, ProfileSource
from wsdaemon.conversations.aliases import alias_for
from wsdaemon.conversations.model import conversation_id_for
from wsdaemon.support.console_display import profile_lines, summary_line

ALICE = "a" * 20
ANN = Profile("Ann Lee", "ann@example.com", (("plan", "pro"), ("seats", "3")),
              ProfileSource.JWT)


def cid(visitor: str) -> str:
    return conversation_id_for(ROUTE, visitor)


def ok(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["type"] == "ok", answer
    return answer


def identified_desk() -> Desk:
    desk = Desk()
    desk.visitor("ann", "my invoice")
    desk.driver.submit(Identify(ROUTE, "ann", ANN))
    desk.visitor("bob", "hello")
    desk.driver.submit(LeaveContact(ROUTE, "bob", "bob@example.com"))
    desk.visitor("cy", "hi")
    desk.flush()
    return desk


def test_summaries_carry_name_and_email() -> None:
    """The list shows the proven name and email and what proved them; an
    unidentified visitor's email is the contact it left, its name null."""
    desk = identified_desk()
    alice = desk.connect(ALICE)
    listed = {c["id"]: c for c in alice.got[0]["conversations"]}
    ann, bob, cy = listed[cid("ann")], listed[cid("bob")], listed[cid("cy")]
    assert (ann["name"], ann["email"], ann["identified"]) == ("Ann Lee", "ann@example.com",
                                                              "jwt")
    assert ann["alias"] == alias_for("ann")
    assert (bob["name"], bob["email"], bob["identified"]) == (None, "bob@example.com", None)
    assert (cy["name"], cy["email"]) == (None, None)


def test_open_carries_the_whole_profile() -> None:
    """open answers with the profile, attributes included; none: null."""
    desk = identified_desk()
    alice = desk.connect(ALICE)
    opened = ok(desk.ask(alice, {"type": "open", "conversation": alias_for("ann")}))
    assert opened["profile"] == {"name": "Ann Lee", "email": "ann@example.com",
                                 "attributes": {"plan": "pro", "seats": "3"}, "source": "jwt"}
    assert ok(desk.ask(alice, {"type": "open", "conversation": cid("cy")}))["profile"] is None


def test_search_finds_name_and_email() -> None:
    """search matches the proven name and email (any case), besides what it did."""
    desk = identified_desk()
    alice = desk.connect(ALICE)
    for needle in ("ann lee", "ANN@EXAMPLE", "bob@example.com"):
        found = ok(desk.ask(alice, {"type": "conversations", "search": needle}))
        assert len(found["conversations"]) == 1, needle
    found = ok(desk.ask(alice, {"type": "conversations", "search": "lee"}))
    assert [c["id"] for c in found["conversations"]] == [cid("ann")]


def test_a_later_identify_reaches_operators() -> None:
    """An identify landing while an operator is connected is an update with the name."""
    desk = Desk()
    desk.visitor("dee", "hello")
    alice = desk.connect(ALICE)
    desk.driver.submit(Identify(ROUTE, "dee", Profile("Dee")))
    desk.flush()
    updates = [e for e in alice.got if e.get("conversation", {}).get("id") == cid("dee")
               and e["type"] != "ok"]
    assert updates and updates[-1]["conversation"]["name"] == "Dee"


HOSTILE = "\x1b]0;owned\x07\x1b[2J<b>x</b>\u202eevil"


def test_console_shows_the_profile_escaped() -> None:
    """open prints who the visitor is and its attributes, escaped; the list
    line shows the name instead of the alias."""
    s = Scripted()
    s.hello()
    s.console.line("open #5794")
    named = summary(name="Ann \u202e Lee", email="ann@example.com")
    s.answer({"conversation": named, "entries": [], "more": False,
              "profile": {"name": "Ann \u202e Lee", "email": "ann@example.com",
                          "attributes": {"note": HOSTILE, "plan": "pro"},
                          "source": "identify"}})
    out = s.out.getvalue()
    assert "visitor: Ann \\u202e Lee <ann@example.com>, proven by identify (HMAC)" in out
    assert "note: \\x1b]0;owned\\x07\\x1b[2J<b>x</b>\\u202eevil" in out
    assert "plan: pro" in out
    assert "\x1b" not in out and "\u202e" not in out
    assert summary_line(named).split()[0] == "Ann"
    assert profile_lines(None) == []
