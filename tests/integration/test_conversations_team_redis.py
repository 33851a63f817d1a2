"""
The operators as one team across two daemons sharing a real redis-server
(issue 22, item 4): an operator connected through both daemons is
available as long as one live daemon holds a connection (no offline flap
when one of them closes or dies); automatic routing never gives an
operator more than its capacity when both daemons route at the same
moment; who has a conversation open is seen from the other daemon.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from tests.daemon import Daemon
from tests.operator_client import next_of, operator_desk, request, structured, the_conversation
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdefgh"
#: Seconds between heartbeats: a daemon silent 3 of them is gone.
HEARTBEAT = 0.5


def config_text(redis: RedisServer, shared: Path, name: str, routing: str) -> str:
    return f"""
[wsdaemon]
listen = tcp:0:interface=127.0.0.1

[protocol]
identity = anonymous
identity_secret_file = {shared / "identity.key"}

[operator]
model = conversations
routing = {routing}
tokens =
    alice:{ALICE}
    bob:{BOB}
ack_message = Thanks!
offline_message =
fallback_after = 0

[broker]
backend = redis
url = {redis.url}
prefix = team:
timeout = 1
heartbeat = {HEARTBEAT}
daemon_id = {name}

[route:/support]
strategy = operator
"""


class Pair:
    """Daemons A and B on one Redis; one may be killed by the test."""

    def __init__(self, redis: RedisServer, tmp_path: Path, routing: str) -> None:
        self.daemons: dict[str, Daemon] = {}
        self.killed: set[str] = set()
        for name in ("a", "b"):
            config = tmp_path / f"{name}.ini"
            config.write_text(config_text(redis, tmp_path, name, routing), encoding="utf-8")
            daemon = Daemon(config)
            self.daemons[name] = daemon
            daemon.wait_for_log("live conversations loaded", timeout=10)
            daemon.wait_for_log("redis: connected", timeout=10)

    def kill(self, name: str) -> None:
        self.killed.add(name)
        self.daemons[name].kill()

    def stop(self) -> None:
        for name, daemon in self.daemons.items():
            if name not in self.killed:
                assert daemon.stop() == 0


@pytest.fixture
def manual(redis_server: RedisServer, tmp_path: Path) -> Iterator[Pair]:
    pair = Pair(redis_server, tmp_path, "manual")
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def auto(redis_server: RedisServer, tmp_path: Path) -> Iterator[Pair]:
    pair = Pair(redis_server, tmp_path, "auto")
    try:
        yield pair
    finally:
        pair.stop()


def _bob(availability: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["operator"]["name"] == "bob" and \
        e["operator"]["availability"] == availability


def _team_events(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every team event C{ws} gets in the next C{seconds}."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            break
        if event.get("type") == "team":
            got.append(event["operator"])
    return got


def _availability(ws: ClientConnection, name: str) -> str | None:
    team = request(ws, {"type": "team"}, f"team-{time.monotonic()}")
    return {m["name"]: m["availability"] for m in team.get("team", [])}.get(name)


def _bob_on_both(pair: Pair) -> tuple[ClientConnection, ClientConnection, ClientConnection]:
    """Alice watching on A; Bob connected to A and to B, online (said through B)."""
    a, b = pair.daemons["a"], pair.daemons["b"]
    alice = operator_desk(a, ALICE)
    bob_on_a = operator_desk(a, BOB)
    bob_on_b = operator_desk(b, BOB)
    answer = request(bob_on_b, {"type": "availability", "availability": "online"})
    assert answer["type"] == "ok", answer
    next_of(alice, "team", where=_bob("online"))
    return alice, bob_on_a, bob_on_b


def test_closing_one_of_two_consoles_never_shows_offline(manual: Pair) -> None:
    """
    Bob is connected through A and B; he closes his console on B. A still
    holds his other connection, so nobody ever sees him offline: Alice on
    A hears no offline, and B's team lists him online at every look. Once
    his connection to A closes too, he is offline for everyone.
    """
    alice, bob_on_a, bob_on_b = _bob_on_both(manual)
    watcher = operator_desk(manual.daemons["b"], ALICE)
    bob_on_b.close()
    seen = []
    for _ in range(10):
        seen.append(_availability(watcher, "bob"))
        time.sleep(0.1)
    heard = _team_events(alice, 1.0)
    assert [e for e in heard if e["name"] == "bob" and e["availability"] != "online"] == []
    assert set(seen) == {"online"}, seen
    bob_on_a.close()
    next_of(alice, "team", where=_bob("offline"))
    deadline = time.monotonic() + 5
    while _availability(watcher, "bob") != "offline" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _availability(watcher, "bob") == "offline"
    alice.close()
    watcher.close()


def test_a_dead_daemon_does_not_take_a_held_operator_offline(manual: Pair) -> None:
    """
    Bob said he is online through B and is connected to A too; B dies
    (SIGKILL). After three heartbeats A takes B for gone, but Bob still
    has a connection to A: he stays online (Alice hears no offline). When
    that connection closes, he goes offline.
    """
    alice, bob_on_a, bob_on_b = _bob_on_both(manual)
    time.sleep(3 * HEARTBEAT + 1.5)  # A's link settled: it lets gone daemons' operators go
    manual.kill("b")
    heard = _team_events(alice, 3 * HEARTBEAT + 2.0)
    assert [e for e in heard if e["name"] == "bob" and e["availability"] != "online"] == []
    assert _availability(alice, "bob") == "online"
    bob_on_a.close()
    next_of(alice, "team", where=_bob("offline"))
    alice.close()


def _assigned(ws: ClientConnection, rid: str) -> dict[str, str | None]:
    listed = request(ws, {"type": "conversations", "view": "all"}, rid)
    assert listed["type"] == "ok", listed
    return {c["id"]: c["assignee"] for c in listed["conversations"]}


def test_capacity_holds_when_both_daemons_route_at_once(auto: Pair,
                                                        redis_server: RedisServer) -> None:
    """
    Automatic routing, Bob online with a capacity of 1, nobody else: two
    visitors, one on A and one on B, write at the same moment (Redis holds
    both commits back a moment, CLIENT PAUSE WRITE, so both daemons decide
    on Bob's load 0). One conversation goes to Bob, the other waits for
    room: Bob never holds more than his capacity, on either daemon. When
    he resolves his, the waiting one comes to him.
    """
    a, b = auto.daemons["a"], auto.daemons["b"]
    bob = operator_desk(a, BOB)
    watcher = operator_desk(b, ALICE)
    assert request(bob, {"type": "capacity", "n": 1})["type"] == "ok"
    assert request(bob, {"type": "availability", "availability": "online"})["type"] == "ok"
    deadline = time.monotonic() + 5
    while _availability(watcher, "bob") != "online" and time.monotonic() < deadline:
        time.sleep(0.05)
    visitors = {name: structured(daemon) for name, daemon in (("a", a), ("b", b))}
    for ws in visitors.values():
        ws.send(json.dumps({"type": "hello"}))
        next_of(ws, "welcome")
    assert redis_server.command("CLIENT", "PAUSE", "400", "WRITE") == "+OK"
    start = threading.Barrier(len(visitors))

    def write(ws: ClientConnection) -> None:
        start.wait()
        ws.send(json.dumps({"type": "message", "id": "c-1", "text": "Hello?"}))

    writers = [threading.Thread(target=write, args=(ws,)) for ws in visitors.values()]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    for ws in visitors.values():
        next_of(ws, "ack", timeout=10)
    time.sleep(0.5)  # each daemon took the other's commit
    for desk, rid in ((bob, "on-a"), (watcher, "on-b")):
        assigned = _assigned(desk, rid)
        assert len(assigned) == 2, assigned
        assert sorted(map(str, assigned.values())) == ["None", "bob"], (rid, assigned)
    assert [m["load"] for m in request(watcher, {"type": "team"}, "t")["team"]
            if m["name"] == "bob"] == [1]
    mine = next(c for c, who in _assigned(bob, "mine").items() if who == "bob")
    assert request(bob, {"type": "resolve", "conversation": mine}, "res")["type"] == "ok"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = _assigned(watcher, f"after-{time.monotonic()}")
        if list(now.values()) == ["bob"]:
            break
        time.sleep(0.1)
    assert list(now.values()) == ["bob"], now
    for ws in (*visitors.values(), bob, watcher):
        ws.close()


def _viewing(ws: ClientConnection, conversation: str, operators: list[str],
             timeout: float = 5) -> dict[str, Any]:
    return next_of(ws, "viewing", timeout=timeout,
                   where=lambda e: e["conversation"] == conversation
                   and e["operators"] == operators)


def test_viewing_is_seen_from_the_other_daemon(manual: Pair) -> None:
    """
    Alice on A opens a conversation: Bob on B is told she views it, and
    B's list says so; she closes it: Bob is told nobody does. She opens it
    again and her connection drops: nobody views it. Opened once more, A
    dies (SIGKILL): after three heartbeats B says nobody views it.
    """
    a, b = manual.daemons["a"], manual.daemons["b"]
    visitor = structured(a)
    visitor.send(json.dumps({"type": "hello"}))
    next_of(visitor, "welcome")
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "Hello?"}))
    next_of(visitor, "ack")
    bob = operator_desk(b, BOB)
    conversation = the_conversation(bob)
    alice = operator_desk(a, ALICE)
    assert request(alice, {"type": "open", "conversation": conversation}, "o1")["type"] == "ok"
    _viewing(bob, conversation, ["alice"])
    listed = request(bob, {"type": "conversations", "view": "all"}, "l1")
    assert [c["viewing"] for c in listed["conversations"]] == [["alice"]]
    assert request(alice, {"type": "close"}, "c1")["type"] == "ok"
    _viewing(bob, conversation, [])
    assert request(alice, {"type": "open", "conversation": conversation}, "o2")["type"] == "ok"
    _viewing(bob, conversation, ["alice"])
    alice.close()
    _viewing(bob, conversation, [])
    alice = operator_desk(a, ALICE)
    assert request(alice, {"type": "open", "conversation": conversation}, "o3")["type"] == "ok"
    _viewing(bob, conversation, ["alice"])
    manual.kill("a")
    _viewing(bob, conversation, [], timeout=3 * HEARTBEAT + 5)
    listed = request(bob, {"type": "conversations", "view": "all"}, "l2")
    assert [c["viewing"] for c in listed["conversations"]] == [[]]
    bob.close()


def test_a_daemon_started_later_learns_who_views(manual: Pair, redis_server: RedisServer,
                                                 tmp_path: Path) -> None:
    """
    Alice on A has a conversation open when daemon C starts: C asks the
    others what their connections view, and Bob on C sees Alice viewing it.
    """
    a = manual.daemons["a"]
    visitor = structured(a)
    visitor.send(json.dumps({"type": "hello"}))
    next_of(visitor, "welcome")
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "Hello?"}))
    next_of(visitor, "ack")
    alice = operator_desk(a, ALICE)
    conversation = the_conversation(alice)
    assert request(alice, {"type": "open", "conversation": conversation}, "o1")["type"] == "ok"
    config = tmp_path / "c.ini"
    config.write_text(config_text(redis_server, tmp_path, "c", "manual"), encoding="utf-8")
    c = Daemon(config)
    try:
        c.wait_for_log("live conversations loaded", timeout=10)
        bob = operator_desk(c, BOB)
        deadline = time.monotonic() + 5
        while True:
            listed = request(bob, {"type": "conversations", "view": "all"},
                             f"l-{time.monotonic()}")
            viewing = [s["viewing"] for s in listed["conversations"]]
            if viewing == [["alice"]] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert viewing == [["alice"]], listed
        bob.close()
    finally:
        assert c.stop() == 0
    alice.close()
    visitor.close()
