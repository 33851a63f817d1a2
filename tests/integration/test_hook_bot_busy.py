"""
A backend bot whose every request slot stays taken (`bot_max_requests`),
on the real daemon: the backend's port refuses connections, so each
request is tried again (`bot_retries = 2`, `bot_retry_backoff = 1`: about
3 s in all) holding the route's only slot. A second visitor's message
waits for it at most `bot_timeout` (1 s): then it is never sent and its
conversation goes to the operators saying the backend is busy; the first
one's is handed over once its attempts are spent (unreachable).
Structured visitors (`websockets`, `wsdaemon.chat.v1`), an operator on
protocol 2.
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
from tests.integration.test_conversations_hook_bot import SECRET
from tests.operator_client import next_of, request

pytestmark = pytest.mark.slow

TOKEN = "alice-token-0123456789abcdef"
ACK = "Thanks! We will be with you shortly."
CHAT = "wsdaemon.chat.v1"

CONFIG = f"""
[wsdaemon]
listen = tcp:0:interface=127.0.0.1

[operator]
model = conversations
tokens = alice:{TOKEN}
store = conversations.sqlite3
ack_message = {ACK}
offline_message =
fallback_after = 0

[route:/support]
strategy = operator
bot_url = http://127.0.0.1:CLOSED_PORT/bot
bot_secret_file = bot.secret
bot_timeout = 1
bot_retries = 2
bot_retry_backoff = 1
bot_max_requests = 1
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    (tmp_path / "bot.secret").write_text(SECRET + "\n", encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG.replace("CLOSED_PORT", str(free_port())), encoding="utf-8")
    running = Daemon(config)
    try:
        yield running
    finally:
        assert running.stop() == 0


def visitor(daemon: Daemon, text: str) -> ClientConnection:
    ws = connect(f"{daemon.url}/support", subprotocols=[CHAT])  # type: ignore[list-item]
    ws.send(json.dumps({"type": "hello"}))
    next_of(ws, "welcome")
    ws.send(json.dumps({"type": "message", "id": "c-1", "text": text}))
    assert next_of(ws, "ack")["id"] == "c-1"
    return ws


def notes(desk: ClientConnection, conversation: str) -> list[str]:
    opened = request(desk, {"type": "open", "conversation": conversation}, f"o-{conversation}")
    assert opened["type"] == "ok", opened
    return [e["text"] for e in opened["entries"] if e["kind"] == "note"]


def test_a_request_without_a_slot_for_bot_timeout_is_handed_over_as_busy(
        daemon: Daemon) -> None:
    """Ann's request holds the only slot (refused, retried); Bob's waits
    1 s and is handed over as busy, long before Ann's (unreachable, ~3 s)."""
    first = visitor(daemon, "Hello from Ann")
    started = time.monotonic()
    second = visitor(daemon, "Hello from Bob")
    assert next_of(second, "message", timeout=5)["text"] == ACK
    busy_after = time.monotonic() - started
    with connect(f"{daemon.url}/operator",
                 additional_headers={"Authorization": f"Bearer {TOKEN}"}) as desk:
        next_of(desk, "hello")
        assert next_of(first, "message", timeout=10)["text"] == ACK
        unreachable_after = time.monotonic() - started
        listed = request(desk, {"type": "conversations", "view": "all"}, "l")
        by_preview: dict[str, Any] = {c["preview"]: c for c in listed["conversations"]}
        ann = by_preview["Hello from Ann"]
        bob = by_preview["Hello from Bob"]
        assert not ann["with_bot"] and not bob["with_bot"]
        assert notes(desk, bob["id"]) == [
            "handed over: the bot's backend is busy: all 1 of its requests "
            "(bot_max_requests) were out for 1s"]
        assert notes(desk, ann["id"]) == [
            "handed over: the bot's backend did not answer: unreachable"]
    assert busy_after < unreachable_after, (busy_after, unreachable_after)
    first.close()
    second.close()
