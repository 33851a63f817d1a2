"""
The terminal console shows a support route's bot by its name, marked as a
bot (issue 22, item 5), its text escaped like any other.
"""

from __future__ import annotations

from wsdaemon.support.console_display import entry_line, event_line, summary_line


def test_a_bots_message_shows_its_name_marked_as_a_bot() -> None:
    """'Robo (bot): ...'; without a name 'Bot (bot)'; control characters escaped."""
    line = entry_line({"kind": "message", "author": "bot", "name": "Robo\x1b[2J",
                       "text": "Order 4 ships \x1b[31mtomorrow", "at": 0.0}, "Visitor 12", 0.0)
    assert "Robo\\x1b[2J (bot): Order 4 ships \\x1b[31mtomorrow" in line
    assert "\x1b" not in line
    plain = entry_line({"kind": "message", "author": "bot", "text": "Hi", "at": 0.0},
                       "Visitor 12", 0.0)
    assert plain.endswith("Bot (bot): Hi")


def test_a_conversation_the_bot_has_says_so() -> None:
    """In a list and in an update: 'bot answers' where the assignee goes."""
    summary = {"id": "c1", "alias": "Visitor 12", "status": "open", "with_bot": True,
               "assignee": "alice", "preview": "hi", "unread": 1, "waiting_since": None}
    line = summary_line(summary)
    assert "bot answers" in line and "@alice" not in line and "unassigned" not in line
    update = event_line({"type": "updated", "conversation": summary}, "bob", 0.0)
    assert update is not None and update.endswith("open, bot answers")
    handed = {**summary, "with_bot": False, "assignee": None}
    assert "unassigned" in summary_line(handed)
