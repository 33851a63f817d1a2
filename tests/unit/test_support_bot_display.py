"""
The terminal console shows a support route's bot by its name, marked as a
bot (issue 22, item 5), its text escaped like any other.
"""

from __future__ import annotations

from wsdaemon.support.console_display import entry_line


def test_a_bots_message_shows_its_name_marked_as_a_bot() -> None:
    """'Robo (bot): ...'; without a name 'Bot (bot)'; control characters escaped."""
    line = entry_line({"kind": "message", "author": "bot", "name": "Robo\x1b[2J",
                       "text": "Order 4 ships \x1b[31mtomorrow", "at": 0.0}, "Visitor 12", 0.0)
    assert "Robo\\x1b[2J (bot): Order 4 ships \\x1b[31mtomorrow" in line
    assert "\x1b" not in line
    plain = entry_line({"kind": "message", "author": "bot", "text": "Hi", "at": 0.0},
                       "Visitor 12", 0.0)
    assert plain.endswith("Bot (bot): Hi")
