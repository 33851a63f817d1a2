"""
Bot first on the real daemon (issue 22, item 5): a support route with
`bot = bot.toml` answers a structured visitor (`websockets`,
`wsdaemon.chat.v1`) from the scripted rules, named as `bot_name`; "I want
a human" hands the conversation over: an operator on protocol 2 finds it
waiting, opens it and reads the bot's part of the thread and the handoff
note; the operator answers and the bot stays quiet after. A plain visitor
gets the bot's text as it is. A reload reads the rules again.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon, free_port
from tests.operator_client import ACK, ADMIN_KEY, CHAT, TOKEN, next_of, request, support_config

pytestmark = pytest.mark.slow


CONFIG = support_config("[route:/support]\nstrategy = operator\nbot = bot.toml\nbot_name = Robo",
                        admin=True)

RULES = """
[[rule]]
regex = '(?i)order (?P<n>\\d+)'
reply = "Order {match.n} ships tomorrow."

[[rule]]
regex = '(?i)slow'
[[rule.send]]
text = "Let me think about it..."
delay = 0.5

[[rule]]
regex = '(?i)refund'
handoff = "refund request"
[[rule.send]]
text = "Checking your refund..."
delay = 60

[default]
reply = "I can help with orders. Say 'human' to talk to a person."
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    (tmp_path / "bot.toml").write_text(RULES, encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG.replace("ADMIN_PORT", str(free_port())), encoding="utf-8")
    running = Daemon(config)
    try:
        yield running
    finally:
        assert running.stop() == 0




def say(visitor: ClientConnection, text: str, cid: str) -> None:
    visitor.send(json.dumps({"type": "message", "id": cid, "text": text}))
    assert next_of(visitor, "ack")["id"] == cid


def test_the_bot_answers_hands_over_and_an_operator_takes_it(daemon: Daemon,
                                                            tmp_path: Path) -> None:
    """The whole flow: bot answers, visitor asks for a human, the operator
    sees the bot's messages and the note, replies; the bot stays quiet."""
    with connect(f"{daemon.url}/support", subprotocols=[CHAT]) as visitor, \
            connect(f"{daemon.url}/operator",
                    additional_headers={"Authorization": f"Bearer {TOKEN}"}) as desk:
        assert visitor.subprotocol == CHAT
        assert next_of(desk, "hello")["protocol"] == 2
        visitor.send(json.dumps({"type": "hello"}))
        next_of(visitor, "welcome")
        say(visitor, "Where is order 42?", "c-1")
        answer = next_of(visitor, "message")
        assert (answer["author"], answer["name"], answer["text"]) == (
            "bot", "Robo", "Order 42 ships tomorrow.")
        # The bot has it: no acknowledgement, not waiting for the operators.
        waiting = request(desk, {"type": "conversations", "view": "unassigned"}, "w1")
        assert waiting["type"] == "ok" and waiting["conversations"] == [], waiting
        listed = request(desk, {"type": "conversations", "view": "all"}, "a1")
        assert [c["with_bot"] for c in listed["conversations"]] == [True]

        say(visitor, "No, I want a human please", "c-2")
        assert next_of(visitor, "message")["text"] == ACK
        waiting = request(desk, {"type": "conversations", "view": "unassigned"}, "w2")
        [summary] = waiting["conversations"]
        assert summary["with_bot"] is False and summary["waiting_since"] is not None
        opened = request(desk, {"type": "open", "conversation": summary["alias"]}, "o1")
        assert opened["type"] == "ok", opened
        shown = [(e["kind"], e.get("author") or e.get("operator"), e.get("name"), e["text"])
                 for e in opened["entries"]]
        assert ("message", "visitor", None, "Where is order 42?") in shown
        assert ("message", "bot", "Robo", "Order 42 ships tomorrow.") in shown
        assert ("message", "visitor", None, "No, I want a human please") in shown
        assert ("note", "bot", None,
                "handed over: the visitor asked for a person (human)") in shown

        reply = request(desk, {"type": "reply", "conversation": summary["id"],
                               "text": "Alice here, how can I help?"}, "r1")
        assert reply["type"] == "ok", reply
        frame = next_of(visitor, "message")
        assert (frame["author"], frame["name"]) == ("operator", "Alice Martin")

        # The operators have it now: the rules are not asked any more.
        say(visitor, "order 7 then?", "c-3")
        with pytest.raises(TimeoutError):
            next_of(visitor, "message", timeout=1.0)
        opened = request(desk, {"type": "open", "conversation": summary["id"]}, "o2")
        bots = [e["text"] for e in opened["entries"] if e.get("author") == "bot"]
        assert bots == ["Order 42 ships tomorrow."]
    metrics = admin_metrics(tmp_path)
    assert 'wsdaemon_bot_replies_total{route="/support"} 1.0' in metrics
    assert 'wsdaemon_bot_handoffs_total{reason="asked",route="/support"} 1.0' in metrics
    assert 'wsdaemon_bot_episodes_total{route="/support"} 1.0' in metrics


def admin_metrics(tmp_path: Path) -> str:
    config = (tmp_path / "wsdaemon.ini").read_text()
    port = config.split("listen = tcp:")[2].split(":", 1)[0]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return str(answer.read().decode())


def test_a_plain_visitor_gets_the_bots_text_and_its_delays(daemon: Daemon) -> None:
    """The seed's page: the bot's replies as text frames, a delayed one after its delay."""
    with connect(f"{daemon.url}/support") as visitor:
        visitor.send("hello")
        assert visitor.recv(timeout=5) == ("I can help with orders. Say 'human' to talk "
                                           "to a person.")
        visitor.send("this is slow")
        with pytest.raises(TimeoutError):
            visitor.recv(timeout=0.2)
        assert visitor.recv(timeout=5) == "Let me think about it..."


def reloaded(daemon: Daemon, times: int, timeout: float = 10) -> None:
    """Wait until the daemon's log says it reloaded C{times} times."""
    deadline = time.monotonic() + timeout
    while daemon.log().count("reloaded") < times:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)


def test_a_reload_reads_the_bots_rules_again(daemon: Daemon, tmp_path: Path) -> None:
    """SIGHUP: the new rules answer the next message (same episode, same
    connection); a bad rules file is refused with its line, the bot kept;
    the option removed, the bot's episode is handed over."""
    rules = tmp_path / "bot.toml"
    with connect(f"{daemon.url}/support") as visitor:
        visitor.send("order 1")
        assert visitor.recv(timeout=5) == "Order 1 ships tomorrow."
        rules.write_text(RULES.replace("ships tomorrow", "ships today"), encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)
        reloaded(daemon, 1)
        visitor.send("order 2")
        assert visitor.recv(timeout=5) == "Order 2 ships today."
        rules.write_text(RULES + "\n[[rule]]\ntext = 'x'\ndrop = true\n", encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log("drop: not in a bot's rules")
        visitor.send("order 3")
        assert visitor.recv(timeout=5) == "Order 3 ships today."
        # The option removed: the episode left with the bot goes to the operators.
        config = tmp_path / "wsdaemon.ini"
        config.write_text(config.read_text().replace("bot = bot.toml\nbot_name = Robo\n", ""),
                          encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)
        reloaded(daemon, 2)
        visitor.send("order 4")
        assert visitor.recv(timeout=5) == ACK


def test_a_structured_visitor_sees_the_bot_typing(daemon: Daemon) -> None:
    """While a delayed reply waits: typing on (named), the message, typing off."""
    with connect(f"{daemon.url}/support", subprotocols=[CHAT]) as visitor:
        visitor.send(json.dumps({"type": "hello"}))
        next_of(visitor, "welcome")
        say(visitor, "this is slow", "c-1")
        frames = []
        while len(frames) < 3:
            frame = json.loads(visitor.recv(timeout=5))
            if frame["type"] in ("typing", "message"):
                frames.append(frame)
        assert [(f["type"], f.get("on"), f["name"]) for f in frames] == [
            ("typing", True, "Robo"), ("message", None, "Robo"), ("typing", False, "Robo")]
        assert frames[1]["text"] == "Let me think about it..."


def test_a_stopping_daemon_hands_over_what_a_rule_owed(tmp_path: Path) -> None:
    """A rule's handoff waits for its delayed message; the daemon is stopped
    meanwhile: the handoff is made before it stops, and after a restart the
    conversation waits for an operator with the rule's reason."""
    (tmp_path / "bot.toml").write_text(RULES, encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG.replace("ADMIN_PORT", str(free_port())), encoding="utf-8")
    first = Daemon(config)
    try:
        with connect(f"{first.url}/support", subprotocols=[CHAT]) as visitor:
            visitor.send(json.dumps({"type": "hello"}))
            next_of(visitor, "welcome")
            say(visitor, "I want a refund", "c-1")
            # The bot types: its message waits 60 s, the rule's handoff after it.
            assert next_of(visitor, "typing")["on"] is True
    finally:
        assert first.stop() == 0
    again = Daemon(config)
    try:
        with connect(f"{again.url}/operator",
                     additional_headers={"Authorization": f"Bearer {TOKEN}"}) as desk:
            next_of(desk, "hello")
            waiting = request(desk, {"type": "conversations", "view": "unassigned"}, "w1")
            [summary] = waiting["conversations"]
            assert summary["with_bot"] is False
            opened = request(desk, {"type": "open", "conversation": summary["id"]}, "o1")
            notes = [e["text"] for e in opened["entries"] if e["kind"] == "note"]
            assert notes == ["handed over: refund request"]
    finally:
        assert again.stop() == 0
