"""
The real daemon runs the operator feature through the one hook (issue 22,
item 9): the conversations component's console page (the inbox), channel,
/metrics families and /healthz key are served, nothing of the retired
queue's, and a reload hands the component the new operators' tokens.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.daemon import Daemon, free_port

KEY = "component-admin-key-0123456789"
ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef00"
CONFIG = """
    [wsdaemon]
    listen = tcp:0:interface=127.0.0.1

    [admin]
    listen = tcp:{admin}:interface=127.0.0.1
    api_keys = ops:{key}

    [operator]
    store = ops.sqlite3
    tokens = alice:{alice}{more}

    [route:/support]
    strategy = operator
"""


def _config(admin: int, bob: bool = False) -> str:
    more = f"\n        bob:{BOB}" if bob else ""
    return textwrap.dedent(CONFIG.format(admin=admin, key=KEY, alice=ALICE, more=more))


def _get(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _channel_accepts(daemon: Daemon, token: str) -> bool:
    try:
        with connect(f"{daemon.url}/operator",
                     additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5):
            return True
    except InvalidStatus:
        return False


def _ready(admin: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        status, body = _get(f"{admin}/healthz")
        if status == 200 or time.monotonic() > deadline:
            health: dict[str, Any] = json.loads(body)
            return health
        time.sleep(0.1)


def test_the_daemon_serves_the_conversations_component(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """Console page (the inbox), channel, /metrics and /healthz come from the
    conversations component, nothing from the queue's; a SIGHUP with a new
    token lets that operator in."""
    admin_port = free_port()
    path = write_config(_config(admin_port))
    daemon = start_daemon(path)
    admin = f"http://127.0.0.1:{admin_port}"
    health = _ready(admin)
    assert health["ready"] is True and health["conversations"]["started"] is True
    assert "queue" not in health
    status, body = _get(f"{daemon.http}/console")
    assert status == 200 and b"/_wsdaemon/inbox/app.js" in body
    assert b"console.js" not in body
    status, body = _get(f"{admin}/metrics")
    assert status == 200 and "# TYPE wsdaemon_conversations gauge" in body.decode()
    assert "wsdaemon_queue_" not in body.decode()
    assert _channel_accepts(daemon, ALICE) and not _channel_accepts(daemon, BOB)

    path.write_text(_config(admin_port, bob=True))
    os.kill(daemon.process.pid, signal.SIGHUP)
    daemon.wait_for_log("reloaded")
    assert _channel_accepts(daemon, BOB)
