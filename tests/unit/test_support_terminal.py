"""
wsdaemon-operator (L{wsdaemon.support.terminal}): telling the operator
channel's greeting (protocol 2) from whatever else answers at a URL, a
greeting of another protocol refused at once, when it gives up trying to
reach the channel (on a stopped clock), and lines and the end of piped
input held until the greeting.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from twisted.internet.task import Clock

from wsdaemon.support.terminal import TerminalConsole, main
from wsdaemon.support.terminal_channel import (
    OTHER_PROTOCOL,
    PATIENCE,
    Reach,
    TerminalClient,
    greeting,
)

HELLO = {"type": "hello", "protocol": 2, "operator": "alice", "display_name": "Alice A.",
         "conversations": [], "total": 0, "more": False, "next": None, "team": []}
#: The retired operator queue's greeting: no "protocol".
QUEUE_HELLO = {"type": "hello", "operator": "alice", "items": [], "total": 0,
               "operators_online": 1, "clients": [], "clients_total": 0, "page_size": 50,
               "preview_chars": 200}


def test_the_channels_greeting_is_recognised() -> None:
    """The channel's hello of protocol 2 is the greeting, whatever else it carries."""
    assert greeting(json.dumps(HELLO).encode(), False) == HELLO
    assert greeting(json.dumps({**HELLO, "extra": [1]}).encode(), False) == {**HELLO,
                                                                             "extra": [1]}


@pytest.mark.parametrize(("payload", "is_binary", "found"), [
    (b'{"type": "list", "id": 1}', False, 'its first message was "{"type": "list", "id": 1}"'),
    (json.dumps({**HELLO, "total": "0"}).encode(), False, "not the channel's greeting"),
    (json.dumps({**HELLO, "conversations": None}).encode(), False, "not the channel's greeting"),
    (b"Thanks! Your message is number 1", False, '"Thanks! Your message is number 1"'),
    (b"\x1b]0;pwned\x07hi", False, '"\\x1b]0;pwned\\x07hi"'),
    (b"[" * 100_000, False, "..."),
    (b"\xca\xfe", True, "binary (2 bytes)"),
])
def test_anything_else_is_described_escaped(payload: bytes, is_binary: bool, found: str) -> None:
    """A first message that is not the hello (an echo of a request, a hello of
    the wrong shape, a client route's text, bytes) is described for the error
    line: escaped, at most 100 characters of it."""
    described = greeting(payload, is_binary)
    assert isinstance(described, str)
    assert found in described
    assert "\x1b" not in described and len(described) < 200


@pytest.mark.parametrize(("hello", "says"), [
    (QUEUE_HELLO, "an older protocol"),
    ({**HELLO, "protocol": 1}, "an older protocol"),
    ({**HELLO, "protocol": "2"}, "an older protocol"),
    ({**HELLO, "protocol": 3}, "a newer protocol (3)"),
])
def test_a_greeting_of_another_protocol_says_so(hello: dict[str, Any], says: str) -> None:
    """A hello of another protocol (the retired queue's has none) is named as
    such, with what to do, not as "not the channel"."""
    described = greeting(json.dumps(hello).encode(), False)
    assert isinstance(described, str)
    assert described.startswith(f"{OTHER_PROTOCOL} {says}")
    assert "wsdaemon-operator" in described and "not the channel" not in described


def reach(*, retry: bool) -> tuple[Reach, Clock, list[int], io.StringIO, TerminalConsole]:
    clock, stopped, err = Clock(), [], io.StringIO()
    console = TerminalConsole(io.StringIO(), err, stopped.append, clock=clock)
    tries = Reach("ws://h/operator", clock, console, stopped.append, retry=retry)
    return tries, clock, stopped, err, console


class _Factory:
    def __init__(self, clock: Clock) -> None:
        self.reactor = clock
        self.refusals: list[bool] = []

    def refused(self) -> None:
        self.refusals.append(True)


def client(*, retry: bool = True) -> tuple[Any, Clock, list[int], io.StringIO, TerminalConsole,
                                           list[dict[str, Any]], list[bool]]:
    """A connection's protocol as main() makes it, the transport left out:
    what it sends and whether it dropped the connection are recorded."""
    tries, clock, stopped, err, console = reach(retry=retry)
    kind: Any = type("Client", (TerminalClient,), {"console": console, "reach": tries})
    protocol = kind()
    protocol.factory = _Factory(clock)
    sent: list[dict[str, Any]] = []
    dropped: list[bool] = []
    protocol.sendMessage = lambda payload, is_binary: sent.append(json.loads(payload))
    protocol.dropConnection = lambda abort: dropped.append(abort)
    protocol.onOpen()
    return protocol, clock, stopped, err, console, sent, dropped


def test_an_older_daemon_ends_it_with_status_1_at_once() -> None:
    """Greeted by the retired queue's channel: one error line saying the
    channel speaks an older protocol, exit status 1, the connection dropped,
    nothing sent (a line typed meanwhile never reaches that daemon)."""
    protocol, clock, stopped, err, console, sent, dropped = client()
    console.line("list")
    protocol.onMessage(json.dumps(QUEUE_HELLO).encode(), False)
    assert stopped == [1] and dropped == [True] and sent == []
    assert err.getvalue().startswith(
        "error: this daemon's operator channel speaks an older protocol")
    assert err.getvalue().count("\n") == 1
    console.stopping = True  # what main()'s stop does
    clock.advance(PATIENCE * 2)
    assert stopped == [1]


def test_reconnected_to_an_older_daemon_it_ends_too() -> None:
    """Once reached, a reconnection greeted in another protocol (the daemon was
    downgraded) still ends it, with status 1, instead of retrying for ever."""
    protocol, clock, stopped, err, console, sent, dropped = client()
    protocol.onMessage(json.dumps(HELLO).encode(), False)
    assert console.connected_once and stopped == []
    again, *_ = client()
    again.console, again.reach = console, protocol.reach
    again.onMessage(json.dumps({**HELLO, "protocol": 3}).encode(), False)
    assert stopped == [1] and "a newer protocol (3)" in err.getvalue()


def test_the_greeting_opens_the_session() -> None:
    """Protocol 2's greeting: the console is connected, then sets its
    availability and fetches the canned replies before the lines typed."""
    protocol, clock, stopped, err, console, sent, dropped = client()
    console.line("team")
    protocol.onMessage(json.dumps(HELLO).encode(), False)
    assert sent[0]["type"] == "availability" and dropped == [] and stopped == []
    protocol.onMessage(json.dumps({"type": "ok", "id": 1, "team": []}).encode(), False)
    protocol.onMessage(json.dumps({"type": "ok", "id": 2, "canned": [],
                                   "more": False}).encode(), False)
    assert sent[-1] == {"type": "team", "id": 3}
    assert "connected as Alice A. (alice)" in console.out.getvalue()  # type: ignore[attr-defined]


def test_piped_input_ending_before_the_greeting_waits_for_it() -> None:
    """Piped input that ends before the channel greets (an empty script, or a
    daemon still starting) does not end the program: the greeting's
    follow-ups and the lines run first, then it exits 0."""
    protocol, clock, stopped, err, console, sent, dropped = client()
    console.input_ended()
    assert stopped == []
    protocol.onMessage(json.dumps(HELLO).encode(), False)
    assert stopped == []
    protocol.onMessage(json.dumps({"type": "ok", "id": 1, "team": []}).encode(), False)
    protocol.onMessage(json.dumps({"type": "ok", "id": 2, "canned": [],
                                   "more": False}).encode(), False)
    assert stopped == [0] and err.getvalue() == ""


def test_a_revoked_token_ends_it_with_status_2() -> None:
    """The channel closing with 4001 (a reload revoked the token): the error
    line and the factory told (main() exits 2)."""
    protocol, clock, stopped, err, console, sent, dropped = client()
    protocol.onMessage(json.dumps(HELLO).encode(), False)
    protocol.onClose(False, 4001, "operator token revoked")
    assert protocol.factory.refusals == [True]
    assert err.getvalue() == "error: the daemon revoked the token\n"


def test_piped_tries_for_patience_seconds_then_says_why() -> None:
    """From a pipe, failed connections are tried again (each delay at most 1 s)
    until PATIENCE seconds have passed; then one error line with the last
    reason, and exit status 1."""
    tries, clock, stopped, err, _ = reach(retry=True)
    attempt = 0
    while not stopped:
        tries.failed("Connection refused")
        attempt += 1
        delay = tries.retry_delay(attempt)
        assert 0 < delay <= 1.0
        clock.advance(delay)
    assert stopped == [1] and clock.seconds() == pytest.approx(PATIENCE)
    assert attempt >= 5
    assert err.getvalue() == "error: cannot connect to ws://h/operator: Connection refused\n"


def test_on_a_terminal_the_first_failure_ends_it() -> None:
    """On a terminal a failed connection is not tried again."""
    tries, clock, stopped, err, _ = reach(retry=False)
    tries.failed("Connection refused")
    tries.retry_delay(1)
    clock.advance(0)
    assert stopped == [1] and "Connection refused" in err.getvalue()


def test_a_silent_websocket_is_named_at_the_deadline() -> None:
    """A WebSocket that never greets: at PATIENCE seconds the error says the
    URL is not the channel and what it did."""
    tries, clock, stopped, err, _ = reach(retry=True)
    tries.not_the_channel("it sent no greeting", at_once=False)
    clock.advance(PATIENCE - 0.1)
    assert stopped == []
    clock.advance(0.1)
    assert stopped == [1]
    assert err.getvalue().startswith(
        "error: ws://h/operator is not wsdaemon's operator channel: it sent no greeting (")


def test_once_greeted_it_reconnects_for_ever() -> None:
    """After the channel's greeting, lost connections are tried again without
    end (the daemon restarts), with the deadline gone."""
    tries, clock, stopped, err, console = reach(retry=True)
    console.connected(lambda request: None)
    tries.greeted()
    for attempt in range(1, 50):
        clock.advance(tries.retry_delay(attempt))
    assert stopped == [] and err.getvalue() == ""


def test_the_help_shows_the_conversations_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """wsdaemon-operator --help shows the conversations' commands, and nothing
    of the retired queue's."""
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "resolve [#REF]" in text and "snooze" in text
    assert "queue" not in text and "answer the oldest" not in text


def test_every_installed_command_names_a_function_that_exists() -> None:
    """The commands pyproject.toml installs (wsdaemon-operator among them) each
    name a module and function that import: a command left pointing at a
    removed module would install and fail only when run."""
    import importlib
    import tomllib

    from tests.daemon import REPO

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["scripts"]
    assert scripts["wsdaemon-operator"] == "wsdaemon.support.terminal:main"
    for command, target in scripts.items():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), command
