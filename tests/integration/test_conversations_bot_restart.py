"""
A bot's episode across a restart of the real daemon (issue 22, item 5), on
the same SQLite file: a structured visitor (`websockets`,
`wsdaemon.chat.v1`, the daemon's identity cookie kept) and an operator on
protocol 2. The daemon is killed (-9: no shutdown code runs) or stopped
mid-episode, then started again:

- a rule's handoff waiting for its delayed message: the conversation is
  not left with the bot: the restarted daemon hands it over once it is
  overdue, the rule's reason as the note, and the visitor gets the
  acknowledgement;
- a rule's delayed reply pending (its first reply sent): the lost reply is
  not silently dropped: the conversation goes to the operators, saying so;
- a backend bot's request out (no answer yet): the conversation goes to
  the operators once the answer is overdue, not left unanswered;
- the greeting is not sent again after a restart; the rules' per-episode
  counters (`once`, `{counter}`) start again (they are not stored).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon, free_port
from tests.integration.test_conversations_hook_bot import SECRET, Backend
from tests.operator_client import next_of, request
from wsdaemon.conversations.bot_events import LOST

pytestmark = pytest.mark.slow

TOKEN = "alice-token-0123456789abcdef"
ACK = "Thanks! We will be with you shortly."
CHAT = "wsdaemon.chat.v1"
#: The rules' delay: short, so the handoff is overdue soon after a restart.
DELAY = 2.0
#: How long the restarted daemon may take: the delay, BOT_GRACE (5 s), slack.
OVERDUE = DELAY + 5.0 + 5.0

CONFIG = f"""
[wsdaemon]
listen = tcp:0:interface=127.0.0.1

[protocol]
identity = anonymous
identity_secret_file = identity.key

[operator]
model = conversations
tokens = alice:{TOKEN}
store = conversations.sqlite3
ack_message = {ACK}
offline_message =
fallback_after = 0

[admin]
listen = tcp:ADMIN_PORT:interface=127.0.0.1
api_keys = ops:admin-key-0123456789abcdef

[route:/support]
strategy = operator
bot = bot.toml
bot_name = Robo
"""

RULES = f"""
[[greeting]]
text = "Hi, I am Robo."

[[rule]]
regex = '(?i)refund'
handoff = "refund request"
[[rule.send]]
text = "Checking your refund..."
delay = {DELAY}

[[rule]]
regex = '(?i)slow'
[[rule.send]]
text = "On it."
[[rule.send]]
text = "Here is the answer."
delay = {DELAY}

[[rule]]
text = "once"
once = true
reply = "Only once per episode."

[[rule]]
regex = '(?i)count'
reply = "Message {{counter}} of this episode."

[default]
reply = "I can help with orders."
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "bot.toml").write_text(RULES, encoding="utf-8")
    path = tmp_path / "wsdaemon.ini"
    path.write_text(CONFIG.replace("ADMIN_PORT", str(free_port())), encoding="utf-8")
    return path


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Every daemon a test starts, stopped at its end."""
    started: list[Daemon] = []
    try:
        yield started
    finally:
        for daemon in started:
            daemon.stop()


class Visitor:
    """A structured visitor that keeps its identity cookie across daemons."""

    def __init__(self) -> None:
        self.cookie: str | None = None
        self.ws: ClientConnection | None = None
        self._n = 0

    def connect(self, daemon: Daemon) -> ClientConnection:
        headers = {"Cookie": self.cookie} if self.cookie else None
        self.ws = connect(f"{daemon.url}/support", subprotocols=[CHAT],
                          additional_headers=headers)
        if self.cookie is None:
            self.cookie = self.ws.response.headers["Set-Cookie"].split(";")[0]
        self.ws.send(json.dumps({"type": "hello"}))
        next_of(self.ws, "welcome")
        return self.ws

    def say(self, text: str) -> None:
        assert self.ws is not None
        self._n += 1
        cid = f"c-{self._n}"
        self.ws.send(json.dumps({"type": "message", "id": cid, "text": text}))
        assert next_of(self.ws, "ack")["id"] == cid

    def messages(self, count: int, timeout: float = 5) -> list[tuple[str, str]]:
        """The next C{count} messages: (author, text)."""
        assert self.ws is not None
        return [(m["author"], m["text"])
                for m in (next_of(self.ws, "message", timeout) for _ in range(count))]

    def nothing_more(self, wait: float = 1.0) -> None:
        assert self.ws is not None
        with pytest.raises(TimeoutError):
            next_of(self.ws, "message", wait)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None


def desk(daemon: Daemon) -> ClientConnection:
    ws = connect(f"{daemon.url}/operator", additional_headers={"Authorization": f"Bearer {TOKEN}"})
    next_of(ws, "hello")
    return ws


def handed_over(daemon: Daemon, within: float) -> dict[str, Any]:
    """The one conversation, once it waits for an operator (else fail), opened."""
    with desk(daemon) as ws:
        deadline = time.monotonic() + within
        n = 0
        while True:
            n += 1
            listed = request(ws, {"type": "conversations", "view": "all"}, f"l{n}")
            [summary] = listed["conversations"]
            if not summary["with_bot"]:
                break
            assert time.monotonic() < deadline, f"still with the bot after {within} s: {summary}"
            time.sleep(0.25)
        waiting = request(ws, {"type": "conversations", "view": "unassigned"}, "w")
        assert [c["id"] for c in waiting["conversations"]] == [summary["id"]]
        opened = request(ws, {"type": "open", "conversation": summary["id"]}, "o")
        assert opened["type"] == "ok", opened
        return opened


def entries(opened: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(e["kind"], e.get("author") or e.get("operator"), e["text"])
            for e in opened["entries"]]


def test_a_crash_while_a_rule_owes_its_handoff(config: Path, daemons: list[Daemon]) -> None:
    """Killed while the refund rule's message waits (its handoff after it):
    started again, the daemon hands the conversation over once it is
    overdue, with the rule's reason; the visitor, back, gets the
    acknowledgement; the delayed message itself is gone."""
    visitor = Visitor()
    first = Daemon(config)
    daemons.append(first)
    visitor.connect(first)
    visitor.say("I want a refund")
    assert next_of(visitor.ws, "typing")["on"] is True  # type: ignore[arg-type]
    assert visitor.messages(1) == [("bot", "Hi, I am Robo.")]
    first.kill()
    visitor.close()
    again = Daemon(config)
    daemons.append(again)
    visitor.connect(again)
    opened = handed_over(again, OVERDUE)
    shown = entries(opened)
    assert ("note", "bot", "handed over: refund request") in shown
    assert ("message", "bot", "Checking your refund...") not in shown
    assert visitor.messages(1, timeout=5) == [("system", ACK)]
    visitor.close()


def test_a_crash_with_a_delayed_reply_pending(config: Path, daemons: list[Daemon]) -> None:
    """Killed after the rule's first reply, before its delayed one: the
    conversation is not left with the bot as if answered: it goes to the
    operators, the note saying the bot's answer was never sent."""
    visitor = Visitor()
    first = Daemon(config)
    daemons.append(first)
    visitor.connect(first)
    visitor.say("this is slow")
    assert visitor.messages(2) == [("bot", "Hi, I am Robo."), ("bot", "On it.")]
    first.kill()
    visitor.close()
    again = Daemon(config)
    daemons.append(again)
    shown = entries(handed_over(again, OVERDUE))
    assert ("note", "bot", f"handed over: {LOST}") in shown
    assert ("message", "bot", "Here is the answer.") not in shown


def test_a_restart_does_not_greet_again_and_counts_afresh(config: Path,
                                                          daemons: list[Daemon]) -> None:
    """Stopped and started between two messages of one episode: no second
    greeting; the conversation is still the bot's; `once` and `{counter}`
    start again (the rules' counters are not stored)."""
    visitor = Visitor()
    first = Daemon(config)
    daemons.append(first)
    visitor.connect(first)
    visitor.say("once")
    assert visitor.messages(2) == [("bot", "Hi, I am Robo."), ("bot", "Only once per episode.")]
    visitor.say("count")
    assert visitor.messages(1) == [("bot", "Message 2 of this episode.")]
    visitor.close()
    assert first.stop() == 0
    again = Daemon(config)
    daemons.append(again)
    visitor.connect(again)
    visitor.say("count")
    assert visitor.messages(1) == [("bot", "Message 1 of this episode.")]
    visitor.say("once")
    assert visitor.messages(1) == [("bot", "Only once per episode.")]
    visitor.nothing_more()
    with desk(again) as ws:
        listed = request(ws, {"type": "conversations", "view": "all"}, "l")
        assert [c["with_bot"] for c in listed["conversations"]] == [True]
    visitor.close()


HOOK_CONFIG = CONFIG.replace("bot = bot.toml\n", "bot_url = BOT_URL\nbot_secret_file = bot.secret\n"
                             "bot_timeout = 1\nbot_connect_timeout = 1\nbot_retries = 0\n")


def test_a_crash_while_the_backend_bots_request_is_out(tmp_path: Path,
                                                      daemons: list[Daemon]) -> None:
    """Killed while its request to the team's backend is out: started again,
    the daemon does not ask the backend again, and hands the conversation
    over once the answer is overdue (the request's 2 s, BOT_GRACE), saying
    the bot did not finish."""
    backend = Backend()
    backend.answers = [(8.0, "too late")]
    try:
        (tmp_path / "bot.secret").write_text(SECRET + "\n", encoding="utf-8")
        config = tmp_path / "wsdaemon.ini"
        config.write_text(HOOK_CONFIG.replace("ADMIN_PORT", str(free_port()))
                          .replace("BOT_URL", backend.url), encoding="utf-8")
        visitor = Visitor()
        first = Daemon(config)
        daemons.append(first)
        visitor.connect(first)
        visitor.say("When do you open?")
        assert next_of(visitor.ws, "typing")["on"] is True  # type: ignore[arg-type]
        first.kill()
        visitor.close()
        again = Daemon(config)
        daemons.append(again)
        visitor.connect(again)
        shown = entries(handed_over(again, 2.0 + 5.0 + 5.0))
        assert ("note", "bot", f"handed over: {LOST}") in shown
        assert visitor.messages(1) == [("system", ACK)]
        visitor.close()
    finally:
        backend.close()
    # Killed as its request went out: the backend saw it, or not; the
    # restarted daemon never asks again (the request may have reached it).
    assert len(backend.events) <= 1
