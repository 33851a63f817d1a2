"""
The terminal console (`wsdaemon-operator`) as its users meet it: on a real
terminal (a pty), piped, against a daemon that is not there, at a URL that
is not the operator channel, and against clients that write escape
sequences.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.daemon import Daemon, free_port

pytestmark = pytest.mark.slow

ALICE = "alice-token-0123456789abcdef"

CONFIG = f"""
    [wsdaemon]
    listen = tcp:0:interface=127.0.0.1

    [operator]
    tokens = alice:{ALICE}
    store = state/conversations.sqlite3
    fallback_after = 0
    offline_message =

    [protocol]
    # These clients choose their ids (?client_id=).
    identity = claimed

    [route:/support]
    strategy = operator

    [route:/echo]
    strategy = echo

    [route:/bot]
    strategy = scripted
    rules = bot.rules.toml
"""

# A route that speaks first, with an escape sequence (it sets the title).
BOT_RULES = """
    [[greeting]]
    text = "\\u001b]0;pwned\\u0007Hello from a bot"
"""

NOT_THE_CHANNEL = "is not wsdaemon's operator channel"


@pytest.fixture
def daemon(write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> Daemon:
    write_config(BOT_RULES, name="bot.rules.toml")
    return start_daemon(write_config(CONFIG))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "alice.token"
    path.write_text(ALICE)
    return path


def run_console(url: str, token_file: Path, script: str,
                timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsdaemon.support.terminal", url, "--token-file",
         str(token_file)], input=script, capture_output=True, text=True, timeout=timeout)


def send(daemon: Daemon, client_id: str, *texts: str) -> None:
    with connect(f"{daemon.url}/support?client_id={client_id}") as client:
        for text in texts:
            client.send(text)
            client.recv(timeout=5)


def test_cannot_connect_says_why_and_exits_1(token_file: Path) -> None:
    """Piped, with nothing listening: it tries for about 4 s (README), then one
    clear error line and exit status 1 (no hang)."""
    started = time.monotonic()
    url = f"ws://127.0.0.1:{free_port()}/operator"
    result = run_console(url, token_file, "list\n")
    assert result.returncode == 1
    assert f"error: cannot connect to {url}:" in result.stderr
    assert "refused" in result.stderr.lower()
    # About 4 s of tries, plus starting Python (about 1 s here).
    assert time.monotonic() - started < 8


def test_piped_console_gives_up_after_about_4_seconds(token_file: Path) -> None:
    """Piped, at a server that accepts each connection and closes it at once:
    tries again and again, then gives up about 4 s (the README's figure) after
    its first try, measured from that try, so Python's start-up does not count."""
    tries: list[float] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(0.2)

        def accept_and_close() -> None:
            while not stop.is_set():
                try:
                    connection, _ = server.accept()
                except OSError:
                    continue
                tries.append(time.monotonic())
                connection.close()

        stop = threading.Event()
        thread = threading.Thread(target=accept_and_close, daemon=True)
        thread.start()
        url = f"ws://127.0.0.1:{server.getsockname()[1]}/operator"
        try:
            result = run_console(url, token_file, "list\n", timeout=20)
            ended = time.monotonic()
        finally:
            stop.set()
            thread.join()
    assert result.returncode == 1
    assert f"error: cannot connect to {url}:" in result.stderr
    assert len(tries) >= 3
    assert 3 <= ended - tries[0] < 5.5


@pytest.mark.parametrize(("path", "found"), [
    ("/support", "sent no greeting"),
    ("/nosuch", "HTTP 404"),
    ("/", "HTTP 200"),
])
def test_a_url_that_is_not_the_channel_is_named_and_exits_1(
        path: str, found: str, daemon: Daemon, token_file: Path) -> None:
    """Piped, at a client route, a path with no WebSocket, or a page: one error
    line naming the URL and what answered there, exit status 1, in bounded
    time; no command reached the route as a client message."""
    url = f"{daemon.url}{path}"
    started = time.monotonic()
    result = run_console(url, token_file, "reply hello\nlist\n", timeout=20)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error: {url} {NOT_THE_CHANNEL}" in result.stderr
    assert found in result.stderr
    assert time.monotonic() - started < 10
    check = run_console(f"{daemon.url}/operator", token_file, "list\n")
    assert "\n0 conversation(s)\n" in check.stdout, check.stdout + check.stderr


def test_a_route_that_speaks_first_is_shown_escaped(daemon: Daemon, token_file: Path) -> None:
    """At a route whose first message is not the channel's hello, the console
    says so at once, quoting that message with its escape sequence escaped."""
    url = f"{daemon.url}/bot"
    result = run_console(url, token_file, "list\n", timeout=20)
    assert result.returncode == 1
    assert f"error: {url} {NOT_THE_CHANNEL}" in result.stderr
    assert "\\x1b]0;pwned\\x07Hello from a bot" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr


def test_client_text_cannot_drive_the_terminal(daemon: Daemon, token_file: Path,
                                               tmp_path: Path) -> None:
    """Escape sequences, OSC 52 and newlines from a visitor are shown escaped
    on one line, in the list and in the opened thread; `export` writes the
    text whole."""
    nasty = ("\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07\n"
             "#forged /support x [answered by alice]: ok")
    send(daemon, "evil", nasty)
    listed = run_console(f"{daemon.url}/operator", token_file, "list\n")
    alias = next(line.split()[1] for line in listed.stdout.splitlines()
                 if line.startswith("   Visitor "))
    export = tmp_path / "thread.jsonl"
    result = run_console(f"{daemon.url}/operator", token_file,
                         f"open #{alias}\nexport {export}\n")
    assert result.returncode == 0, result.stdout + result.stderr
    shown = listed.stdout + result.stdout
    assert "\x1b" not in shown and "\x07" not in shown
    escaped = "\\x1b]0;pwned\\x07\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07\\n#forg"
    assert escaped in listed.stdout  # the preview, on the conversation's line
    thread = [line for line in result.stdout.splitlines() if line.startswith("   [")]
    assert any(f"Visitor {alias}: {escaped}" in line for line in thread), result.stdout
    assert not any(line.startswith("#forged") for line in shown.splitlines())
    entries = [json.loads(line) for line in export.read_text().splitlines()]
    assert [e["text"] for e in entries if e["author"] == "visitor"] == [nasty]


def _read_until(fd: int, wanted: str, seen: list[str], timeout: float = 10,
                count: int = 1) -> str:
    deadline = time.monotonic() + timeout
    while "".join(seen).count(wanted) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{wanted!r} not seen in:\n{''.join(seen)!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                seen.append(os.read(fd, 65536).decode("utf-8", "replace"))
            except OSError:
                break
    return "".join(seen)


def test_terminal_at_a_client_route_exits_1(daemon: Daemon, token_file: Path) -> None:
    """On a terminal too, a client route is named as not the channel, and the
    console exits 1 instead of waiting forever."""
    leader, follower = pty.openpty()
    url = f"{daemon.url}/support"
    process = subprocess.Popen(
        [sys.executable, "-m", "wsdaemon.support.terminal", url,
         "--token-file", str(token_file)], stdin=follower, stdout=follower, stderr=follower,
        env={**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"})
    os.close(follower)
    seen: list[str] = []
    try:
        _read_until(leader, f"error: {url} {NOT_THE_CHANNEL}", seen, timeout=15)
        assert process.wait(timeout=10) == 1
    finally:
        process.kill()
        os.close(leader)


def test_terminal_line_editing_history_and_events_above(daemon: Daemon,
                                                        token_file: Path) -> None:
    """On a terminal: the Up arrow recalls the last command (it is not sent as
    a command), and an event arriving while a command is half typed does not
    break it: the finished line runs as typed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "wsdaemon.support.terminal", f"{daemon.url}/operator",
         "--token-file", str(token_file)], stdin=follower, stdout=follower, stderr=follower,
        env={**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"})
    os.close(follower)
    seen: list[str] = []
    try:
        _read_until(leader, "-- connected as alice", seen)
        _read_until(leader, "operator>", seen)
        os.write(leader, b"list\r")
        _read_until(leader, "0 conversation(s)\r\n", seen)
        os.write(leader, b"\x1b[A\r")  # Up, Enter: `list` again
        output = _read_until(leader, "0 conversation(s)\r\n", seen, count=2)
        assert "unknown command" not in output
        with connect(f"{daemon.url}/support?client_id=c1") as client:
            client.send("hello?")
            client.recv(timeout=5)
            alias = re.search(r"Visitor (\d{4})", _read_until(leader, "hello?", seen))
            assert alias is not None, seen
            os.write(leader, f"open #{alias.group(1)}\r".encode())
            _read_until(leader, f"Visitor {alias.group(1)}: hello?", seen)
            os.write(leader, b"reply hel")
            client.send("are you there?")
            before = len(_read_until(leader, "are you there?", seen))
            # The half-typed line is drawn again below the event, intact.
            redrawn = _read_until(leader, "reply hel", seen, count=2)
            assert redrawn.rindex("reply hel") > redrawn.index("are you there?") < before
            os.write(leader, b"lo there\r")
            assert client.recv(timeout=10) == "hello there"
        os.write(leader, b"quit\r")
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        os.close(leader)
