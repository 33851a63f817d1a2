"""
The real daemon (twistd -n wsdaemon) on a loopback port, talked to by the
independent `websockets` client and, for what it refuses to send, raw sockets.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from tests import wsframes as ws
from tests.conftest import ECHO_CONFIG
from tests.daemon import Daemon

pytestmark = pytest.mark.slow


def test_echo_text_binary_unicode_empty(echo_daemon: Daemon) -> None:
    """Echo returns text as text and binary as binary, byte for byte."""
    with connect(f"{echo_daemon.url}/echo") as client:
        for message in ("hello", "你好，世界", "", b"", b"\x00\x01\xfe\xff", bytes(range(256))):
            client.send(message)
            reply = client.recv()
            assert reply == message and type(reply) is type(message)


def test_echo_up_to_the_size_limit(echo_daemon: Daemon) -> None:
    """A message of exactly max_message_size comes back; one byte more closes with 1009."""
    with connect(f"{echo_daemon.url}/echo", max_size=None) as client:
        client.send("é" * 32768)  # 65536 bytes of UTF-8
        assert client.recv() == "é" * 32768
        client.send(b"\x07" * 65536)
        assert client.recv() == b"\x07" * 65536
        client.send(b"x" * 65537)
        with pytest.raises(ConnectionClosedError) as info:
            client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_many_clients_at_once(echo_daemon: Daemon) -> None:
    """Twenty clients at once each get their own echo."""
    with ExitStack() as stack:
        clients = [stack.enter_context(connect(f"{echo_daemon.url}/echo")) for _ in range(20)]
        for i, client in enumerate(clients):
            client.send(f"client {i}")
        for i, client in enumerate(clients):
            assert client.recv() == f"client {i}"


def raw_handshake(
    daemon: Daemon, path: str = "/echo", origin: str | None = None
) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    sock.sendall(ws.handshake_request(path, origin=origin))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return sock, data


def read_until_closed(sock: socket.socket) -> bytes:
    """Read until the server closes TCP (Autobahn aborts after the closing handshake)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_invalid_utf8_closes_with_1007(echo_daemon: Daemon) -> None:
    """A text message that is not UTF-8 gets close code 1007; the daemon keeps serving."""
    sock, response = raw_handshake(echo_daemon)
    assert response.startswith(b"HTTP/1.1 101")
    head, rest = ws.split_response(response)
    sock.sendall(ws.client_frame(ws.TEXT, b"ok \xff\xfe not utf-8"))
    data = rest
    while not any(f.opcode == ws.CLOSE for f in ws.parse_frames(data)):
        chunk = sock.recv(4096)
        assert chunk, "closed without a close frame"
        data += chunk
    frames = ws.parse_frames(data)
    assert frames[-1].opcode == ws.CLOSE and frames[-1].close_code == 1007
    sock.sendall(ws.close_frame(1007))  # finish the closing handshake, as clients must
    assert read_until_closed(sock) == b""  # then the server closes TCP
    sock.close()
    with connect(f"{echo_daemon.url}/echo") as client:
        client.send("still here")
        assert client.recv() == "still here"


def test_frames_cut_anywhere_on_a_real_socket(echo_daemon: Daemon) -> None:
    """Mixed frames (small and 16 KiB text and binary, a ping, a fragmented message, one
    past 64 KiB) sent in pieces cut at random places, with pauses so that the daemon
    reads them apart: every message comes back whole and in order, the ping is answered."""
    import random
    import time

    big = "é" * 8192
    frames = [
        (ws.client_frame(ws.TEXT, b"one"), (ws.TEXT, b"one")),
        (ws.client_frame(ws.BINARY, bytes(range(256)) * 64), (ws.BINARY, bytes(range(256)) * 64)),
        (ws.client_frame(ws.PING, b"p"), (ws.PONG, b"p")),
        (ws.client_frame(ws.TEXT, big.encode()), (ws.TEXT, big.encode())),
        (ws.client_frame(ws.TEXT, b"fr", fin=False) + ws.client_frame(ws.CONTINUATION, b"ag"),
         (ws.TEXT, b"frag")),
        (ws.client_frame(ws.BINARY, b"\x05" * 65000), (ws.BINARY, b"\x05" * 65000)),
        (ws.client_frame(ws.TEXT, b"last"), (ws.TEXT, b"last")),
    ]
    stream = b"".join(frame for frame, _ in frames)
    rng = random.Random(15)
    sock, response = raw_handshake(echo_daemon)
    assert response.startswith(b"HTTP/1.1 101")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _, data = ws.split_response(response)
    at = 0
    while at < len(stream):
        cut = min(len(stream), at + rng.choice((1, 3, 7, 500, 9000, 40000)))
        sock.sendall(stream[at:cut])
        at = cut
        time.sleep(0.002)
    expected = [answer for _, answer in frames]
    got: list[ws.Frame] = []
    while len(got) < len(expected):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(got)} answers"
        data += chunk
        new, data = ws.split_frames(data)
        got += new
    assert [(f.opcode, f.payload) for f in got] == expected
    sock.close()


def test_foreign_origin_gets_403(echo_daemon: Daemon) -> None:
    """A page from a foreign origin is refused with HTTP 403."""
    with pytest.raises(InvalidStatus) as info:
        connect(f"{echo_daemon.url}/echo", origin="http://evil.example")  # type: ignore[arg-type]
    assert info.value.response.status_code == 403


def test_local_origins_and_no_origin_allowed(echo_daemon: Daemon) -> None:
    """Local origins and no origin allowed."""
    for origin in ("http://localhost:5173", "http://127.0.0.1:8080", None):
        with connect(f"{echo_daemon.url}/echo", origin=origin) as client:  # type: ignore[arg-type]
            client.send("hi")
            assert client.recv() == "hi"


def test_unknown_path_is_404(echo_daemon: Daemon) -> None:
    """A handshake on a path that is no route gets HTTP 404."""
    with pytest.raises(InvalidStatus) as info:
        connect(f"{echo_daemon.url}/nope")
    assert info.value.response.status_code == 404


def test_demo_page_lists_routes(echo_daemon: Daemon) -> None:
    """GET / serves the demo page listing the configured routes."""
    with urllib.request.urlopen(f"{echo_daemon.http}/") as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/html")
        body = response.read().decode()
    assert '"path": "/echo"' in body and '<script src="/_wsdaemon/demo.js">' in body
    # The page's script (served apart, for the CSP) opens the WebSocket.
    with urllib.request.urlopen(f"{echo_daemon.http}/_wsdaemon/demo.js") as response:
        assert response.headers["content-type"].startswith("text/javascript")
        assert "new WebSocket" in response.read().decode()


def test_plain_get_on_route_shows_no_status_page(echo_daemon: Daemon) -> None:
    """Autobahn's status page (which advertises its version) is off."""
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{echo_daemon.http}/echo")
    assert info.value.code == 426
    assert b"autobahn" not in info.value.read().lower()


def test_startup_line_is_true_with_nvx_off(write_config: Callable[..., Path],
                                           start_daemon: Callable[..., Daemon]) -> None:
    """With AUTOBAHN_USE_NVX=0 the startup line claims no NVX anywhere, and
    whole frames still echo (masking never used NVX)."""
    daemon = start_daemon(write_config(ECHO_CONFIG),
                          env=dict(os.environ, AUTOBAHN_USE_NVX="0"))
    with connect(f"{daemon.url}/echo") as client:
        client.send("x" * 5000)
        assert client.recv(timeout=5) == "x" * 5000
    log = daemon.wait_for_log("starting with")
    line = next(line for line in log.splitlines() if "starting with" in line)
    assert "NVX" not in line.replace("NVX off or not built", "")
    assert "UTF-8 validator: pure Python" in line


def test_connections_are_logged(echo_daemon: Daemon) -> None:
    """Startup names version, routes, endpoints and NVX; connections are logged."""
    with connect(f"{echo_daemon.url}/echo") as client:
        client.send("x")
        client.recv()
    log = echo_daemon.wait_for_log("code 1000")
    assert "wsdaemon 0" in log or "wsdaemon " in log
    assert "Autobahn's UTF-8 validator: NVX" in log
    assert "masking with websockets' C apply_mask" in log
    assert "whole data frames read without Autobahn's parser (websockets' C apply_mask)" in log
    assert "speed path" not in log  # none is off
    assert "epoll loop without a log context per event" in log
    assert "route /echo: strategy echo" in log
    assert f"listening on tcp:{echo_daemon.port}:interface=127.0.0.1" in log
    assert "connected to /echo" in log and "left /echo" in log
