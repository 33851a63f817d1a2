"""
The terminal console and the visitor's presence (the channel's `presence`
event and summaries' `visitor_online`): the conversation you have open
says when its visitor comes or goes, so you know whether a reply reaches
them now; list lines mark a visitor who left; others' comings and goings
print nothing (a busy inbox would scroll away).
"""

from __future__ import annotations

from tests.unit.test_support_console import Scripted, summary
from wsdaemon.support.console_display import summary_line


def opened(s: Scripted) -> None:
    s.hello()
    s.console.line("open #5794")
    s.answer({"conversation": summary(), "entries": [], "more": False})


def test_the_open_conversations_visitor_leaving_and_coming_back_is_said() -> None:
    s = Scripted()
    opened(s)
    before = s.out.getvalue()
    s.console.event({"type": "presence",
                     "conversation": summary(visitor_online=False, name="Jane\x1b[2J")})
    left = s.out.getvalue()[len(before):]
    assert "Jane\\x1b[2J left: your replies wait for them to come back" in left
    s.console.event({"type": "presence", "conversation": summary(visitor_online=True)})
    assert "Visitor 5794 is connected: your replies reach them now" in s.out.getvalue()


def test_another_conversations_presence_prints_nothing() -> None:
    s = Scripted()
    opened(s)
    before = s.out.getvalue()
    s.console.event({"type": "presence", "conversation": summary(
        id="zzzzzzzzzzzzzzzzzzzz", visitor_online=False)})
    assert s.out.getvalue() == before


def test_list_lines_mark_a_visitor_who_left() -> None:
    assert summary_line(summary(visitor_online=False)).endswith("unassigned  left: Hello?")
    assert "left" not in summary_line(summary(visitor_online=True))
    assert "left" not in summary_line(summary(visitor_online=None))  # another daemon's: unknown
