"""
`wsdaemon-operator` against the real daemon serving conversations
(`[operator] model = conversations`), piped as a script would run it, with
a `websockets` visitor: the console speaks protocol 2 by itself, lists the
conversation with its alias, opens it by alias, answers with a canned reply
filled in for the visitor, adds a note the visitor never sees, resolves;
what the visitor wrote is shown escaped.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon

pytestmark = pytest.mark.slow

TOKEN = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdefgh"
ACK = "Thanks! We will be with you shortly."
HOSTILE = "\x1b]0;pwned\x07my order\x1b[2J is late"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    (tmp_path / "canned.txt").write_text(
        "# the team's replies\n/late Sorry {name}, this is {operator}: it ships today.\n",
        encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(
        "[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n\n"
        "[protocol]\nidentity = claimed\n\n"
        f"[operator]\nmodel = conversations\ntokens = alice:{TOKEN}\n  bob:{BOB}\n"
        "display_names = alice: Alice Martin\ncanned_file = canned.txt\n"
        f"store = conversations.sqlite3\nack_message = {ACK}\nfallback_after = 0\n"
        "offline_message =\n\n"
        "[route:/support]\nstrategy = operator\n", encoding="utf-8")
    started = Daemon(config)
    try:
        yield started
    finally:
        assert started.stop() == 0


def console(daemon: Daemon, tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    token_file = tmp_path / "alice.token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "wsdaemon.support.terminal",
         f"{daemon.url}/operator", "--token-file", str(token_file)],
        input=script, capture_output=True, text=True, timeout=30)


def visitor(daemon: Daemon) -> ClientConnection:
    return connect(f"{daemon.url}/support?client_id=ann")


def test_the_console_answers_a_visitor(daemon: Daemon, tmp_path: Path) -> None:
    """Piped: list shows the alias, unread and waiting time; open by alias shows the thread
    escaped; /late sends the canned reply filled in; note stays private; resolve; exit 0."""
    with visitor(daemon) as ann:
        ann.send(HOSTILE)
        assert ann.recv(timeout=5) == ACK
        listed = console(daemon, tmp_path, "list\n")
        assert listed.returncode == 0, listed.stderr
        assert "-- connected as Alice Martin (alice)" in listed.stdout
        line = next(line for line in listed.stdout.splitlines() if "my order" in line)
        assert "1 unread" in line and "waiting " in line and "unassigned" in line
        assert "\x1b" not in listed.stdout and "\\x1b]0;pwned\\x07my order" in line
        alias = re.search(r"Visitor (\d{4})", line)
        assert alias is not None, line
        done = console(daemon, tmp_path, f"open #{alias.group(1)}\n/late\n"
                                         "note called them, VIP\nresolve\n")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"Visitor {alias.group(1)}: \\x1b]0;pwned" in done.stdout
        assert f"ok: sent to Visitor {alias.group(1)}" in done.stdout
        assert "ok: note added" in done.stdout
        assert "resolved" in done.stdout.splitlines()[-1]
        assert ann.recv(timeout=5) == \
            f"Sorry Visitor {alias.group(1)}, this is Alice Martin: it ships today."
        # The note never reaches the visitor; resolving may tell it nothing in plain text.
        with pytest.raises(TimeoutError):
            ann.recv(timeout=0.5)


def test_mistakes_fail_the_script(daemon: Daemon, tmp_path: Path) -> None:
    """A reply with nothing open, an unknown reference: errors on stderr, exit status 1."""
    result = console(daemon, tmp_path, "reply hello\nopen #zzzzzz\n")
    assert result.returncode == 1
    assert "no conversation open" in result.stderr
    assert "no conversation matches 'zzzzzz'" in result.stderr


def test_a_colleague_sees_what_the_console_does(daemon: Daemon, tmp_path: Path) -> None:
    """Bob, on protocol 2 over websockets, sees Alice's console view the conversation, her
    note and her reply; his unread count is his own (Alice's reads do not clear it)."""
    with visitor(daemon) as ann, connect(
            f"{daemon.url}/operator",
            additional_headers={"Authorization": f"Bearer {BOB}"}) as bob:
        assert json.loads(bob.recv(timeout=5))["protocol"] == 2
        ann.send("hello?")
        assert ann.recv(timeout=5) == ACK
        new = json.loads(bob.recv(timeout=5))
        while new["type"] != "conversation":
            new = json.loads(bob.recv(timeout=5))
        conversation = new["conversation"]["id"]
        done = console(daemon, tmp_path, f"open #{conversation[:8]}\nnote checking\n"
                                         "reply On it.\n")
        assert done.returncode == 0, done.stdout + done.stderr
        assert ann.recv(timeout=5) == "On it."
        seen: dict[str, dict[str, Any]] = {}
        viewers = []
        while "message" not in seen or seen["message"]["message"]["author"] != "operator":
            event = json.loads(bob.recv(timeout=5))
            seen[event["type"]] = event
            if event["type"] == "viewing" and event["conversation"] == conversation:
                viewers.append(event["operators"])
        assert ["alice"] in viewers
        assert seen["note"]["note"]["text"] == "checking"
        assert seen["message"]["message"]["name"] == "Alice Martin"
        assert seen["message"]["conversation"]["unread"] == 1
