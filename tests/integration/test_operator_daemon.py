"""
The operator channel of conversations in the real daemon: its tokens,
operators that go away, binary messages, kill -9 and SIGTERM with 100 open
conversations, and the terminal console across a restart.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon
from tests.operator_client import next_of, operator_desk, request
from wsdaemon.support.visitor import TEXT_ONLY

pytestmark = pytest.mark.slow

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef00"
ACK = "Thanks, we will answer here."

CONFIG = f"""
    [wsdaemon]
    listen = tcp:0:interface=127.0.0.1

    [operator]
    tokens =
        alice:{ALICE}
        bob:{BOB}
    store = state/conversations.sqlite3
    routing = auto
    ack_message = {ACK}
    fallback_after = 0
    offline_message =

    [protocol]
    # These clients choose their ids (?client_id=).
    identity = claimed

    [route:/support]
    strategy = operator
"""


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Path:
    return write_config(CONFIG)


@pytest.fixture
def daemon(config: Path, start_daemon: Callable[..., Daemon]) -> Daemon:
    return start_daemon(config)


def ask(daemon: Daemon, client_id: str, text: str) -> ClientConnection:
    client = connect(f"{daemon.url}/support?client_id={client_id}")
    client.send(text)
    assert client.recv(timeout=5) == ACK
    return client


def no_more(client: ClientConnection, wait: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        client.recv(timeout=wait)


def all_conversations(desk: ClientConnection) -> list[dict[str, Any]]:
    """Every conversation the operator lists, page after page."""
    found: list[dict[str, Any]] = []
    after = None
    while True:
        page = request(desk, {"type": "conversations", "view": "all", "limit": 500,
                              **({"after": after} if after else {})}, f"list{len(found)}")
        assert page["type"] == "ok", page
        found += page["conversations"]
        if not page.get("more"):
            return found
        after = page["next"]


def test_operator_auth(daemon: Daemon) -> None:
    """No token: 401; a wrong one: 403; a good one in the query string
    (browsers): accepted; no token, right or wrong, is logged."""
    with pytest.raises(InvalidStatus) as info:
        connect(f"{daemon.url}/operator")
    assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as info:
        connect(f"{daemon.url}/operator?token=not-the-right-token-at-all")
    assert info.value.response.status_code == 403
    with connect(f"{daemon.url}/operator?token={BOB}") as ws:
        hello = next_of(ws, "hello")
        assert (hello["protocol"], hello["operator"]) == (2, "bob")
    log = daemon.wait_for_log("bad token")
    assert ALICE not in log and BOB not in log and "not-the-right-token" not in log


def test_an_operator_that_goes_away_hands_its_conversation_over(daemon: Daemon) -> None:
    """routing = auto: the one operator online gets the new conversation;
    its connection closing hands it to the other (not back to nobody), whose
    reply the visitor gets once."""
    alice = operator_desk(daemon, ALICE)
    assert request(alice, {"type": "availability", "availability": "online"})["type"] == "ok"
    with ask(daemon, "c1", "help") as client, operator_desk(daemon, BOB) as bob:
        assert request(bob, {"type": "availability", "availability": "online"})["type"] == "ok"
        [summary] = all_conversations(alice)
        assert summary["assignee"] == "alice", summary
        alice.close()
        next_of(bob, "updated", timeout=10,
                where=lambda e: e["conversation"]["id"] == summary["id"]
                and e["conversation"]["assignee"] == "bob")
        answer = request(bob, {"type": "reply", "conversation": summary["id"],
                               "text": "bob here"})
        assert answer["type"] == "ok", answer
        assert client.recv(timeout=5) == "bob here"
        no_more(client)


def test_binary_is_not_stored(daemon: Daemon) -> None:
    """A plain visitor's binary message is refused with a text answer and
    starts no conversation."""
    with connect(f"{daemon.url}/support") as client:
        client.send(b"\x00")
        assert client.recv(timeout=5) == TEXT_ONLY
    with operator_desk(daemon, ALICE) as desk:
        assert all_conversations(desk) == []


def test_kill_9_then_sigterm_with_100_conversations(config: Path,
                                                    start_daemon: Callable[..., Daemon]) -> None:
    """100 acknowledged first messages survive kill -9; after the restart
    each visitor's conversation is answered, the answers survive a SIGTERM
    restart, and each visitor then gets its reply exactly once (before it,
    at least once, an acknowledgement whose delivery the kill left
    unrecorded)."""
    first = start_daemon(config)
    with ExitStack() as stack:
        asking = [stack.enter_context(connect(f"{first.url}/support?client_id=client-{n}"))
                  for n in range(100)]
        for n, client in enumerate(asking):
            client.send(f"question {n}")
        for client in asking:
            assert client.recv(timeout=10) == ACK
        first.kill()

    second = start_daemon(config, port=first.port)
    with operator_desk(second, ALICE) as alice:
        listed = all_conversations(alice)
        assert sorted(c["visitor"] for c in listed) == sorted(f"client-{n}" for n in range(100))
        for n, summary in enumerate(listed):
            answer = request(alice, {"type": "reply", "conversation": summary["id"],
                                     "text": f"answer to {summary['visitor']}"}, f"r{n}")
            assert answer["type"] == "ok", answer
    assert second.stop() in (0, -15)  # twistd ends by re-raising SIGTERM

    third = start_daemon(config, port=first.port)
    with operator_desk(third, ALICE) as alice:
        assert sorted(c["preview"] for c in all_conversations(alice)) == \
            sorted(f"answer to client-{n}" for n in range(100))
    with ExitStack() as stack:
        clients = [stack.enter_context(connect(f"{third.url}/support?client_id=client-{n}"))
                   for n in range(100)]
        for n, client in enumerate(clients):
            received = client.recv(timeout=5)
            if received == ACK:
                # Written just before the kill, its delivery not yet recorded:
                # a plain connection cannot confirm it, so it comes again.
                received = client.recv(timeout=5)
            assert received == f"answer to client-{n}"
        time.sleep(0.5)
        for client in clients:
            no_more(client, wait=0)


def console(daemon: Daemon, token_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wsdaemon.support.terminal", f"{daemon.url}/operator",
         "--token-file", str(token_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_terminal_console_refused_token(daemon: Daemon, tmp_path: Path) -> None:
    """A token the daemon refuses: one line saying so, exit status 2."""
    token_file = tmp_path / "wrong.token"
    token_file.write_text("wrong-token-wrong-token")
    result = subprocess.run(
        [sys.executable, "-m", "wsdaemon.support.terminal", f"{daemon.url}/operator",
         "--token-file", str(token_file)],
        input="list\n", capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2 and "refused the token" in result.stderr, result.stderr


def test_terminal_console_reconnects_after_restart(config: Path, tmp_path: Path,
                                                   start_daemon: Callable[..., Daemon]) -> None:
    """The console says when the daemon went away and when it is back, and
    answers a visitor who came after the restart."""
    first = start_daemon(config)
    token_file = tmp_path / "alice.token"
    token_file.write_text(ALICE)
    process = console(first, token_file)
    try:
        assert process.stdout is not None and process.stdin is not None
        assert "connected as alice" in process.stdout.readline()
        # Once `list` is answered, so are the requests the console makes on
        # each greeting (availability, canned replies): none is cut off.
        process.stdin.write("list\n")
        process.stdin.flush()
        line = process.stdout.readline()
        while line != "0 conversation(s)\n":
            assert line, "the console ended"
            line = process.stdout.readline()
        assert first.stop() in (0, -15)  # twistd ends by re-raising SIGTERM
        line = process.stdout.readline()
        while "disconnected" not in line:
            assert line, "the console ended"
            line = process.stdout.readline()
        second = start_daemon(config, port=first.port)
        line = process.stdout.readline()
        while "connected as alice" not in line:
            assert line, "the console ended"
            line = process.stdout.readline()
        with ask(second, "c1", "after the restart") as client:
            with operator_desk(second, BOB) as bob:
                [summary] = all_conversations(bob)
            process.stdin.write(f"open #{summary['id']}\nreply welcome back\nquit\n")
            process.stdin.flush()
            assert client.recv(timeout=10) == "welcome back"
        code = process.wait(timeout=10)
        assert code == 0, process.stderr.read() + process.stdout.read()
    finally:
        process.kill()

