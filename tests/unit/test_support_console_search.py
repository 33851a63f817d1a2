"""
The terminal console's `search` (issue 22, item 4): the request it sends,
what it shows of each conversation found (who, status, assignee, time) and
of each hit (which message or note, its snippet escaped as visitor text
is), `more` for the next page, `open` on a hit; and a session against the
real channel on a store without an index (scope live, said so).
"""

from __future__ import annotations

import io
import json

from tests.support_channel_kit import ROUTE, Desk
from tests.unit.test_support_console import NOW, Scripted, summary
from wsdaemon.conversations import conversation_id_for
from wsdaemon.conversations.aliases import alias_for
from wsdaemon.support.console import ConversationConsole
from wsdaemon.support.console_commands import search_request

HOSTILE = "refund \x1b]0;pwned\x07\x1b[2J\nfake line\u202e"


def test_search_command_becomes_the_request() -> None:
    """`search TEXT`, `search --notes TEXT`, `search --resolved TEXT`;
    without text, or with a flag it does not know, the usage."""
    assert search_request("refund A-1234") == {"type": "search", "text": "refund A-1234"}
    assert search_request("--notes voucher") == {"type": "search", "text": "voucher",
                                                 "notes": True}
    assert search_request("--resolved --notes jane@example.com") == {
        "type": "search", "text": "jane@example.com", "notes": True, "status": "resolved"}
    for bad in ("", "--notes", "--notesy x", "--open --resolved x"):
        try:
            search_request(bad)
        except ValueError as e:
            assert "usage: search [--notes] [--open|--snoozed|--resolved] TEXT" in str(e)
        else:
            raise AssertionError(bad)


def test_hits_are_shown_escaped_and_paged() -> None:
    """Each conversation found: name or alias, id prefix, status, assignee,
    local time; each hit: message N / note N / visitor and the snippet,
    escaped; `more` asks for the next page; `open` takes the alias."""
    s = Scripted()
    s.hello()
    s.console.line("search --notes refund")
    assert {k: v for k, v in s.sent[-1].items() if k != "id"} == {
        "type": "search", "text": "refund", "notes": True}
    found = summary(status="resolved", assignee="alice", name="Jane \x1b[31mRoe",
                    last_activity_at=NOW - 2 * 86400)
    s.answer({"results": [{"conversation": found, "hits": [
        {"kind": "message", "seq": 3, "snippet": HOSTILE, "marks": [[0, 6]]},
        {"kind": "note", "note": 1, "snippet": "refund given", "marks": [[0, 6]]},
        {"kind": "visitor", "snippet": "Visitor 5794 · jane@example.com", "marks": []}]}],
        "total": 2, "more": True, "next": [NOW - 2 * 86400, found["id"]],
        "partial": False, "scope": "all"})
    out = s.out.getvalue()
    assert "2 conversation(s) found\n" in out
    assert "Jane \\x1b[31mRoe (td4nkjhn)  resolved  @alice  Dec 05 14:30" in out
    assert "      message 3: refund \\x1b]0;pwned\\x07\\x1b[2J\\nfake line\\u202e" in out
    assert "      note 1: refund given" in out
    assert "      visitor: Visitor 5794 · jane@example.com" in out
    assert "\x1b" not in out and "fake line\n" not in out
    assert "type `more` for the next page" in out
    s.console.line("more")
    assert {k: v for k, v in s.sent[-1].items() if k != "id"} == {
        "type": "search", "text": "refund", "notes": True,
        "after": [NOW - 2 * 86400, found["id"]]}
    s.answer({"results": [], "total": 2, "more": False, "next": None, "partial": True,
              "scope": "all"})
    assert "2 conversation(s) found (stopped at its bound: narrow it)" in s.out.getvalue()
    s.console.line("more")
    assert "nothing more" in s.err.getvalue()
    s.console.line("open #5794")
    assert s.sent[-1]["type"] == "open" and s.sent[-1]["conversation"] == "5794"


def test_search_in_a_session_against_the_channel() -> None:
    """On the real channel with a store without an index, `search` finds an
    open conversation by a word of its latest message, says the scope is
    the live conversations, and `open` on the alias shown works."""
    desk = Desk()
    desk.visitor("ann", "my parcel never came")
    desk.visitor("bob", "hello")
    client = desk.connect("a" * 20)
    out, err = io.StringIO(), io.StringIO()
    console = ConversationConsole(out, err, lambda status: None, clock=desk.clock)
    console.connected(lambda request: client.sendMessage(json.dumps(request).encode(), False))

    def pump() -> None:
        desk.flush()
        while client.got:
            console.event(client.got.pop(0))
            desk.flush()

    pump()
    console.line("search PARCEL")
    pump()
    shown = out.getvalue()
    assert "1 conversation(s) found (open and snoozed only: this store keeps no index)" in shown
    assert f"{alias_for('ann')} ({conversation_id_for(ROUTE, 'ann')[:8]})  open" in shown
    assert "      preview: my parcel never came" in shown
    console.line(f"open #{alias_for('ann').split()[1]}")
    pump()
    assert err.getvalue() == ""
    assert out.getvalue().count("my parcel never came") >= 2
