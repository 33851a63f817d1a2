"""
Hostile and broken clients against the real daemon: each is closed with the
right code or dropped, memory stays bounded, other clients do not notice.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests import wsframes as ws
from tests.daemon import Daemon, free_port

pytestmark = pytest.mark.slow

KEY = "push-key-0123456789abcdef"


def config(admin_port: int, **protocol: object) -> str:
    extra = "\n".join(f"{key} = {value}" for key, value in protocol.items())
    return f"""
[wsdaemon]
listen = tcp:0:interface=127.0.0.1
max_connections_per_ip = 20

[admin]
listen = tcp:{admin_port}:interface=127.0.0.1
api_keys = ops:{KEY}

[protocol]
open_handshake_timeout = 2
max_fragments = 1000
max_outbound_buffer = 256KiB
max_message_rate = 50
{extra}

[route:/echo]
strategy = echo

[route:/shout]
strategy = shout_strategy.shout
"""


@pytest.fixture
def daemon(write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> Daemon:
    env = dict(os.environ)
    thirdparty = str(Path(__file__).resolve().parent.parent / "thirdparty")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [thirdparty, env.get("PYTHONPATH")]))
    d = start_daemon(write_config(config(free_port())), env=env)
    return d


def admin_port_of(daemon: Daemon) -> int:
    text = daemon.wait_for_log("admin API listening on")
    line = next(row for row in text.splitlines() if "admin API listening on" in row)
    return int(line.split("tcp:")[1].split(":")[0])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_raw(daemon: Daemon, path: str = "/echo",
             receive_buffer: int | None = None) -> tuple[socket.socket, bytes]:
    sock = socket.socket()
    if receive_buffer is not None:  # before connecting: no window autotuning
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", daemon.port))
    sock.sendall(ws.handshake_request(path))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake"
        data += chunk
    head, rest = ws.split_response(data)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, rest


def read_close_code(sock: socket.socket, already: bytes = b"") -> int | None:
    """Read until a close frame arrives (or the connection ends); its code."""
    data = already
    try:
        while True:
            closes = [f for f in ws.split_frames(data)[0] if f.opcode == ws.CLOSE]
            if closes:
                return closes[-1].close_code
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
    except (ConnectionResetError, TimeoutError):
        closes = [f for f in ws.split_frames(data)[0] if f.opcode == ws.CLOSE]
        return closes[-1].close_code if closes else None


def round_trip(daemon: Daemon) -> float:
    with connect(f"{daemon.url}/echo") as client:
        started = time.monotonic()
        client.send("ping")
        assert client.recv(timeout=5) == "ping"
        return time.monotonic() - started


def test_frame_announcing_2_to_the_60_bytes(daemon: Daemon) -> None:
    """A frame header announcing 2**60 bytes is closed with 1009; others unaffected."""
    sock, rest = open_raw(daemon)
    header = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 2**60) + os.urandom(4)
    sock.sendall(header + b"x" * 100)
    assert read_close_code(sock, rest) == 1009
    sock.close()
    assert round_trip(daemon) < 1


def test_hundred_thousand_one_byte_fragments(daemon: Daemon) -> None:
    """Hundred thousand one byte fragments."""
    before = rss_kib(daemon.process.pid)
    sock, rest = open_raw(daemon)
    frames = [ws.client_frame(ws.TEXT, b"a", fin=False)]
    frames += [ws.client_frame(ws.CONTINUATION, b"a", fin=False) for _ in range(99_999)]

    def send_all() -> None:
        try:
            sock.sendall(b"".join(frames))
        except OSError:
            pass  # closed before we finished: fine

    # Send from a thread and read at once: the close frame comes early, and
    # a reset (after the close handshake timeout) would discard unread data.
    sender = threading.Thread(target=send_all)
    sender.start()
    assert read_close_code(sock, rest) == 1009
    sender.join(timeout=30)
    sock.close()
    assert rss_kib(daemon.process.pid) - before < 20_000
    assert round_trip(daemon) < 1


@pytest.mark.parametrize("shape", ["one huge header", "too many headers"])
def test_oversized_handshakes_are_refused(daemon: Daemon, shape: str) -> None:
    """A handshake with one huge header or too many headers never upgrades."""
    request = ws.handshake_request("/echo").rstrip(b"\r\n") + b"\r\n"
    if shape == "one huge header":
        request += b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    else:
        request += b"".join(b"X-H%d: v\r\n" % n for n in range(600)) + b"\r\n"
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = b""
        try:
            while chunk := sock.recv(4096):
                response += chunk
        except ConnectionResetError:
            pass
    assert response.startswith(b"HTTP/1.1 400") or response == b""
    assert not response.startswith(b"HTTP/1.1 101")
    assert round_trip(daemon) < 1


def test_handshake_one_byte_at_a_time_is_cut_off(daemon: Daemon) -> None:
    """The handshake deadline (open_handshake_timeout, 2 s here) holds however slowly
    bytes trickle in, and other clients are served meanwhile."""
    request = ws.handshake_request("/echo")
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    started = time.monotonic()
    latencies = []
    cut_off = None
    for byte in request:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            cut_off = time.monotonic() - started
            break
        latencies.append(round_trip(daemon))
        time.sleep(0.25)
        sock.setblocking(False)
        try:
            if sock.recv(1) == b"":
                cut_off = time.monotonic() - started
                break
        except BlockingIOError:
            pass
        except ConnectionResetError:
            cut_off = time.monotonic() - started
            break
        finally:
            sock.setblocking(True)
    sock.close()
    assert cut_off is not None and cut_off < 5, cut_off
    assert max(latencies) < 0.5


def test_slow_reader_is_dropped(daemon: Daemon) -> None:
    """A client that never reads: pushes pile up to max_outbound_buffer, then it is dropped."""
    port = admin_port_of(daemon)
    sock, _ = open_raw(daemon, receive_buffer=4096)
    before = rss_kib(daemon.process.pid)
    body = json.dumps({"route": "/echo", "text": "x" * 60_000}).encode()
    reached = []
    for _ in range(200):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/push", data=body,
                                         headers={"Authorization": f"Bearer {KEY}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            reached.append(json.loads(response.read())["delivered"])
        if reached[-1] == 0:
            break
    assert reached[0] == 1 and reached[-1] == 0, reached
    assert rss_kib(daemon.process.pid) - before < 30_000
    assert "it does not read" in daemon.log()
    sock.close()
    assert round_trip(daemon) < 1


def test_message_rate_limit(daemon: Daemon) -> None:
    """A client over max_message_rate is closed with 1008."""
    with connect(f"{daemon.url}/echo") as client:
        with pytest.raises(ConnectionClosed) as info:
            for n in range(200):
                client.send(f"m{n}")
            while True:
                client.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


def test_connections_per_ip(daemon: Daemon) -> None:
    """Past max_connections_per_ip, one more handshake gets HTTP 429."""
    clients = [connect(f"{daemon.url}/echo") for _ in range(20)]
    try:
        with pytest.raises(InvalidStatus) as info:
            connect(f"{daemon.url}/echo")
        assert info.value.response.status_code == 429
    finally:
        for client in clients:
            client.close()
    assert round_trip(daemon) < 1


def test_strategy_exception_gets_1011_others_unaffected(daemon: Daemon) -> None:
    """Strategy exception gets 1011 others unaffected."""
    with connect(f"{daemon.url}/shout") as bystander, connect(f"{daemon.url}/shout") as victim:
        assert bystander.recv(timeout=5) == victim.recv(timeout=5) == "WELCOME"
        victim.send("explode")
        with pytest.raises(ConnectionClosed) as info:
            victim.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
        bystander.send("still here")
        assert bystander.recv(timeout=5) == "STILL HERE!"
    log = daemon.wait_for_log("the shout strategy exploded")
    assert "failed in message_received" in log and "on /shout" in log


def test_escape_sequences_in_handshake_headers_never_reach_the_log(echo_daemon: Daemon) -> None:
    """Bad handshake headers full of terminal escape sequences are refused with
    a 4xx status that carries none of them, and no raw control character
    (C0, DEL, C1) or bidi override from the requests reaches any log line,
    whichever layer (ours or Autobahn's) refuses them."""
    import base64

    nasty = "\x1b]0;PWNED\x07\x1b[2J\u202e\u009b"
    key = base64.b64encode(os.urandom(16)).decode()
    good = f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    requests = [
        ("/echo", f"Sec-WebSocket-Key: bad{nasty}\r\nSec-WebSocket-Version: 13\r\n"),
        ("/echo", f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13{nasty}\r\n"),
        ("/echo", f"{good}Origin: http://x{nasty}\r\n"),
        ("/echo", f"{good}Origin: http://x%1b%5b2J\r\n"),
        ("/nowhere%1b]0;PWNED%07", f"{good}User-Agent: {nasty}\r\n"),
    ]
    for path, headers in requests:
        with socket.create_connection(("127.0.0.1", echo_daemon.port), timeout=5) as s:
            s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\n{headers}\r\n").encode())
            answer = s.recv(4096)
        status = answer.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 4"), answer
        assert not any(b in answer for b in (b"\x1b", b"\x07", b"\xe2\x80\xae", b"\xc2\x9b"))
    # A good handshake after them: once its line is in the log, so is
    # everything the daemon wrote about the bad ones.
    with connect(f"{echo_daemon.url}/echo") as good:
        port = good.local_address[1]
        echo_daemon.wait_for_log(f"127.0.0.1:{port}")
    log = echo_daemon.log()
    raw = [c for c in log if (ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f
           or c in "\u202e\ufffd"]
    assert not raw, f"raw control characters in the log: {raw!r}"


def test_replies_and_pushes_too_big_to_send_close_with_1009(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """A reply bigger than the route may send (a default reply quoting a
    65,530-byte message; an echo that compression makes bigger) closes that
    client with 1009 and a log line, never a dropped TCP connection; a push
    that one compressing client cannot take still answers 200 with the counts
    (delivered, failed) and reaches the others; retried with the same
    Idempotency-Key it is not sent twice."""
    admin_port = free_port()
    path = write_config(config(admin_port) + """
[route:/deflate]
strategy = echo
compression = yes

[route:/bot]
strategy = scripted
rules = bot.toml
""")
    (path.parent / "bot.toml").write_text('[default]\nreply = "You said: {message}"\n')
    env = dict(os.environ)
    thirdparty = str(Path(__file__).resolve().parent.parent / "thirdparty")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [thirdparty, env.get("PYTHONPATH")]))
    daemon = start_daemon(path, env=env)
    with connect(f"{daemon.url}/bot", max_size=None) as bot:
        bot.send("x" * 65_530)
        with pytest.raises(ConnectionClosed) as closed:
            bot.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with connect(f"{daemon.url}/deflate", compression="deflate", max_size=None) as deflated, \
            connect(f"{daemon.url}/echo", max_size=None) as plain:
        deflated.send(os.urandom(65_536))
        with pytest.raises(ConnectionClosed) as closed:
            deflated.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        with connect(f"{daemon.url}/deflate", compression="deflate", max_size=None) as other:
            body = json.dumps({"all": True, "base64": __import__("base64").b64encode(
                os.urandom(65_536)).decode()}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/push", data=body,
                                             headers={"Authorization": f"Bearer {KEY}"})
            request.add_header("Idempotency-Key", "order-17-shipped")
            with urllib.request.urlopen(request, timeout=5) as answer:
                assert answer.status == 200
                counts = json.loads(answer.read())
            assert (counts["delivered"], counts["failed"]) == (1, 1)  # plain / compressing
            assert len(plain.recv(timeout=5)) == 65_536
            # A retry (the answer was lost, say) with the same key: not sent again.
            with urllib.request.urlopen(request, timeout=5) as answer:
                again = json.loads(answer.read())
            assert again["replayed"] is True and again["delivered"] == 1
            with pytest.raises(TimeoutError):
                plain.recv(timeout=0.5)
            other_body = urllib.request.Request(
                f"http://127.0.0.1:{admin_port}/push", data=b'{"all": true, "text": "x"}',
                headers={"Authorization": f"Bearer {KEY}", "Idempotency-Key": "order-17-shipped"})
            with pytest.raises(urllib.error.HTTPError) as conflict:
                urllib.request.urlopen(other_body, timeout=5)
            assert conflict.value.code == 409
            with pytest.raises(ConnectionClosed) as closed:
                other.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    log = daemon.wait_for_log("a push could not be sent")
    assert "a reply could not be sent" in log and "Traceback" not in log
