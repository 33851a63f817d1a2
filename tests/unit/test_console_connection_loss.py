"""
The terminal console when its connection is lost while it waits for an
answer: a command the operator gave fails the run (it may or may not have
been done), the console's own greeting requests (availability, canned
replies), asked again on every greeting, do not.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.task import Clock

from wsdaemon.support.console import ConversationConsole

HELLO = {"type": "hello", "protocol": 2, "operator": "alice", "display_name": "Alice",
         "conversations": [], "total": 0, "more": False, "team": [], "canned": 0}


class Session:
    """A console whose requests are recorded and answered by hand."""

    def __init__(self) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.stopped: list[int] = []
        self.sent: list[dict[str, Any]] = []
        self.console = ConversationConsole(self.out, self.err, self.stopped.append,
                                           clock=Clock())

    def greet(self) -> None:
        self.console.connected(self.sent.append)
        self.console.event(dict(HELLO))

    def answer_all(self) -> None:
        """Answer each request as it is sent (ok, with what each kind needs)."""
        answered = 0
        while answered < len(self.sent):
            request = self.sent[answered]
            answered += 1
            extra: dict[str, Any] = {"team": [], "canned": [], "total": 0, "more": False,
                                     "conversations": []}
            self.console.event({"type": "ok", "id": request["id"], **extra})


def test_losing_the_greeting_requests_fails_nothing() -> None:
    """Cut while the console's availability request waits: no error, asked
    again on the next greeting; the piped run then ends with status 0."""
    session = Session()
    session.greet()
    assert session.sent[-1]["type"] == "availability"
    session.console.disconnected("connection lost")
    assert session.err.getvalue() == "" and session.console.failures == 0
    session.sent.clear()
    session.greet()
    assert [r["type"] for r in session.sent] == ["availability"]
    session.answer_all()
    session.console.input_ended()
    assert session.stopped == [0]


def test_losing_a_typed_command_fails_the_run() -> None:
    """Cut while a command the operator typed waits: one error saying so,
    and the piped run ends with status 1."""
    session = Session()
    session.greet()
    session.answer_all()
    session.console.line("list")
    assert session.sent[-1]["type"] == "conversations"
    session.console.disconnected("connection lost")
    assert "connection lost before the answer to conversations" in session.err.getvalue()
    session.greet()
    session.answer_all()
    session.console.input_ended()
    assert session.stopped == [1]
