"""
The team's own backend as a support route's bot on the real daemon (issue
24, item 3): `bot_url` names a real local HTTP backend. The worked example
(examples/support-bot/backend.py, standard library only) answers a
structured visitor (`websockets`, `wsdaemon.chat.v1`) twice, then hands
the refund over: an operator on protocol 2 finds the conversation waiting
and reads the bot's messages and the handoff note. A backend of the test's
own verifies each request with the `standardwebhooks` package and reads
the event (route, conversation, visitor, alias, message, context); when it
is too slow the conversation is handed over saying so, logged once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from websockets.sync.client import ClientConnection, connect

from tests.daemon import REPO, Daemon, free_port
from tests.operator_client import ACK, ADMIN_KEY, CHAT, TOKEN, next_of, request, support_config

pytestmark = pytest.mark.slow

SECRET = "whsec_NRm/pdS8h4I4QDUPnhpccTRuvUPnhvGu"
HOURS = "We are open 9:00-17:00, Monday to Friday."

CONFIG = support_config("[route:/support]\nstrategy = operator\nbot_url = BOT_URL\n"
                        "bot_secret_file = bot.secret\nbot_name = Helper\nbot_timeout = 1",
                        display_name=False, admin=True)


def start_daemon(tmp_path: Path, bot_url: str) -> Daemon:
    (tmp_path / "bot.secret").write_text(SECRET + "\n", encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG.replace("ADMIN_PORT", str(free_port()))
                      .replace("BOT_URL", bot_url), encoding="utf-8")
    return Daemon(config)


@pytest.fixture
def example(tmp_path: Path) -> Iterator[str]:
    """The worked example's backend, as its comment says to run it."""
    (tmp_path / "bot.secret").write_text(SECRET + "\n", encoding="utf-8")
    port = free_port()
    process = subprocess.Popen([sys.executable, str(REPO / "examples/support-bot/backend.py"),
                                str(port), str(tmp_path / "bot.secret")])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            except urllib.error.HTTPError:
                break  # it answers (GET is not its method)
            except OSError:
                assert time.monotonic() < deadline, "the example backend did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/support-bot"
    finally:
        process.terminate()
        process.wait(5)


class Backend:
    """A backend of the test's own: verifies, records, answers as told."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.unverified = 0
        self.answers: list[tuple[float, str]] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    event = Webhook(SECRET).verify(body, headers)
                except Exception:
                    backend.unverified += 1
                    raise
                backend.events.append(event)
                delay, text = backend.answers.pop(0)
                time.sleep(delay)
                data = text.encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "text/plain; charset=utf-8")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # too late: the daemon gave up and closed the connection

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/bot"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()




def say(visitor: ClientConnection, text: str, cid: str) -> None:
    visitor.send(json.dumps({"type": "message", "id": cid, "text": text}))
    assert next_of(visitor, "ack")["id"] == cid


def bot_said(visitor: ClientConnection) -> str:
    frame = next_of(visitor, "message")
    assert (frame["author"], frame["name"]) == ("bot", "Helper"), frame
    return str(frame["text"])


def waiting_thread(desk: ClientConnection) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """The one conversation waiting for the operators, and its thread."""
    waiting = request(desk, {"type": "conversations", "view": "unassigned"}, "w")
    [summary] = waiting["conversations"]
    assert summary["with_bot"] is False
    opened = request(desk, {"type": "open", "conversation": summary["id"]}, "o")
    assert opened["type"] == "ok", opened
    return summary, [(e["kind"], e.get("author") or e.get("operator"), e.get("name"), e["text"])
                     for e in opened["entries"]]


def admin_metrics(tmp_path: Path) -> str:
    config = (tmp_path / "wsdaemon.ini").read_text()
    port = config.split("listen = tcp:")[2].split(":", 1)[0]
    asked = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                   headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(asked, timeout=5) as answer:
        return str(answer.read().decode())


def test_the_example_backend_answers_twice_then_hands_over(example: str,
                                                          tmp_path: Path) -> None:
    """Opening hours twice (text answers), then the refund: the backend's
    message and its handoff; the operator reads the bot's part and the note."""
    daemon = start_daemon(tmp_path, example)
    try:
        with connect(f"{daemon.url}/support", subprotocols=[CHAT]) as visitor, \
                connect(f"{daemon.url}/operator",
                        additional_headers={"Authorization": f"Bearer {TOKEN}"}) as desk:
            assert next_of(desk, "hello")["protocol"] == 2
            visitor.send(json.dumps({"type": "hello"}))
            next_of(visitor, "welcome")
            say(visitor, "What are your opening hours?", "c-1")
            assert bot_said(visitor) == HOURS
            say(visitor, "Are you open on Saturday?", "c-2")
            assert bot_said(visitor) == HOURS
            waiting = request(desk, {"type": "conversations", "view": "unassigned"}, "w1")
            assert waiting["conversations"] == []  # the bot has it
            say(visitor, "I want a refund", "c-3")
            assert bot_said(visitor) == "A colleague will look at your refund."
            assert next_of(visitor, "message")["text"] == ACK
            _, shown = waiting_thread(desk)
            assert [s for s in shown if s[0] == "message"] == [
                ("message", "visitor", None, "What are your opening hours?"),
                ("message", "bot", "Helper", HOURS),
                ("message", "visitor", None, "Are you open on Saturday?"),
                ("message", "bot", "Helper", HOURS),
                ("message", "visitor", None, "I want a refund"),
                ("message", "bot", "Helper", "A colleague will look at your refund."),
                ("message", "system", None, ACK)], shown
            assert ("note", "bot", None, "handed over: refund") in shown
        metrics = admin_metrics(tmp_path)
    finally:
        assert daemon.stop() == 0
    assert 'wsdaemon_bot_replies_total{route="/support"} 3.0' in metrics
    assert 'wsdaemon_bot_handoffs_total{reason="backend",route="/support"} 1.0' in metrics
    assert 'wsdaemon_bot_backend_latency_seconds_count{route="/support"} 3.0' in metrics


def test_a_plain_visitor_gets_the_backends_text(example: str, tmp_path: Path) -> None:
    """The seed's page (no subprotocol): the bot's answers as text frames."""
    daemon = start_daemon(tmp_path, example)
    try:
        with connect(f"{daemon.url}/support") as visitor:
            visitor.send("opening hours?")
            assert visitor.recv(timeout=5) == HOURS
            visitor.send("hello")
            assert visitor.recv(timeout=5) == ("I know our opening hours. Say 'human' for "
                                               "a person.")
    finally:
        assert daemon.stop() == 0


def test_a_slow_backend_hands_over_with_the_reason(tmp_path: Path) -> None:
    """Signed requests (verified with standardwebhooks) carrying the event;
    the second answer comes after bot_timeout: handed to the operators with
    'did not answer: timeout', logged once, counted."""
    backend = Backend()
    backend.answers = [(0.0, "Hello from the backend."), (3.0, "too late")]
    daemon = start_daemon(tmp_path, backend.url)
    try:
        with connect(f"{daemon.url}/support", subprotocols=[CHAT]) as visitor, \
                connect(f"{daemon.url}/operator",
                        additional_headers={"Authorization": f"Bearer {TOKEN}"}) as desk:
            next_of(desk, "hello")
            visitor.send(json.dumps({"type": "hello"}))
            next_of(visitor, "welcome")
            say(visitor, "hi", "c-1")
            assert bot_said(visitor) == "Hello from the backend."
            say(visitor, "still there?", "c-2")
            assert next_of(visitor, "message")["text"] == ACK
            summary, shown = waiting_thread(desk)
            assert ("note", "bot", None,
                    "handed over: the bot's backend did not answer: timeout") in shown
            assert [s[3] for s in shown if s[1] == "bot" and s[0] == "message"] == [
                "Hello from the backend."]
        daemon.wait_for_log("the backend failed (timeout)")
        metrics = admin_metrics(tmp_path)
    finally:
        assert daemon.stop() == 0
        backend.close()
    assert backend.unverified == 0
    first, second = backend.events
    assert (first["type"], first["route"], first["message"]["text"], first["context"]) == (
        "message", "/support", "hi", [])
    assert first["conversation_id"] == summary["id"] and first["alias"] == summary["alias"]
    assert second["message"]["seq"] > first["message"]["seq"]
    assert [(c["author"], c["text"]) for c in second["context"]] == [
        ("visitor", "hi"), ("bot", "Hello from the backend.")]
    assert daemon.log().count("the backend failed") == 1
    assert 'wsdaemon_bot_backend_errors_total{kind="timeout",route="/support"} 1.0' in metrics
    assert ('wsdaemon_bot_handoffs_total{reason="backend_failed",route="/support"} 1.0'
            in metrics)
