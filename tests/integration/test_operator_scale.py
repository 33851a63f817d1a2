"""
The operator queue at a real team's scale and against its own clients, in
the real daemon: 100,000 open items, megabyte messages, caps, failed
commits, undeliverable replies, revoked tokens.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon
from tests.operator_client import Operator
from wsdaemon.strategies.operator.store import _SCHEMA

pytestmark = pytest.mark.slow

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef00"


def config_text(operator_extra: str = "", route_extra: str = "") -> str:
    operator_extra = operator_extra.replace("\n", "\n        ")
    route_extra = route_extra.replace("\n", "\n        ")
    return f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1

        [operator]
        model = queue
        tokens =
            alice:{ALICE}
            bob:{BOB}
        store = state/queue.sqlite3
        lease = 60
        fallback_after = 0
        fallback_when_offline = no
        {operator_extra}

        [protocol]
        # These clients choose their ids (?client_id=).
        identity = claimed

        [route:/support]
        strategy = operator
        ack_message = queued #{{position}} as {{item}}
        {route_extra}
    """


@pytest.fixture
def opened() -> Iterator[list[Any]]:
    connections: list[Any] = []
    yield connections
    for connection in connections:
        connection.close()


def client(daemon: Daemon, client_id: str, opened: list[Any],
           route: str = "/support") -> ClientConnection:
    connection = connect(f"{daemon.url}{route}?client_id={client_id}", max_size=None)
    opened.append(connection)
    return connection


def operator(daemon: Daemon, token: str, opened: list[Any]) -> Operator:
    found = Operator(daemon, token)
    opened.append(found)
    return found


def ask(connection: ClientConnection, text: str) -> str:
    connection.send(text)
    return str(connection.recv(timeout=10))


def fill_store(path: Path, count: int) -> None:
    """Write C{count} open items straight into a new store (the daemon's schema)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA)
    items = [(f"item{n:06d}", "/support", f"client-{n % 5000}", f"question number {n}",
              1000.0 + n, "queued") for n in range(count)]
    items.append(("needle", "/support", "needle-client", "my kangaroo is lost",
                  1000.0 + count, "queued"))
    db.executemany("INSERT INTO items (item_id, route, client_id, text, created_at, state) "
                   "VALUES (?,?,?,?,?,?)", items)
    db.executemany("INSERT INTO messages (client_id, route, item_id, direction, sender, body, "
                   "at) VALUES (?, ?, ?, 'in', 'client', ?, ?)",
                   [(c, r, i, t, at) for i, r, c, t, at, _ in items])
    db.commit()
    db.close()


def test_100k_open_items_greeting_and_pages(write_config: Callable[..., Path],
                                            start_daemon: Callable[..., Daemon],
                                            opened: list[Any]) -> None:
    """With 100,001 open items a new operator is greeted with the first page and
    the total (one bounded message); `list` pages on with `after`, filters by
    client and searches; a new client message is acknowledged at the end of
    the queue."""
    config = write_config(config_text("max_open_total = 200000\nmax_open_per_route = 200000"))
    fill_store(config.parent / "state" / "queue.sqlite3", 100_000)
    daemon = start_daemon(config)
    daemon.wait_for_log("100001 open item(s) restored", timeout=60)

    ws = connect(f"{daemon.url}/operator", additional_headers={
        "Authorization": f"Bearer {ALICE}"}, max_size=None)
    opened.append(ws)
    raw = ws.recv(timeout=10)
    hello = json.loads(raw)
    assert hello["type"] == "hello" and hello["total"] == 100_001
    assert len(hello["items"]) == hello["page_size"] == 100 and hello["more"] is True
    assert len(raw) < 64 * 1024
    assert hello["items"][0]["item_id"] == "item000000"

    alice = operator(daemon, ALICE, opened)
    page = alice.request(type="list", after=hello["next"], limit=1000)
    assert page["type"] == "ok" and len(page["items"]) == 1000 and page["more"]
    assert page["items"][0]["item_id"] == "item000100"
    assert page["items"][0]["order"] > hello["items"][-1]["order"]
    assert [i["item_id"] for i in alice.request(type="list", client="needle-client")["items"]] \
        == ["needle"]
    found = alice.request(type="list", search="KANGAROO")
    assert [i["item_id"] for i in found["items"]] == ["needle"] and found["more"] is False
    assert alice.request(type="list", limit=5000)["type"] == "error"

    newcomer = client(daemon, "newcomer", opened)
    assert ask(newcomer, "am I last?").startswith("queued #100002 ")
    answer = alice.request(type="reply", text="oldest first")
    assert answer["type"] == "ok" and answer["item"]["item_id"] == "item000000"
    assert ask(newcomer, "and now?").startswith("queued #100002 ")


def test_megabyte_and_control_character_messages(write_config: Callable[..., Path],
                                                 start_daemon: Callable[..., Daemon],
                                                 opened: list[Any]) -> None:
    """A 1 MiB message and 11 KB of control characters queue, operators are
    greeted with previews (marked, with the whole length), and `text` fetches
    the whole text in chunks, for items and transcript lines alike."""
    daemon = start_daemon(write_config(config_text(
        "max_item_size = 2MiB", "max_message_size = 2MiB\nmax_frame_size = 2MiB")))
    big = "".join(chr(0x41 + n % 26) for n in range(1024 * 1024))
    controls = "\x01\x1b[2J" * 2750
    assert ask(client(daemon, "big", opened), big).startswith("queued #1 ")
    assert ask(client(daemon, "ctl", opened), controls).startswith("queued #2 ")

    alice = operator(daemon, ALICE, opened)
    items = {i["client_id"]: i for i in alice.hello["items"]}
    assert items["big"]["truncated"] and items["big"]["length"] == len(big)
    assert items["big"]["text"] == big[:500]
    assert items["ctl"]["truncated"] and items["ctl"]["length"] == len(controls)

    def whole(**what: Any) -> str:
        parts, offset = [], 0
        while True:
            answer = alice.request(type="text", offset=offset, **what)
            assert answer["type"] == "ok", answer
            parts.append(answer["text"])
            offset += len(answer["text"])
            if not answer["more"]:
                return "".join(parts)

    assert whole(item=items["big"]["item_id"]) == big
    assert whole(item=items["ctl"]["item_id"]) == controls
    transcript = alice.request(type="transcript", client="big")
    [line] = transcript["entries"]
    assert line["truncated"] and len(line["body"]) == 500 and transcript["more"] is False
    assert whole(seq=line["seq"]) == big


def test_caps_refuse_with_a_clear_answer(write_config: Callable[..., Path],
                                         start_daemon: Callable[..., Daemon],
                                         opened: list[Any]) -> None:
    """Over the per-client, per-route, total and size caps a client is told so
    (and stays connected); nothing accepted is lost; answering frees room."""
    config = config_text("max_open_per_client = 2\nmax_open_per_route = 3\n"
                         "max_open_total = 4\nmax_item_size = 100")
    config += """
        [route:/sales]
        strategy = operator
        ack_message = queued #{position} as {item}
    """
    daemon = start_daemon(write_config(config))
    a = client(daemon, "a", opened)
    assert ask(a, "one").startswith("queued #1")
    assert ask(a, "two").startswith("queued #2")
    assert ask(a, "three") == ("You already have 2 messages waiting for an answer; please "
                               "wait for a reply before sending more.")
    assert ask(a, "é" * 51) == ("Sorry, your message is too long for an operator (at most "
                                "100 bytes).")
    assert ask(client(daemon, "b", opened), "b1").startswith("queued #3")
    full = "Sorry, the queue is full right now. Please try again later."
    assert ask(client(daemon, "c", opened), "c1") == full  # /support has 3
    assert ask(client(daemon, "c", opened, "/sales"), "c2").startswith("queued #4")
    assert ask(client(daemon, "d", opened, "/sales"), "d1") == full  # 4 in all

    alice = operator(daemon, ALICE, opened)
    assert alice.hello["total"] == 4
    assert sorted(i["text"] for i in alice.hello["items"]) == ["b1", "c2", "one", "two"]
    assert alice.request(type="reply", text="answered")["type"] == "ok"
    assert a.recv(timeout=5) == "answered"
    assert ask(a, "three again").startswith("queued #")


def test_failed_commit_leaves_the_item_open(write_config: Callable[..., Path],
                                            start_daemon: Callable[..., Daemon],
                                            opened: list[Any]) -> None:
    """A reply whose commit fails (the database locked by another process for
    longer than the store waits) leaves the item open and answerable, with a
    clear error; a reply holding a lone surrogate is refused before anything
    is stored; the client gets exactly one reply."""
    config = write_config(config_text())
    daemon = start_daemon(config)
    c = client(daemon, "c", opened)
    ask(c, "help")
    alice = operator(daemon, ALICE, opened)
    item_id = alice.hello["items"][0]["item_id"]

    alice._id += 1
    alice.ws.send('{"type": "reply", "text": "bad \\ud800 text", "id": ' + f"{alice._id}}}")
    while True:
        event = json.loads(alice.ws.recv(timeout=5))
        if event.get("id") == alice._id:
            break
    assert event["type"] == "error" and "lone surrogate" in event["error"], event

    locker = sqlite3.connect(config.parent / "state" / "queue.sqlite3", timeout=0)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        failed = alice.request(type="reply", item=item_id, text="first try")
    finally:
        locker.rollback()
        locker.close()
    assert failed["type"] == "error", failed
    assert "could not store the reply" in failed["error"] and "unchanged" in failed["error"]
    listed = alice.request(type="list")
    assert [(i["item_id"], i["state"]) for i in listed["items"]] == [(item_id, "queued")]

    answer = alice.request(type="reply", item=item_id, text="second try")
    assert answer["type"] == "ok", answer
    assert c.recv(timeout=5) == "second try"
    with pytest.raises(TimeoutError):
        c.recv(timeout=0.5)


def test_undeliverable_replies(write_config: Callable[..., Path],
                               start_daemon: Callable[..., Daemon],
                               opened: list[Any]) -> None:
    """A reply bigger than the client's route accepts is refused at the operator
    (the item stays open); a kept message that still cannot be written is
    marked failed and reported, and the ones after it are delivered."""
    daemon = start_daemon(write_config(config_text(
        route_extra="max_message_size = 1KiB\nmax_frame_size = 1KiB")))
    c = client(daemon, "c", opened)
    ask(c, "help")
    alice = operator(daemon, ALICE, opened)
    refused = alice.request(type="reply", text="x" * 2000)
    assert refused["type"] == "error"
    assert "2000 bytes" in refused["error"] and "at most 1024 bytes" in refused["error"]
    assert alice.request(type="list")["total"] == 1
    assert alice.request(type="reply", text="short")["type"] == "ok"
    assert c.recv(timeout=5) == "short"
    c.close()
    time.sleep(0.2)

    # Away, its route is not known: the daemon-wide limit (64 KiB) lets it in.
    assert alice.request(type="push", client="c", text="y" * 2000)["delivered"] == 0
    assert alice.request(type="push", client="c", text="after the big one")["delivered"] == 0
    again = client(daemon, "c", opened)
    assert again.recv(timeout=5) == "after the big one"
    failed = alice.next("undeliverable")
    assert failed["client_id"] == "c" and "PayloadExceeded" in failed["error"]
    entries = alice.request(type="transcript", client="c")["entries"]
    assert [e["failed"] for e in entries if e["direction"] == "out"] == [False, True, False]
    again.close()
    with pytest.raises(TimeoutError):
        client(daemon, "c", opened).recv(timeout=0.5)  # not tried again


def test_reload_revokes_removed_tokens(write_config: Callable[..., Path],
                                       start_daemon: Callable[..., Daemon],
                                       opened: list[Any]) -> None:
    """A reload that removes an operator's token closes its open sessions at
    once with 4001; other operators carry on."""
    config = write_config(config_text())
    daemon = start_daemon(config)
    alice, bob = operator(daemon, ALICE, opened), operator(daemon, BOB, opened)
    config.write_text(config.read_text().replace(f"alice:{ALICE}\n", ""))
    daemon.process.send_signal(signal.SIGHUP)
    with pytest.raises(ConnectionClosed) as closed:
        alice.next("never", timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    assert closed.value.rcvd.reason == "operator token revoked"
    assert bob.request(type="list")["type"] == "ok"
    daemon.wait_for_log("its token was revoked")


def test_operator_that_stops_reading_is_cut_off(write_config: Callable[..., Path],
                                                start_daemon: Callable[..., Daemon],
                                                opened: list[Any]) -> None:
    """An operator that never reads is dropped once max_outbound_buffer bytes wait
    for it; the queue and the other operators carry on."""
    import base64
    import os
    import socket

    daemon = start_daemon(write_config(config_text(
        "max_outbound_buffer = 64KiB\npreview_chars = 10000\nmax_open_per_client = 0",
        "max_message_rate = 0")))
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", daemon.port))
    opened.append(stuck)
    key = base64.b64encode(os.urandom(16)).decode()
    stuck.sendall((f"GET /operator HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Authorization: Bearer {BOB}\r\n\r\n").encode())
    bob_seen = daemon.wait_for_log("operator bob online")
    assert "does not read" not in bob_seen
    sender = client(daemon, "flood", opened)
    for n in range(400):
        sender.send(f"{n:04d}" + "z" * 9996)
        if n % 50 == 49:
            for _ in range(50):
                sender.recv(timeout=10)
            if "does not read" in daemon.log():
                break
    daemon.wait_for_log("dropping operator bob", timeout=10)
    alice = operator(daemon, ALICE, opened)
    assert alice.hello["operators_online"] == 1 and alice.hello["total"] >= 50
    assert alice.request(type="list", limit=1)["type"] == "ok"
