"""
The terminal console telling the operator channel from whatever else answers
at a URL, and when it gives up trying to reach it (on a stopped clock).
"""

from __future__ import annotations

import io
import json

import pytest
from twisted.internet.task import Clock

from wsdaemon.strategies.operator.commands import Console
from wsdaemon.strategies.operator.console import PATIENCE, _Reach, greeting

HELLO = {"type": "hello", "operator": "alice", "items": [], "total": 0, "operators_online": 1,
         "clients": [], "clients_total": 0, "page_size": 50, "preview_chars": 200}


def test_the_channels_greeting_is_recognised() -> None:
    """The channel's hello is the greeting, whatever else it carries."""
    assert greeting(json.dumps(HELLO).encode(), False) == HELLO


@pytest.mark.parametrize(("payload", "is_binary", "found"), [
    (b'{"type": "list", "id": 1}', False, 'its first message was "{"type": "list", "id": 1}"'),
    (json.dumps({**HELLO, "total": "0"}).encode(), False, "not the channel's greeting"),
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


def reach(*, retry: bool) -> tuple[_Reach, Clock, list[int], io.StringIO, Console]:
    clock, stopped, err = Clock(), [], io.StringIO()
    console = Console(io.StringIO(), err, stopped.append)
    tries = _Reach("ws://h/operator", clock, console, stopped.append, retry=retry)
    return tries, clock, stopped, err, console


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
