"""
strategy = webhook on the real daemon, with the websockets client and a real
HTTP backend started by the test (http.server in a thread, on 127.0.0.1,
HTTP/1.1 keep-alive) that verifies every signature with the standardwebhooks
package: events and their order, text and JSON answers, state, the connect
refusal, a backend that is down; hostile backends: a huge answer, one that
never answers, invalid JSON. Other clients are unaffected.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.daemon import Daemon, free_port

pytestmark = pytest.mark.slow

JWT_SECRET = "a-jwt-secret-for-the-webhook-tests-0123456789"
OLD = "whsec_" + base64.b64encode(b"old-secret-of-24-bytes!!").decode()
NEW = "whsec_" + base64.b64encode(b"new-secret-of-24-bytes!!").decode()


class Backend:
    """The team's backend: answers by path, records the verified events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.unverified = 0
        #: TCP connections the daemon made to it (one handler each).
        self.connections = 0
        self.stop = threading.Event()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # headers and body in one write (no Nagle wait per answer)

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                backend.connections += 1
                super().setup()

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    # Each key alone verifies: either side of a rotation works.
                    Webhook(OLD).verify(body, headers)
                    event = Webhook(NEW).verify(body, headers)
                except Exception:
                    backend.unverified += 1
                    self.answer(401, "text/plain", b"bad signature")
                    return
                backend.events.append((self.path, event))
                backend.handle(self, self.path, event)

            def answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, handler: Any, path: str, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "disconnect":
            handler.answer(204, "text/plain", b"")
        elif path == "/refuse" and kind == "connect":
            handler.answer(403, "text/plain", b"no")
        elif path == "/named" and kind == "connect":
            user = event["query"].partition("user=")[2]
            handler.answer(200, "application/json", json.dumps({"client_id": user}).encode())
        elif path == "/named":
            handler.answer(200, "text/plain", f"{event['client_id']}: {event['message']}".encode())
        elif kind == "connect":
            handler.answer(200, "application/json", json.dumps(
                {"messages": [{"text": f"welcome {event['client_id']}"}],
                 "state": {"n": 0}}).encode())
        elif path == "/echo":
            handler.answer(200, "text/plain; charset=utf-8",
                           f"echo: {event['message']}".encode())
        elif path == "/json":
            n = event["state"]["n"] + 1
            handler.answer(200, "application/json", json.dumps(
                {"messages": [{"text": f"{n}: {event['message']}"},
                              {"binary_b64": base64.b64encode(bytes([n])).decode()}],
                 "state": {"n": n},
                 "close": {"code": 4000, "reason": "three"} if n == 3 else None}).encode())
        elif path == "/late":
            time.sleep(0.5)
            handler.answer(204, "text/plain", b"")
        elif path == "/slow":
            time.sleep(0.005)
            handler.answer(200, "text/plain", event["message"][:12].encode())
        elif path == "/huge":
            handler.answer(200, "text/plain", b"x" * (1024 * 1024))
        elif path == "/huge-stream":  # no Content-Length: read until the end
            handler.send_response(200)
            handler.send_header("content-type", "text/plain")
            handler.send_header("connection", "close")
            handler.end_headers()
            handler.close_connection = True
            try:
                for _ in range(64):
                    handler.wfile.write(b"y" * 16384)
                    handler.wfile.flush()
            except OSError:
                pass  # the daemon stopped reading: what it should do
        elif path == "/never":
            self.stop.wait(15)
        elif path == "/invalid":
            handler.answer(200, "application/json", b"{oops")

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, kind: str, timeout: float = 5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, event in self.events:
                if event["type"] == kind:
                    return event
            time.sleep(0.02)
        raise AssertionError(f"no {kind} event: {self.events}")


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


@pytest.fixture
def daemon(tmp_path: Path, backend: Backend, write_config: Callable[..., Path],
           start_daemon: Callable[..., Daemon]) -> Daemon:
    (tmp_path / "hook.secret").write_text(f"{OLD}\n{NEW}\n")
    (tmp_path / "jwt.secret").write_text(JWT_SECRET)

    def route(path: str, extra: str = "") -> str:
        return (f"[route:{path}]\nstrategy = webhook\n"
                f"url = http://127.0.0.1:{backend.port}{path}\n"
                f"secret_file = hook.secret\npass_headers = x-trace\n{extra}\n")

    down = free_port()
    return start_daemon(write_config("\n".join([
        "[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n",
        route("/echo"), route("/json"), route("/refuse"), route("/named"),
        route("/slow", "max_queue = 2\n"), route("/late"),
        route("/jwt", "identity = jwt\njwt_secret_file = jwt.secret\n"),
        route("/huge", "max_response = 64KiB\n"),
        route("/huge-stream", "max_response = 64KiB\n"),
        route("/never", "timeout = 1\n"),
        route("/invalid"),
        f"[route:/down]\nstrategy = webhook\nurl = http://127.0.0.1:{down}/\n"
        "secret_file = hook.secret\nretries = 1\nretry_backoff = 0.1\n",
    ])))


def closed_code(ws: Any, timeout: float = 5) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=timeout)
    assert closed.value.rcvd is not None, closed.value
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_messages_reach_the_backend_in_order_and_answers_come_back(
        daemon: Daemon, backend: Backend) -> None:
    """connect, messages, disconnect, signed (both secrets verify), in order;
    text answers come back in order; allowed headers only."""
    with connect(f"{daemon.url}/echo?room=7", additional_headers={
            "x-trace": "t-1", "x-other": "no"}) as ws:
        assert ws.recv(timeout=5).startswith("welcome ")
        for i in range(20):
            ws.send(f"m{i}")
        assert [ws.recv(timeout=5) for _ in range(20)] == [f"echo: m{i}" for i in range(20)]
        ws.send("你好，世界")
        assert ws.recv(timeout=5) == "echo: 你好，世界"
    disconnect = backend.wait_for("disconnect")
    assert backend.unverified == 0
    events = [event for _, event in backend.events]
    assert [e["type"] for e in events] == ["connect"] + ["message"] * 21 + ["disconnect"]
    assert [e["seq"] for e in events] == list(range(1, 24))
    connect_event = events[0]
    assert connect_event["query"] == "room=7" and connect_event["headers"] == {"x-trace": "t-1"}
    assert connect_event["route"] == "/echo" and connect_event["client_id"]
    assert {e["session_id"] for e in events} == {connect_event["session_id"]}
    assert disconnect["code"] == 1000


def test_json_answers_state_binary_and_close(daemon: Daemon, backend: Backend) -> None:
    """JSON answers: text and binary messages, state carried to the next
    event, and a close with the backend's code."""
    with connect(f"{daemon.url}/json") as ws:
        ws.recv(timeout=5)
        ws.send("a")
        assert ws.recv(timeout=5) == "1: a" and ws.recv(timeout=5) == b"\x01"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=5) == "2: AP8=" and ws.recv(timeout=5) == b"\x02"
        ws.send("c")
        assert ws.recv(timeout=5) == "3: c" and ws.recv(timeout=5) == b"\x03"
        assert closed_code(ws) == (4000, "three")
    binary = [e for _, e in backend.events if e.get("binary")]
    assert binary and binary[0]["message"] == "AP8="


def test_the_backend_refuses_and_a_backend_down_is_503(daemon: Daemon) -> None:
    """The connect answer's 403 is the client's; a backend that cannot be
    reached (after its retries) refuses with 503 and says so in the log."""
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{daemon.url}/refuse", open_timeout=5)
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as down:
        connect(f"{daemon.url}/down", open_timeout=5)
    assert down.value.response.status_code == 503
    daemon.wait_for_log("(unreachable): connect: cannot reach it after 2 attempts")


@pytest.mark.parametrize(("route", "code", "logged"), [
    ("/huge", 1011, "(too_big)"),
    ("/huge-stream", 1011, "(too_big)"),
    ("/never", 1013, "(timeout)"),
    ("/invalid", 1011, "(invalid): message: the body is not valid JSON"),
])
def test_hostile_backends_close_the_client_with_a_log_line(
        daemon: Daemon, route: str, code: int, logged: str) -> None:
    """A huge answer, no answer, invalid JSON: the client is closed with a
    documented code, the log says why, and other clients carry on."""
    with connect(f"{daemon.url}/echo") as other:
        other.recv(timeout=5)
        with connect(f"{daemon.url}{route}") as ws:
            ws.recv(timeout=5)
            ws.send("hello")
            assert closed_code(ws)[0] == code
        daemon.wait_for_log(logged)
        other.send("still here")
        assert other.recv(timeout=5) == "echo: still here"


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "webhook"
PUSH_KEY = "ops-webhook-test-key-0123456789"


@pytest.mark.parametrize("program", ["backend.py", "backend.mjs"])
def test_the_example_backends_answer_and_push_is_the_return_channel(
        tmp_path: Path, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon], program: str) -> None:
    """examples/webhook (Python and Node.js): they verify the signature,
    answer with state; the push API reaches the client by its client id;
    /metrics has the hook latency histogram, errors and requests in flight."""
    import shutil
    import socket
    import subprocess
    import sys
    import urllib.request

    runner = sys.executable if program.endswith(".py") else shutil.which("node")
    if runner is None:
        pytest.skip("node is not installed")
    (tmp_path / "hook.secret").write_text(f"{OLD}\n{NEW}\n")
    port, admin = free_port(), free_port()
    backend = subprocess.Popen([runner, str(EXAMPLES / program), str(port),
                                str(tmp_path / "hook.secret")])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline and backend.poll() is None
                time.sleep(0.05)
        daemon = start_daemon(write_config(f"""
            [wsdaemon]
            listen = tcp:0:interface=127.0.0.1

            [admin]
            listen = tcp:{admin}:interface=127.0.0.1
            api_keys = ops:{PUSH_KEY}

            [route:/chat]
            strategy = webhook
            url = http://127.0.0.1:{port}/events
            secret_file = hook.secret
        """))
        with connect(f"{daemon.url}/chat") as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "#1: hi"
            ws.send("again")
            assert ws.recv(timeout=5) == "#2: again"
            clients = json.load(urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{admin}/clients",
                headers={"Authorization": f"Bearer {PUSH_KEY}"}), timeout=5))
            client_id = clients["clients"][0]["client_id"]
            pushed = urllib.request.Request(
                f"http://127.0.0.1:{admin}/push",
                data=json.dumps({"client": client_id, "text": "later"}).encode(),
                headers={"Authorization": f"Bearer {PUSH_KEY}"})
            assert json.load(urllib.request.urlopen(pushed, timeout=5))["delivered"] == 1
            assert ws.recv(timeout=5) == "later"
        metrics = urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{admin}/metrics",
            headers={"Authorization": f"Bearer {PUSH_KEY}"}), timeout=5).read().decode()
        # connect, two messages, and the disconnect if it has been answered
        samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines()
                       if line.startswith("wsdaemon_webhook"))
        count = float(samples['wsdaemon_webhook_latency_seconds_count{route="/chat"}'])
        assert count in (3.0, 4.0)
        assert float(samples[
            'wsdaemon_webhook_latency_seconds_bucket{le="+Inf",route="/chat"}']) == count
        assert 'wsdaemon_webhook_in_flight{route="/chat"}' in samples
    finally:
        backend.terminate()
        backend.wait(timeout=5)


def test_the_connect_answer_names_the_client(daemon: Daemon, backend: Backend) -> None:
    """A connect answer's client_id is the client's id: in the next events,
    and in the daemon's log (where the push API's index finds it too)."""
    with connect(f"{daemon.url}/named?user=alice") as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "alice: hi"
    daemon.wait_for_log("client alice)")


def test_a_client_faster_than_the_backend_waits_and_loses_nothing(
        daemon: Daemon, backend: Backend) -> None:
    """With max_queue = 2 and a backend slower than the client, the client
    stops being read while the backend catches up: all 300 messages (2.4 MB)
    are answered, in order, and the client is not closed."""
    count = 300
    with connect(f"{daemon.url}/slow", max_size=None) as ws:
        ws.recv(timeout=5)

        def send_all() -> None:
            for i in range(count):
                ws.send(f"{i:08d}".ljust(8192, "."))

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        answers = [ws.recv(timeout=10) for _ in range(count)]
        sender.join(timeout=10)
    assert answers == [f"{i:08d}....".ljust(12, ".")[:12] for i in range(count)]
    assert "(queue)" not in daemon.log()


def test_identity_claims_reach_the_backend(daemon: Daemon, backend: Backend) -> None:
    """On an identity = jwt route the events carry the verified token's
    claims, and the client id is its subject."""
    import jwt

    token = jwt.encode({"sub": "user-42", "role": "admin", "exp": time.time() + 60},
                       JWT_SECRET, "HS256")
    with connect(f"{daemon.url}/jwt?room=1&access_token={token}") as ws:
        assert ws.recv(timeout=5) == "welcome user-42"
    event = backend.wait_for("connect")
    assert event["client_id"] == "user-42"
    assert event["claims"]["role"] == "admin" and event["claims"]["sub"] == "user-42"
    assert event["query"] == "room=1"  # the token itself is not passed on


def test_the_daemons_stop_sends_the_disconnect_events(daemon: Daemon, backend: Backend) -> None:
    """Stopping the daemon closes clients with 1001 and waits for their last
    events: a message still in flight, then the disconnect behind it."""
    with connect(f"{daemon.url}/late") as ws:
        ws.recv(timeout=5)
        ws.send("just before the stop")
        time.sleep(0.1)  # in flight: the backend answers in 0.5 s
        assert daemon.stop() == 0
    assert backend.wait_for("disconnect", timeout=1)["code"] == 1001


def test_requests_reuse_kept_alive_connections(daemon: Daemon, backend: Backend) -> None:
    """32 clients talking at once: the daemon keeps a connection alive per
    request in flight (max_requests), so 32 x 5 messages take about 32
    connections to the backend, not one per request past the pool's size."""
    clients = [connect(f"{daemon.url}/echo") for _ in range(32)]
    try:
        for ws in clients:
            assert ws.recv(timeout=5).startswith("welcome ")
        for n in range(5):
            for ws in clients:
                ws.send(f"m{n}")
            for ws in clients:
                assert ws.recv(timeout=10) == f"echo: m{n}"
    finally:
        for ws in clients:
            ws.close()
    assert backend.connections <= 40, backend.connections


def test_an_https_backend_signed_by_the_ca_file(
        tmp_path: Path, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """An https backend whose certificate a private CA signed: trusted with
    ca_file (the answer comes back), refused without it (the handshake gets
    503: the backend cannot be reached safely)."""
    import ssl
    from datetime import UTC, datetime

    from wsdaemon.mock.ca import make_authority

    authority = make_authority(tmp_path, datetime.now(UTC))
    server = Backend()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(authority.cert_path, authority.key_path)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    try:
        (tmp_path / "hook.secret").write_text(f"{OLD}\n{NEW}\n")
        url = f"https://127.0.0.1:{server.port}/echo"
        daemon = start_daemon(write_config(
            "[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n\n"
            f"[route:/trusted]\nstrategy = webhook\nurl = {url}\nsecret_file = hook.secret\n"
            f"ca_file = {authority.ca_path}\n\n"
            f"[route:/untrusted]\nstrategy = webhook\nurl = {url}\nsecret_file = hook.secret\n"
            "retries = 0\n"))
        with connect(f"{daemon.url}/trusted") as ws:
            assert ws.recv(timeout=5).startswith("welcome ")
            ws.send("over TLS")
            assert ws.recv(timeout=5) == "echo: over TLS"
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{daemon.url}/untrusted", open_timeout=10)
        assert refused.value.response.status_code in (502, 503)
    finally:
        server.close()
