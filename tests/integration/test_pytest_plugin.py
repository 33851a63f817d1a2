"""
The wsmock pytest plugin, as a user's test suite runs it (pytester: an inner
pytest run in a subprocess, with the plugin registered by the installed
package's pytest11 entry point): plain tests, a marker, isolation between
tests, clear failures, pytest-asyncio, pytest-twisted, pytest-xdist.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

pytestmark = pytest.mark.slow

pytest_plugins = ["pytester"]

CLIENT = '''
import json
import time

import pytest
from websockets.sync.client import connect


def subscribe(url, topic):
    """The client under test: subscribes, reads the answer, closes."""
    with connect(url) as ws:
        ws.send(json.dumps({"type": "subscribe", "topic": topic}))
        return ws.recv(timeout=5)
'''


def test_plain_tests_marker_isolation_and_failures(pytester: pytest.Pytester) -> None:
    """A test sets rules, runs its client and asserts on the journal; a marker
    sets rules up front; the next test sees none of it; a failing assertion
    says what the mock did receive."""
    pytester.makepyfile(test_client=CLIENT + '''

def test_subscribe(wsmock):
    wsmock.rules("""
        [[rule]]
        json = { type = "subscribe" }
        reply = '{{"type": "subscribed", "topic": "{json.topic}"}}'
    """)
    assert subscribe(wsmock.url, "prices") == '{"type": "subscribed", "topic": "prices"}'
    wsmock.assert_received(json={"type": "subscribe", "topic": "prices"})
    wsmock.assert_sent(regex="subscribed")
    wsmock.assert_closed(1000)


@pytest.mark.wsmock(rules='[default]\\nreply = "hello from the marker"\\n')
def test_marker(wsmock):
    assert subscribe(wsmock.url, "x") == "hello from the marker"


def test_isolated(wsmock):
    assert wsmock.received() == [] and wsmock.connections() == []
    with connect(wsmock.url) as ws:
        ws.send("only me")
        wsmock.wait_for(text="only me")
        assert wsmock.push("pushed") == 1
        assert ws.recv(timeout=5) == "pushed"
    assert [e["text"] for e in wsmock.received()] == ["only me"]


def test_faults(wsmock):
    wsmock.refuse_next(1, status=503, headers={"Retry-After": "1"})
    from websockets.exceptions import InvalidStatus
    with pytest.raises(InvalidStatus):
        connect(wsmock.url)
    with connect(wsmock.url) as ws:
        wsmock.wait_for("open")
        wsmock.close(4001, "go away")
        with pytest.raises(Exception):
            ws.recv(timeout=5)
    wsmock.assert_closed(4001)


def test_failing_assertion_says_what_was_received(wsmock):
    with connect(wsmock.url) as ws:
        ws.send("hello")
        wsmock.wait_for(text="hello")
    wsmock.assert_received(text="goodbye")
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines([
        "*expected exactly 1 message(s) matching {'text': 'goodbye'} received by the mock, "
        "found 0; it received 'hello'*"])


def test_with_pytest_asyncio_and_pytest_twisted(pytester: pytest.Pytester) -> None:
    """The fixture works in asyncio tests (waiting without blocking the loop)
    and in Twisted tests (the reactor running)."""
    pytester.makepyfile(test_async='''
import asyncio

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from websockets.asyncio.client import connect as aconnect
from websockets.sync.client import connect


@pytest.mark.asyncio
async def test_asyncio_client(wsmock):
    wsmock.rules('[[rule]]\\ntext = "ping"\\nreply = "pong"\\n')
    async with aconnect(wsmock.url) as ws:
        await ws.send("ping")
        await wsmock.wait_for_async("out", text="pong")
        assert await ws.recv() == "pong"
    wsmock.assert_received(text="ping")


@pytest_twisted.ensureDeferred
async def test_twisted_test(wsmock):
    wsmock.rules('[[rule]]\\ntext = "ping"\\nreply = "pong"\\n')

    def client():
        with connect(wsmock.url) as ws:
            ws.send("ping")
            return ws.recv(timeout=5)

    assert await deferToThread(client) == "pong"
    wsmock.assert_sent(text="pong")
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2)


def test_under_xdist_parallel_tests_do_not_see_each_other(pytester: pytest.Pytester) -> None:
    """With -n 2, tests running at the same time on two workers each see only
    their own messages (one daemon per worker)."""
    pytester.makepyfile(test_parallel='''
import os
import time

import pytest
from websockets.sync.client import connect


@pytest.mark.parametrize("n", range(4))
def test_only_mine(wsmock, n):
    me = f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{n}"
    with connect(wsmock.url) as ws:
        for i in range(5):
            ws.send(f"{me}-{i}")
            time.sleep(0.1)
        wsmock.wait_for(count=5)
    assert [e["text"] for e in wsmock.received()] == [f"{me}-{i}" for i in range(5)]
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*gw0*", "*gw1*"])


class _Decoy(BaseHTTPRequestHandler):
    """Another daemon's admin API: ready to anyone, 401 to our key."""

    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(f"{self.command} {self.path} "
                               f"{self.headers.get('Authorization', '')}")
        body = (b'{"status": "ok", "ready": true}' if self.path == "/healthz"
                else b'{"error": "unauthorized"}')
        self.send_response(200 if self.path == "/healthz" else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("taken", ["port", "admin_port"])
def test_a_port_taken_meanwhile_is_never_mistaken_for_the_mock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken: str) -> None:
    """Another server takes the port the plugin chose (for the WebSocket
    listener, or for the admin API) before its daemon binds it: the plugin
    notices (its daemon says it listens on its ports, or says it could not),
    starts again on other ports, and never talks to the other server, even
    though it answers /healthz ready."""
    from wsdaemon import pytest_plugin
    from wsdaemon.mock import server as mock_server

    decoy = ThreadingHTTPServer(("127.0.0.1", 0), _Decoy)
    _Decoy.seen = []
    threading.Thread(target=decoy.serve_forever, daemon=True).start()
    chosen: list[int] = []
    position = ["port", "admin_port"].index(taken)

    def free_port() -> int:
        chosen.append(decoy.server_address[1] if len(chosen) == position
                      else real_free_port())
        return chosen[-1]

    real_free_port = mock_server._free_port
    monkeypatch.setattr(mock_server, "_free_port", free_port)
    server = None
    try:
        server = pytest_plugin.MockServer(tmp_path)
        assert decoy.server_address[1] not in (server.port, server.admin_port)
        assert server.call("GET", "/routes")["routes"]
        with connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
            ws.send("mine")
            assert ws.recv(timeout=5) == "mine"
    finally:
        if server is not None:
            server.stop()
        decoy.shutdown()
        decoy.server_close()
    assert _Decoy.seen == []


@pytest.fixture(scope="module")
def mock_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One mock daemon for the tests below, which drive WsMock in-process."""
    from wsdaemon.pytest_plugin import MockServer

    server = MockServer(tmp_path_factory.mktemp("wsmock"))
    try:
        yield server
    finally:
        server.stop()


def test_assert_closed_waits_for_its_code_past_earlier_closes(mock_server: Any) -> None:
    """An earlier close with another code does not end assert_closed's wait:
    it waits (as the README says) for a close with the code asked for."""
    from wsdaemon.pytest_plugin import WsMock

    mock = WsMock(mock_server)
    with connect(mock.url) as first:
        mock.wait_for("open")
        mock.close(4001, "first")
        with pytest.raises(ConnectionClosed):
            first.recv(timeout=5)
    mock.wait_for("close")
    second = connect(mock.url)
    mock.wait_for("open", count=2)
    closer = threading.Timer(0.5, second.close)
    closer.start()
    try:
        mock.assert_closed(1000)
    finally:
        closer.join()
    with pytest.raises(AssertionError,
                       match=r"^expected a connection to close with 3001 within 0.2 s; "
                             r"closes seen: 4001, 1000$"):
        mock.assert_closed(3001, timeout=0.2)


def test_assertion_messages_read_as_english(mock_server: Any) -> None:
    """What a failed assertion or wait says, for every kind of journal entry."""
    from wsdaemon.pytest_plugin import WsMock

    mock = WsMock(mock_server)
    with pytest.raises(AssertionError, match=r"^expected a connection to close with 1000 "
                                             r"within 0.1 s; no connection closed$"):
        mock.assert_closed(timeout=0.1)
    with pytest.raises(AssertionError, match=r"^expected at least 1 close\(s\) of connections "
                                             r"to the mock, found 0; closes seen: nothing$"):
        mock.wait_for("close", timeout=0.1)
    with pytest.raises(AssertionError, match=r"^expected at least 2 message\(s\) matching "
                                             r"\{'text': 'x'\} received by the mock, found 0; "
                                             r"it received nothing$"):
        mock.wait_for(text="x", count=2, timeout=0.1)
    with pytest.raises(AssertionError, match=r"^expected exactly 1 message\(s\) sent by the "
                                             r"mock, found 0; it sent nothing$"):
        mock.assert_sent()
    with pytest.raises(AssertionError, match=r"^expected at least 1 connection\(s\) opened to "
                                             r"the mock, found 0; connections opened: nothing$"):
        mock.wait_for("open", timeout=0.1)


def test_ping_with_no_connection_is_false(mock_server: Any) -> None:
    """wsmock.ping() with no connection open says no pong came (False), not
    True; with a client open that answers, True."""
    from wsdaemon.pytest_plugin import WsMock

    mock = WsMock(mock_server)
    assert mock.ping(timeout=0.5) is False
    with connect(mock.url):  # its background thread answers pings
        mock.wait_for("open")
        assert mock.ping(timeout=5) is True


def test_refuse_next_keeps_the_subprotocols(mock_server: Any) -> None:
    """wsmock.refuse_next() after wsmock.subprotocols(): the refused
    handshake is refused, and the next one still gets the subprotocol."""
    from websockets.exceptions import InvalidStatus
    from websockets.typing import Subprotocol

    from wsdaemon.pytest_plugin import WsMock

    mock = WsMock(mock_server)
    mock.subprotocols("v2", require=True)
    mock.refuse_next(1, status=503)
    with pytest.raises(InvalidStatus):
        connect(mock.url, subprotocols=[Subprotocol("v2")])
    with connect(mock.url, subprotocols=[Subprotocol("v2")]) as ws:
        assert ws.subprotocol == "v2"
