"""
The terminal console for conversations: what it shows (list lines with
alias, unread, waiting time, assignee; threads with local readable times,
names, notes marked; hostile text escaped), the commands it turns into v2
requests, canned replies expanded, and a whole session against the real
channel in memory.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from twisted.internet.task import Clock

from tests.support_channel_kit import ROUTE, Desk
from wsdaemon.conversations import conversation_id_for
from wsdaemon.conversations.aliases import alias_for
from wsdaemon.support.console import ConversationConsole, parse_when
from wsdaemon.support.console_display import (
    duration,
    entry_line,
    local_time,
    summary_line,
)

NOW = datetime(2026, 12, 7, 14, 30, tzinfo=UTC).timestamp()


def summary(**fields: Any) -> dict[str, Any]:
    base = {"id": "td4nkjhnwjknqqhoc6y2", "alias": "Visitor 5794", "name": None,
            "status": "open", "assignee": None, "labels": [], "unread": 2,
            "waiting_since": NOW - 240, "waiting": 240.0, "preview": "Hello?",
            "viewing": [], "email": None}
    return {**base, **fields}


def test_durations_at_a_glance() -> None:
    """Waiting times read as 45s, 4m, 2h05m, 3d."""
    assert [duration(s) for s in (45, 240, 7500, 3 * 86400 + 5)] == ["45s", "4m", "2h05m",
                                                                     "3d"]


def test_local_times_in_the_operators_zone() -> None:
    """Times are shown in the operator's zone: HH:MM today, with the date another day."""
    plus2 = timezone(timedelta(hours=2))
    assert local_time(NOW - 60, NOW, UTC) == "14:29"
    assert local_time(NOW - 60, NOW, plus2) == "16:29"
    assert local_time(NOW - 2 * 86400, NOW, UTC) == "Dec 05 14:30"


def test_list_line_shows_alias_unread_waiting_assignee_preview() -> None:
    """A list line: alias and id prefix, unread, waiting as 4m, assignee, labels, preview."""
    line = summary_line(summary(assignee="alice", labels=["billing"]))
    assert line == ("Visitor 5794 (td4nkjhn)  2 unread  waiting 4m  @alice  [billing]: "
                    "Hello?")
    assert "unassigned" in summary_line(summary())


def test_hostile_text_is_escaped_everywhere() -> None:
    """Escape sequences and line breaks from visitors are shown escaped, one line each."""
    evil = "\x1b]0;pwned\x07\x1b[2Jhi\nfake line\u202e"
    line = summary_line(summary(preview=evil, labels=["\x1b[31m"], alias="V\x1b[1m"))
    assert "\x1b" not in line and "\n" not in line and "\u202e" not in line
    assert "\\x1b]0;pwned" in line
    entry = {"kind": "message", "author": "operator", "operator": "bob",
             "name": "B\x1b[2Job", "at": NOW, "text": evil}
    shown = entry_line(entry, "V", NOW, UTC)
    assert "\x1b" not in shown and "\n" not in shown and "\\n" in shown


def test_thread_entries_name_the_sender_and_mark_notes() -> None:
    """Visitor lines carry the alias, operator lines the display name, notes are marked."""
    at = NOW - 120
    visitor = {"kind": "message", "author": "visitor", "at": at, "text": "Hi"}
    operator = {"kind": "message", "author": "operator", "operator": "alice",
                "name": "Alice A.", "at": at, "text": "Hello"}
    note = {"kind": "note", "operator": "bob", "at": at, "text": "VIP", "truncated": True,
            "length": 10}
    assert entry_line(visitor, "Visitor 5794", NOW, UTC) == "[14:28] Visitor 5794: Hi"
    assert entry_line(operator, "x", NOW, UTC) == "[14:28] Alice A. (alice): Hello"
    assert entry_line(note, "x", NOW, UTC) == \
        "[14:28] NOTE by bob (private): VIP [... 7 more characters]"


def test_parse_when() -> None:
    """snooze takes 30m, 2h, 1d or HH:MM (the next one in the operator's zone)."""
    assert parse_when("30m", NOW) == NOW + 1800
    assert parse_when("1d", NOW) == NOW + 86400
    assert parse_when("15:00", NOW, UTC) == NOW + 1800
    assert parse_when("09:00", NOW, UTC) == NOW + 18.5 * 3600
    with pytest.raises(ValueError, match="30m, 2h, 1d or 14:30"):
        parse_when("soon", NOW)


class Scripted:
    """A console whose requests are recorded; the test answers them."""

    def __init__(self) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.status: list[int] = []
        clock = Clock()
        clock.advance(NOW)
        self.console = ConversationConsole(self.out, self.err, self.status.append,
                                           clock=clock, tz=UTC)
        self.sent: list[dict[str, Any]] = []
        self.console.connected(self.sent.append)

    def hello(self) -> None:
        self.console.event({"type": "hello", "protocol": 2, "operator": "alice",
                            "display_name": "Alice A.", "conversations": [summary()],
                            "total": 1, "more": False, "next": None, "team": []})
        self.answer({"team": []})  # availability
        self.answer({"canned": [{"shortcut": "hello", "text": "Hi {name}, I am {operator}"}],
                     "more": False})

    def answer(self, fields: dict[str, Any], kind: str = "ok") -> None:
        last = self.sent[-1]
        self.console.event({"type": kind, "id": last["id"], **fields})


def test_commands_become_v2_requests() -> None:
    """Command lines turn into the v2 requests, the open conversation used when no #REF."""
    s = Scripted()
    s.hello()
    assert s.sent[0] == {"type": "availability", "availability": "online", "id": 1}
    s.console.line("reply hello")
    assert "no conversation open" in s.err.getvalue()
    s.console.line("open #5794")
    assert s.sent[-1] == {"type": "open", "conversation": "5794", "id": 3}
    s.answer({"conversation": summary(), "entries": [
        {"kind": "message", "author": "visitor", "at": NOW - 60, "text": "Hello?"}],
        "more": False})
    assert "[14:29] Visitor 5794: Hello?" in s.out.getvalue()
    assert s.sent[-1]["type"] == "read"  # opening marks it read
    s.answer({"conversation": summary(unread=0)})
    cid = summary()["id"]
    expected = [
        ("reply Hello there", {"type": "reply", "conversation": cid, "text": "Hello there"}),
        ("note #td4n VIP", {"type": "note", "conversation": "td4n", "text": "VIP"}),
        ("snooze 2h", {"type": "snooze", "conversation": cid, "until": NOW + 7200}),
        ("snooze", {"type": "snooze", "conversation": cid, "until": None}),
        ("assign none", {"type": "assign", "conversation": cid, "operator": None}),
        ("transfer bob", {"type": "transfer", "conversation": cid, "to": "bob"}),
        ("labels +vip -new", {"type": "labels", "conversation": cid, "add": ["vip"],
                              "remove": ["new"]}),
        ("resolve", {"type": "resolve", "conversation": cid}),
        ("away", {"type": "availability", "availability": "away"}),
        ("capacity 3", {"type": "capacity", "n": 3}),
        ("list mine label:vip refund", {"type": "conversations", "view": "mine",
                                        "label": "vip", "search": "refund"}),
    ]
    for line, request in expected:
        s.console.line(line)
        sent = {k: v for k, v in s.sent[-1].items() if k != "id"}
        assert sent == request, line
        s.answer({"conversation": summary(), "team": [], "conversations": [], "total": 0})
    assert s.console.availability == "away"
    s.console.line("frobnicate")
    assert "unknown command 'frobnicate'" in s.err.getvalue()


def test_canned_reply_is_expanded_for_the_conversation() -> None:
    """/hello fetches the conversation's summary, fills the placeholders, sends the reply."""
    s = Scripted()
    s.hello()
    s.console.line("/hello #5794")
    assert s.sent[-1]["type"] == "history" and s.sent[-1]["conversation"] == "5794"
    s.answer({"conversation": summary(), "entries": [], "more": False})
    assert s.sent[-1]["type"] == "reply"
    assert s.sent[-1]["text"] == "Hi Visitor 5794, I am Alice A."
    s.answer({"conversation": summary()})
    assert "ok: sent to Visitor 5794" in s.out.getvalue()
    s.console.line("/nope #5794")
    assert "no canned reply /nope (known: /hello)" in s.err.getvalue()


def test_ambiguous_reference_shows_candidates_and_piped_input_fails() -> None:
    """An ambiguous reference is an error listing candidates; piped input then exits 1."""
    s = Scripted()
    s.hello()
    s.console.line("open #4")
    s.answer({"error": "'4' matches more than one conversation: ...; give more of the id",
              "candidates": [{"id": "aaa", "alias": "Visitor 4001"}]}, kind="error")
    assert "Visitor 4001: #aaa" in s.out.getvalue()
    s.console.input_ended()
    assert s.status == [1]


def test_export_writes_the_whole_thread(tmp_path: Any) -> None:
    """export FILE #REF pages the whole thread back and fetches cut texts whole: JSON Lines,
    oldest first, messages and notes."""
    from tests.support_channel_kit import Desk as ChannelDesk
    from wsdaemon.conversations import AddNote
    from wsdaemon.support.operator_requests import ChannelLimits

    desk = ChannelDesk(limits=ChannelLimits(text_chars=5, page_size=3))
    cid = conversation_id_for(ROUTE, "ann")
    for n in range(4):
        desk.clock.advance(1)
        desk.visitor("ann", f"message number {n}")
        desk.clock.advance(1)
        desk.driver.submit(AddNote(cid, "bob", f"note {n}"))
    client = desk.connect("a" * 20)
    out, err, status = io.StringIO(), io.StringIO(), []
    console = ConversationConsole(out, err, status.append, clock=desk.clock, tz=UTC)
    console.connected(lambda request: client.sendMessage(json.dumps(request).encode(), False))
    target = tmp_path / "ann.jsonl"
    console.line(f"export {target} #{cid[:6]}")
    console.input_ended()
    for _ in range(200):
        desk.flush()
        if not client.got:
            break
        while client.got:
            console.event(client.got.pop(0))
    assert status == [0], err.getvalue()
    entries = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    texts = [e["text"] for e in entries if not e["text"].startswith(("Thanks", "No operator"))]
    assert texts == [t for n in range(4) for t in (f"message number {n}", f"note {n}")]
    assert not any(e["truncated"] for e in entries)


def test_a_session_against_the_channel() -> None:
    """The console on the real channel: greeted, online, opens by alias, replies, resolves;
    the visitor gets the reply and events show up escaped."""
    desk = Desk()
    desk.visitor("ann", "Hi\x1b[2J there")
    client = desk.connect("a" * 20)
    out, err = io.StringIO(), io.StringIO()
    console = ConversationConsole(out, err, lambda status: None, clock=desk.clock, tz=UTC)
    console.connected(lambda request: client.sendMessage(json.dumps(request).encode(), False))

    def pump() -> None:
        desk.flush()
        while client.got:
            console.event(client.got.pop(0))
            desk.flush()

    pump()
    assert desk.inbox.team.is_online("alice")
    console.line(f"open #{alias_for('ann')}")
    pump()
    assert "Hi\\x1b[2J there" in out.getvalue() and "\x1b" not in out.getvalue()
    console.line("/hello")
    pump()
    console.line("resolve")
    pump()
    assert err.getvalue() == ""
    cid = conversation_id_for(ROUTE, "ann")
    bodies = [m.body for m in desk.store.message_log[cid].values()]
    assert f"Hello {alias_for('ann')}, this is Alice A." in bodies
    assert desk.store.conversations[cid].status == "resolved"
    desk.visitor("ann", "one more thing")
    pump()
    shown = [line for line in out.getvalue().splitlines() if "one more thing" in line]
    assert shown[-1].startswith(f"msg  {alias_for('ann')}")
    assert shown[-1].endswith(f"] {alias_for('ann')}: one more thing")


def test_the_greeting_counts_the_team_as_it_will_be_with_me() -> None:
    """The greeting's team is from before this console's availability: the
    count is the others online, and me as this console is about to be
    (a second console of mine online counted once)."""
    s = Scripted()
    s.console.event({"type": "hello", "protocol": 2, "operator": "alice",
                     "display_name": "Alice A.", "conversations": [], "total": 0,
                     "more": False, "next": None,
                     "team": [{"name": "alice", "availability": "offline"},
                              {"name": "bob", "availability": "online"},
                              {"name": "carol", "availability": "away"}]})
    assert "0 open conversation(s), 2 operator(s) online (you: online)" in s.out.getvalue()
    again = Scripted()
    again.console.event({"type": "hello", "protocol": 2, "operator": "alice",
                         "display_name": "Alice A.", "conversations": [], "total": 0,
                         "more": False, "next": None,
                         "team": [{"name": "alice", "availability": "online"}]})
    assert "1 operator(s) online (you: online)" in again.out.getvalue()
