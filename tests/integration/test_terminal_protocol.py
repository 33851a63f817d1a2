"""
wsdaemon-operator, run as a program, against a channel that greets in the
retired operator queue's protocol (an older daemon): one error line, exit
status 1, nothing sent. The channel here is an independent server
(websockets) sending the queue's greeting, as an older daemon did.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.server import Server, ServerConnection, serve

QUEUE_HELLO = {"type": "hello", "operator": "alice", "items": [], "total": 0,
               "operators_online": 1, "clients": [], "clients_total": 0, "page_size": 50,
               "preview_chars": 200}

pytestmark = pytest.mark.slow


@pytest.fixture
def older_daemon() -> Iterator[tuple[str, list[str]]]:
    received: list[str] = []

    def channel(connection: ServerConnection) -> None:
        connection.send(json.dumps(QUEUE_HELLO))
        for message in connection:
            received.append(str(message))

    server: Server = serve(channel, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/operator", received
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_an_older_daemon_is_refused_with_one_line(
        older_daemon: tuple[str, list[str]], tmp_path: Path) -> None:
    """`python -m wsdaemon.support.terminal` greeted without "protocol": 2:
    exit 1 at once (well before the 4 s it gives a silent channel), one line
    saying the channel speaks an older protocol, and the piped command never
    sent to that daemon."""
    url, received = older_daemon
    token = tmp_path / "alice.token"
    token.write_text("a" * 20 + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "wsdaemon.support.terminal", url,
                           "--token-file", str(token)],
                          input="list\n", capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: this daemon's operator channel speaks an older protocol")
    assert received == []
