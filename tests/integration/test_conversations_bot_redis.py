"""
Bots on two daemons sharing a real redis-server (docs/conversations.md,
section 11 item 6): route /support answers first with a rules file (the
scripted bot), route /desk with the team's backend (`bot_url`, a backend of
the test's own). A structured visitor (`websockets`, `wsdaemon.chat.v1`)
on daemon A, an operator (protocol 2) on daemon B, a third daemon C:

- the bot answers each message once (not once per daemon), the backend is
  asked once per message;
- a handoff (asked for, or a rule's after its delayed message) reaches
  the operator on B, its note once, and the visitor gets the
  acknowledgement once;
- A killed (-9) while the rule's handoff waits, or while the backend's
  request is out: B and C both arm the overdue timer from the stored
  conversation, the first commit wins: handed over once, one note, the
  visitor acknowledged once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon
from tests.integration.test_conversations_hook_bot import SECRET, Backend
from tests.integration.test_conversations_redis import ACK, BOB, config_text
from tests.operator_client import next_of, request
from tests.redis_server import RedisServer
from wsdaemon.conversations.bot_events import LOST

pytestmark = pytest.mark.slow

CHAT = "wsdaemon.chat.v1"
#: The rule's delay before its handoff.
DELAY = 2.0
#: Overdue: the owed time, BOT_GRACE (5 s), slack for a loaded machine.
GRACE_AND_SLACK = 5.0 + 6.0

RULES = f"""
[[rule]]
regex = '(?i)order (?P<n>\\d+)'
reply = "Order {{match.n}} ships tomorrow."

[[rule]]
regex = '(?i)refund'
handoff = "refund request"
[[rule.send]]
text = "Checking your refund..."
delay = {DELAY}

[default]
reply = "I can help with orders."
"""

ROUTES = """bot = bot.toml
bot_name = Robo

[route:/desk]
strategy = operator
bot_url = BOT_URL
bot_secret_file = bot.secret
bot_name = Helper
bot_timeout = 1
bot_connect_timeout = 1
bot_retries = 0
"""


@pytest.fixture
def backend() -> Iterator[Backend]:
    running = Backend()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def cluster(redis_server: RedisServer, tmp_path: Path,
            backend: Backend) -> Iterator[list[Daemon]]:
    """Daemons A, B and C on one Redis, each with the two bots' routes."""
    (tmp_path / "bot.toml").write_text(RULES, encoding="utf-8")
    (tmp_path / "bot.secret").write_text(SECRET + "\n", encoding="utf-8")
    started: list[Daemon] = []
    try:
        for name in ("a", "b", "c"):
            config = tmp_path / f"{name}.ini"
            text = config_text(redis_server, tmp_path, name) + \
                ROUTES.replace("BOT_URL", backend.url)
            config.write_text(text, encoding="utf-8")
            daemon = Daemon(config)
            started.append(daemon)
            daemon.wait_for_log("live conversations loaded", timeout=10)
            daemon.wait_for_log("redis: connected", timeout=10)
        yield started
    finally:
        for daemon in started:
            if daemon.process.poll() is None:
                daemon.stop()


class Visitor:
    """A structured visitor keeping its identity cookie across daemons."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.cookie: str | None = None
        self.ws: ClientConnection | None = None
        self._n = 0

    def connect(self, daemon: Daemon) -> ClientConnection:
        headers = {"Cookie": self.cookie} if self.cookie else None
        ws = self.ws = connect(f"{daemon.url}{self.path}",
                               subprotocols=[CHAT],  # type: ignore[list-item]
                               additional_headers=headers)
        if self.cookie is None:
            assert ws.response is not None
            self.cookie = ws.response.headers["Set-Cookie"].split(";")[0]
        ws.send(json.dumps({"type": "hello"}))
        next_of(ws, "welcome")
        return ws

    def say(self, text: str) -> None:
        assert self.ws is not None
        self._n += 1
        cid = f"c-{self._n}"
        self.ws.send(json.dumps({"type": "message", "id": cid, "text": text}))
        assert next_of(self.ws, "ack")["id"] == cid

    def messages(self, count: int, timeout: float = 5) -> list[tuple[str, str]]:
        assert self.ws is not None
        return [(m["author"], m["text"])
                for m in (next_of(self.ws, "message", timeout) for _ in range(count))]

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None


def desk(daemon: Daemon) -> ClientConnection:
    ws = connect(f"{daemon.url}/operator", additional_headers={"Authorization": f"Bearer {BOB}"})
    next_of(ws, "hello")
    return ws


def handed_over(ws: ClientConnection, route: str, within: float) -> dict[str, Any]:
    """The route's one conversation, once it waits for an operator (else fail), opened."""
    deadline = time.monotonic() + within
    n = 0
    while True:
        n += 1
        listed = request(ws, {"type": "conversations", "view": "all"}, f"l{n}")
        [summary] = [c for c in listed["conversations"] if c["route"] == route]
        if not summary["with_bot"]:
            break
        assert time.monotonic() < deadline, f"still with the bot after {within} s: {summary}"
        time.sleep(0.2)
    opened = request(ws, {"type": "open", "conversation": summary["id"]}, f"o{n}")
    assert opened["type"] == "ok", opened
    return opened


def entries(opened: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(e["kind"], e.get("author") or e.get("operator"), e["text"])
            for e in opened["entries"]]


def test_each_bot_answers_once_and_hands_over_to_the_operator_on_b(
        cluster: list[Daemon], backend: Backend) -> None:
    """
    The rules answer "order 42" on A once, then "order 7" through B once;
    "human" hands over: Bob on B finds it waiting with the bot's part and
    one note, replies, the visitor reads it. On /desk the backend is asked once (not by both
    daemons), answers once; a handoff phrase reaches Bob, one note.
    """
    a, b, _ = cluster
    backend.answers = [(0.0, "We open at 9.")]
    scripted, hooked = Visitor("/support"), Visitor("/desk")
    scripted.connect(a)
    hooked.connect(a)
    with desk(b) as ws:
        scripted.say("Where is order 42?")
        assert scripted.messages(1) == [("bot", "Order 42 ships tomorrow.")]
        # The same episode through B: B's bot answers, once (A's does not).
        scripted.close()
        scripted.connect(b)
        scripted.say("And order 7?")
        assert scripted.messages(1) == [("bot", "Order 7 ships tomorrow.")]
        scripted.say("I want a human please")
        assert scripted.messages(1) == [("system", ACK)]
        opened = handed_over(ws, "/support", 5)
        shown = entries(opened)
        assert [e for e in shown if e[1] == "bot"] == [
            ("message", "bot", "Order 42 ships tomorrow."),
            ("message", "bot", "Order 7 ships tomorrow."),
            ("note", "bot", "handed over: the visitor asked for a person (human)")]
        reply = request(ws, {"type": "reply", "conversation": opened["conversation"]["id"],
                             "text": "Bob here."}, "r1")
        assert reply["type"] == "ok", reply
        assert scripted.messages(1) == [("operator", "Bob here.")]

        hooked.say("When do you open?")
        assert hooked.messages(1) == [("bot", "We open at 9.")]
        hooked.say("My invoice is wrong, I need a person")
        assert hooked.messages(1) == [("system", ACK)]
        shown = entries(handed_over(ws, "/desk", 5))
        assert [e for e in shown if e[1] == "bot"] == [
            ("message", "bot", "We open at 9."),
            ("note", "bot", "handed over: the visitor asked for a person (person)")]
        # Asked once, by A alone; the handoff phrase is not sent to it.
        assert [e["message"]["text"] for e in backend.events] == ["When do you open?"]
    scripted.close()
    hooked.close()


def test_a_rules_handoff_owed_by_a_killed_daemon_is_made_once_by_the_other(
        cluster: list[Daemon]) -> None:
    """A killed while the refund rule's delayed message (and its handoff)
    waits: B hands over once overdue, with the rule's reason, one note; the
    visitor, back through B, gets the acknowledgement once."""
    a, b, _ = cluster
    visitor = Visitor("/support")
    visitor.connect(a)
    visitor.say("I want a refund")
    assert next_of(visitor.ws, "typing")["on"] is True  # type: ignore[arg-type]
    # The typing indicator goes out as the rule's handoff is stored as owed
    # (one Redis commit, ~1 ms): killed before it lands, the reason is lost
    # (the note then says the bot did not finish), as a crash would lose it.
    time.sleep(0.5)
    a.kill()
    visitor.close()
    killed = time.monotonic()
    visitor.connect(b)
    with desk(b) as ws:
        shown = entries(handed_over(ws, "/support", DELAY + GRACE_AND_SLACK))
        took = time.monotonic() - killed
    assert [e for e in shown if e[0] == "note"] == [
        ("note", "bot", "handed over: refund request")], shown
    assert ("message", "bot", "Checking your refund...") not in shown
    assert visitor.messages(1) == [("system", ACK)]
    with pytest.raises(TimeoutError):
        next_of(visitor.ws, "message", 1.0)  # type: ignore[arg-type]
    visitor.close()
    assert took >= DELAY, took  # not before it was due


def test_a_backend_request_out_on_a_killed_daemon_is_handed_over_once_by_the_other(
        cluster: list[Daemon], backend: Backend) -> None:
    """A killed while its request to the backend is out (the backend slow):
    B never asks the backend again, and hands over once the answer is
    overdue (2 s of attempts + 5 s), one note saying the bot did not finish."""
    a, b, _ = cluster
    backend.answers = [(15.0, "Too late.")]
    visitor = Visitor("/desk")
    visitor.connect(a)
    visitor.say("Hello?")
    deadline = time.monotonic() + 5
    while not backend.events:
        assert time.monotonic() < deadline, "the backend was not asked"
        time.sleep(0.05)
    a.kill()
    visitor.close()
    visitor.connect(b)
    with desk(b) as ws:
        shown = entries(handed_over(ws, "/desk", 2.0 + GRACE_AND_SLACK))
    assert [e for e in shown if e[0] == "note"] == [("note", "bot", f"handed over: {LOST}")]
    assert visitor.messages(1) == [("system", ACK)]
    with pytest.raises(TimeoutError):
        next_of(visitor.ws, "message", 1.0)  # type: ignore[arg-type]
    assert len(backend.events) == 1
    visitor.close()
