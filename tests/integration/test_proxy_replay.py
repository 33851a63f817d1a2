"""
Record and replay, round trip: a proxy route relays a conversation with a
real upstream (an independent websockets server), records it; the
wsdaemon-replay command turns the recording into rules; a scripted route
with those rules gives a client the same messages, subprotocol and close.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from tests.daemon import Daemon, free_port

pytestmark = pytest.mark.slow


class Upstream:
    """The real server: greets, answers hello twice (the second later), closes on bye."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen_headers: list[dict[str, str]] = []
        self.server = serve(self.handle, "127.0.0.1", self.port,
                            subprotocols=["chat.v1", "chat.v2"],  # type: ignore[list-item]
                            process_request=self.check)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def check(self, connection: ServerConnection, request: Any) -> Any:
        self.seen_headers.append({k.lower(): v for k, v in request.headers.raw_items()})
        if request.path == "/forbidden":
            return connection.respond(403, "not for you\n")
        return None

    def handle(self, ws: ServerConnection) -> None:
        ws.send("welcome")
        for message in ws:
            if message == "hello":
                ws.send("HELLO")
                time.sleep(0.3)
                ws.send(b"\x00\x01{binary}")
            elif message == "bye":
                ws.close(4000, "done")
                return
            else:
                ws.send(f"unexpected {message}")

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.stop()


def converse(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The client under test: what it sees of one conversation."""
    seen: list[Any] = []
    with connect(url, subprotocols=["chat.v1"],  # type: ignore[list-item]
                 additional_headers=headers or {}) as ws:
        subprotocol = ws.subprotocol
        seen.append(ws.recv(timeout=5))
        ws.send("hello")
        started = time.monotonic()
        seen.append(ws.recv(timeout=5))
        seen.append(ws.recv(timeout=5))
        gap = time.monotonic() - started
        ws.send("bye")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    return {"subprotocol": subprotocol, "messages": seen, "gap": gap,
            "close": (closed.value.rcvd.code, closed.value.rcvd.reason)}


def test_record_then_replay_gives_the_same_conversation(
        upstream: Upstream, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """Through the proxy: the upstream's messages, subprotocol and close code,
    with the client's Authorization passed on; replayed at 2x from the
    recording: the same messages, subprotocol and close, about twice as fast."""
    config = write_config(f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1

        [route:/live]
        strategy = proxy
        upstream = ws://127.0.0.1:{upstream.port}/feed
        record = recordings/live.jsonl
    """)
    daemon = start_daemon(config)
    live = converse(f"{daemon.url}/live", {"Authorization": "Bearer t0k3n"})
    assert live["subprotocol"] == "chat.v1"
    assert live["messages"] == ["welcome", "HELLO", b"\x00\x01{binary}"]
    assert live["close"] == (4000, "done")
    assert live["gap"] >= 0.25
    assert upstream.seen_headers[-1].get("authorization") == "Bearer t0k3n"

    recording = config.parent / "recordings" / "live.jsonl"
    for _ in range(50):
        if recording.exists() and '"close"' in recording.read_text():
            break
        time.sleep(0.05)
    events = [json.loads(line) for line in recording.read_text().splitlines()]
    assert [e["event"] for e in events][0] == "open" and events[-1]["event"] == "close"
    rules = config.parent / "replay.toml"
    made = subprocess.run([sys.executable, "-m", "wsdaemon.strategies.proxy.replay",
                           str(recording), "-o", str(rules), "--speed", "2"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert "nth = 1" in rules.read_text()

    replay_config = write_config("""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1

        [route:/replay]
        strategy = scripted
        rules = replay.toml
    """, name="replay.ini")
    replayer = start_daemon(replay_config)
    replayed = converse(f"{replayer.url}/replay")
    assert replayed["subprotocol"] == live["subprotocol"]
    assert replayed["messages"] == live["messages"]
    assert replayed["close"] == live["close"]
    assert 0.1 <= replayed["gap"] < live["gap"]


def test_refusals_are_passed_on(upstream: Upstream, write_config: Callable[..., Path],
                                start_daemon: Callable[..., Daemon]) -> None:
    """The upstream's refusal reaches the client (403); an upstream that does
    not answer is a 502 naming it and why."""
    nowhere = free_port()
    config = write_config(f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1

        [route:/forbidden]
        strategy = proxy
        upstream = ws://127.0.0.1:{upstream.port}/forbidden

        [route:/nowhere]
        strategy = proxy
        upstream = ws://127.0.0.1:{nowhere}/
        connect_timeout = 2
    """)
    daemon = start_daemon(config)
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{daemon.url}/forbidden")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as unreachable:
        connect(f"{daemon.url}/nowhere")
    assert unreachable.value.response.status_code == 502
    assert unreachable.value.response.reason_phrase == (
        f"upstream ws://127.0.0.1:{nowhere} unreachable: connection refused")


def test_a_wss_upstream_with_its_own_ca(tmp_path: Path, write_config: Callable[..., Path],
                                         start_daemon: Callable[..., Daemon]) -> None:
    """wss:// upstream: verified against upstream_ca; without it (the system's
    CAs) a self-signed upstream is refused (502)."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "up.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "up.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "up.pem", tmp_path / "up.key")
    port = free_port()

    def handler(ws: ServerConnection) -> None:
        for message in ws:
            ws.send(f"secure {message}")

    server = serve(handler, "127.0.0.1", port, ssl=context)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = write_config(f"""
            [wsdaemon]
            listen = tcp:0:interface=127.0.0.1

            [route:/secure]
            strategy = proxy
            upstream = wss://localhost:{port}/
            upstream_ca = {tmp_path / "up.pem"}

            [route:/untrusted]
            strategy = proxy
            upstream = wss://localhost:{port}/
        """)
        daemon = start_daemon(config)
        with connect(f"{daemon.url}/secure") as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "secure hi"
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{daemon.url}/untrusted")
        assert refused.value.response.status_code == 502
    finally:
        server.shutdown()
