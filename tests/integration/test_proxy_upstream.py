"""
A proxy route against a real upstream (an independent websockets server)
that misbehaves: messages over the route's limits, a wrong handshake answer;
what reaches it (non-ASCII headers); what a recording is on disk, with one
daemon and with several workers.
"""

from __future__ import annotations

import json
import stat
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

#: What the upstream sends for each command; the route's limits are 4 KiB
#: per message, 1 KiB per frame, 8 frames per message. (websockets sends a
#: list as one frame per item, then an empty final frame.)
SENDS: dict[str, Any] = {
    "exact": ["m" * 1024] * 4,
    "eight": ["f"] * 7,
    "over-message": ["m" * 1024] * 4 + ["m"],
    "over-frame": "m" * 1025,
    "over-fragments": ["f"] * 8,
}


class Upstream:
    """Sends what it is asked for; remembers each handshake's headers and the
    close code each connection got from the daemon."""

    def __init__(self) -> None:
        self.port = free_port()
        self.headers: list[dict[str, str]] = []
        self.closes: list[int | None] = []
        self.server = serve(self.handle, "127.0.0.1", self.port,
                            process_request=self.check, process_response=self.answer)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def check(self, connection: ServerConnection, request: Any) -> Any:
        self.headers.append({k.lower(): v for k, v in request.headers.raw_items()})
        return None

    def answer(self, connection: ServerConnection, request: Any, response: Any) -> Any:
        if request.path == "/wrong-accept":
            del response.headers["Sec-WebSocket-Accept"]
            response.headers["Sec-WebSocket-Accept"] = "d3JvbmcgYWNjZXB0IGtleSE="
        return response

    def handle(self, ws: ServerConnection) -> None:
        try:
            for command in ws:
                ws.send(SENDS.get(str(command), command))
        except ConnectionClosed:
            pass
        received = ws.protocol.close_rcvd
        self.closes.append(received.code if received else None)

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.stop()


def proxy_config(upstream: Upstream, extra: str = "", workers: int = 1) -> str:
    return f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1
        workers = {workers}

        [route:/limited]
        strategy = proxy
        upstream = ws://127.0.0.1:{upstream.port}/
        max_message_size = 4KiB
        max_frame_size = 1KiB
        max_fragments = 8
        {extra}
    """


def wait_for(check: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_upstream_messages_over_the_route_limits_close_both_sides_with_1009(
        upstream: Upstream, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """At the route's limits (4 KiB in 1 KiB frames, 8 fragments) upstream
    messages go through; one byte or one frame over (message, frame,
    fragments) the client gets 1009 with a reason naming the limit, the
    upstream gets 1009, the daemon logs it, and the route keeps serving."""
    daemon = start_daemon(write_config(proxy_config(upstream)))
    with connect(f"{daemon.url}/limited") as ws:
        ws.send("exact")
        assert ws.recv(timeout=5) == "m" * 4096
        ws.send("eight")
        assert ws.recv(timeout=5) == "f" * 7
    for command, limit in [("over-message", "max_message_size"),
                           ("over-frame", "max_frame_size"),
                           ("over-fragments", "max_fragments")]:
        with connect(f"{daemon.url}/limited") as ws:
            ws.send(command)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
        assert closed.value.rcvd is not None, command
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            1009, f"upstream message over {limit}")
        daemon.wait_for_log(f"over the route's {limit}")
    wait_for(lambda: len(upstream.closes) == 4, "the upstream's connections to close")
    assert sorted(upstream.closes, key=str) == [1000, 1009, 1009, 1009]
    with connect(f"{daemon.url}/limited") as ws:
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"


def test_a_wrong_accept_from_the_upstream_is_a_502(
        upstream: Upstream, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """An upstream answering 101 with a wrong Sec-WebSocket-Accept is a bad
    gateway: the client's handshake gets 502, and the log says why."""
    daemon = start_daemon(write_config(proxy_config(upstream, f"""
        [route:/wrong]
        strategy = proxy
        upstream = ws://127.0.0.1:{upstream.port}/wrong-accept
    """)))
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{daemon.url}/wrong")
    assert refused.value.response.status_code == 502
    daemon.wait_for_log("Sec-WebSocket-Accept")


def test_non_ascii_header_values_reach_the_upstream_unchanged(
        upstream: Upstream, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """A header value in UTF-8 (café) reaches the upstream as the same
    bytes, not encoded a second time."""
    daemon = start_daemon(write_config(proxy_config(upstream, "pass_headers = x-note")))
    # websockets writes header values as ISO-8859-1: these are UTF-8 bytes.
    with connect(f"{daemon.url}/limited",
                 additional_headers={"X-Note": "café".encode().decode("latin-1")}) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
    assert upstream.headers[-1]["x-note"].encode("latin-1") == "café".encode()


def test_recordings_are_private_and_bounded_in_bytes(
        upstream: Upstream, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """A recording is created 0600, and record_max_bytes bounds its bytes
    when the conversation is not ASCII."""
    config = write_config(proxy_config(upstream, """
        record = recordings/live.jsonl
        record_max_bytes = 2200
    """))
    daemon = start_daemon(config)
    with connect(f"{daemon.url}/limited") as ws:
        # The open and the client's message (~1,300 bytes) fit; the echo's
        # line (~630 characters, ~1,130 bytes) would only if characters
        # were bytes.
        ws.send("é" * 500)
        assert ws.recv(timeout=5) == "é" * 500
    recording = config.parent / "recordings" / "live.jsonl"
    daemon.wait_for_log("record_max_bytes")
    assert stat.S_IMODE(recording.stat().st_mode) == 0o600
    assert recording.stat().st_size <= 2200
    assert [json.loads(line)["from"] for line in recording.read_text().splitlines()
            if '"message"' in line] == ["client"]


def test_recording_names_are_unique_across_workers(
        upstream: Upstream, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """Two workers record to one file: 40 conversations have 40 names, each
    holding its own client's messages only, and wsdaemon-replay lists 40."""
    config = write_config(proxy_config(upstream, "record = live.jsonl", workers=2))
    daemon = start_daemon(config)
    daemon.wait_for_log("ready: 2 workers listening", timeout=20)
    for number in range(40):
        with connect(f"{daemon.url}/limited") as ws:
            ws.send(f"client {number}")
            assert ws.recv(timeout=5) == f"client {number}"
    recording = config.parent / "live.jsonl"
    wait_for(lambda: recording.read_text().count('"close"') == 40, "40 closes recorded")
    events = [json.loads(line) for line in recording.read_text().splitlines()]
    talks: dict[str, set[str]] = {}
    for event in events:
        if event["event"] == "message":
            talks.setdefault(event["conversation"], set()).add(event["text"])
    assert len({e["conversation"] for e in events if e["event"] == "open"}) == 40
    assert sorted(talks.values(), key=lambda t: int(next(iter(t)).split()[1])) == [
        {f"client {n}"} for n in range(40)]
    listed = subprocess.run([sys.executable, "-m", "wsdaemon.strategies.proxy.replay",
                             str(recording), "--list"], capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 40
