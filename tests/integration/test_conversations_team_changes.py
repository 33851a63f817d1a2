"""
The team as it changes while daemons run (issue 22, sections 13 and 15):
a capacity lowered on one daemon is what routing on another respects at
once (the commit script checks the stored one); a reload that adds an
operator's token makes it a member at once, on every daemon sharing Redis,
so every inbox can assign it before it connects; one that removes a token
takes the name out of the team once it is offline and free. Real daemons
(twistd), real redis-server, independent WebSocket clients.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from tests.daemon import Daemon
from tests.integration.test_conversations_team_redis import (
    ALICE,
    BOB,
    Pair,
    _assigned,
    _availability,
    config_text,
)
from tests.operator_client import next_of, operator_desk, request, structured
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

CAROL = "carol-token-0123456789abcdef"


@pytest.fixture
def auto(redis_server: RedisServer, tmp_path: Path) -> Iterator[Pair]:
    pair = Pair(redis_server, tmp_path, "auto")
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def manual(redis_server: RedisServer, tmp_path: Path) -> Iterator[Pair]:
    pair = Pair(redis_server, tmp_path, "manual")
    try:
        yield pair
    finally:
        pair.stop()


def _team(ws: ClientConnection) -> dict[str, dict[str, Any]]:
    answer = request(ws, {"type": "team"}, f"team-{time.monotonic()}")
    assert answer["type"] == "ok", answer
    return {m["name"]: m for m in answer["team"]}


def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def _capacity_of(ws: ClientConnection, name: str) -> int | None:
    member = _team(ws).get(name)
    return None if member is None else int(member["capacity"])


def test_a_capacity_lowered_on_one_daemon_holds_on_the_other(
        auto: Pair, redis_server: RedisServer) -> None:
    """
    Automatic routing, Bob (connected to A) online with a capacity of 2 and
    one conversation. Redis holds writes back (CLIENT PAUSE WRITE): Bob
    lowers his capacity to 1 on A, and a moment later a visitor writes on
    B, which still knows capacity 2 and gives the conversation to Bob.
    When Redis lets go, A's entry is written first and B's commit is
    checked against it: refused, B learns capacity 1, and the visitor
    waits for room. Bob never holds more than his capacity, on either
    daemon. (Before: B's commit landed, Bob held 2 with a capacity of 1.)
    """
    a, b = auto.daemons["a"], auto.daemons["b"]
    bob = operator_desk(a, BOB)
    watcher = operator_desk(b, ALICE)
    assert request(bob, {"type": "capacity", "n": 2})["type"] == "ok"
    assert request(bob, {"type": "availability", "availability": "online"})["type"] == "ok"
    _until(lambda: _availability(watcher, "bob") == "online" and _capacity_of(watcher, "bob") == 2)
    first = structured(a)
    first.send(json.dumps({"type": "hello"}))
    next_of(first, "welcome")
    first.send(json.dumps({"type": "message", "id": "c-1", "text": "Hello?"}))
    next_of(first, "ack", timeout=10)
    _until(lambda: _team(watcher)["bob"]["load"] == 1)
    second = structured(b)
    second.send(json.dumps({"type": "hello"}))
    next_of(second, "welcome")
    assert redis_server.command("CLIENT", "PAUSE", "600", "WRITE") == "+OK"
    assert request(bob, {"type": "capacity", "n": 1}, "lower")["type"] == "ok"
    time.sleep(0.1)  # A's entry is on its way (held by Redis) before B's commit
    second.send(json.dumps({"type": "message", "id": "c-1", "text": "Me too"}))
    next_of(second, "ack", timeout=10)
    time.sleep(0.5)  # each daemon took the other's commit
    for desk, rid in ((bob, "on-a"), (watcher, "on-b")):
        assigned = _assigned(desk, rid)
        assert sorted(map(str, assigned.values())) == ["None", "bob"], (rid, assigned)
    assert _team(watcher)["bob"]["capacity"] == 1
    assert _team(watcher)["bob"]["load"] == 1
    for ws in (first, second, bob, watcher):
        ws.close()


def _joined(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["operator"]["name"] == name and not e["operator"].get("left")


def _left(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["operator"]["name"] == name and e["operator"].get("left") is True


def _with_carol(text: str) -> str:
    return text.replace(f"    bob:{BOB}\n", f"    bob:{BOB}\n    carol:{CAROL}\n")


def _request(ws: ClientConnection, payload: dict[str, Any], rid: str,
             seen: list[dict[str, Any]]) -> dict[str, Any]:
    """L{request}, keeping every other message read meanwhile in C{seen}."""
    ws.send(json.dumps({"id": rid, **payload}))
    while True:
        message = json.loads(ws.recv(timeout=5))
        if message.get("id") == rid and message.get("type") in ("ok", "error"):
            return message  # type: ignore[no-any-return]
        seen.append(message)


def test_a_reload_adding_a_token_enrols_on_both_daemons(
        manual: Pair, redis_server: RedisServer, tmp_path: Path) -> None:
    """
    Alice watches on A and on B. A's configuration gains Carol's token and
    A reloads (SIGHUP); B's stays as it was. Both of Alice's inboxes are
    told Carol joined (offline) and list her, before Carol ever connects;
    Alice on B assigns her a conversation by hand. Carol's token then
    removed from A again: she holds a conversation, so she stays a member;
    once it is resolved she leaves, and both inboxes are told.
    """
    a, b = manual.daemons["a"], manual.daemons["b"]
    on_a, on_b = operator_desk(a, ALICE), operator_desk(b, ALICE)
    assert "carol" not in _team(on_a) and "carol" not in _team(on_b)
    config = tmp_path / "a.ini"
    config.write_text(_with_carol(config.read_text(encoding="utf-8")), encoding="utf-8")
    a.process.send_signal(signal.SIGHUP)
    for desk in (on_a, on_b):
        event = next_of(desk, "team", where=_joined("carol"), timeout=5)
        assert event["operator"]["availability"] == "offline"
        assert _team(desk)["carol"]["availability"] == "offline"
    visitor = structured(b)
    visitor.send(json.dumps({"type": "hello"}))
    next_of(visitor, "welcome")
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "Hello?"}))
    next_of(visitor, "ack", timeout=10)
    conversation = next(iter(_assigned(on_b, "list")))
    answer = request(on_b, {"type": "assign", "conversation": conversation,
                            "operator": "carol"}, "give")
    assert answer["type"] == "ok" and answer["conversation"]["assignee"] == "carol", answer
    config.write_text(config_text(redis_server, tmp_path, "a", "manual"), encoding="utf-8")
    a.process.send_signal(signal.SIGHUP)
    _until(lambda: a.log().count("] reloaded ") >= 2, 10)
    assert "carol" in _team(on_a) and "carol" in _team(on_b)
    seen: list[dict[str, Any]] = []
    answer = _request(on_b, {"type": "resolve", "conversation": conversation}, "done", seen)
    assert answer["type"] == "ok", answer
    next_of(on_a, "team", where=_left("carol"), timeout=5)
    if not any(e.get("type") == "team" and _left("carol")(e) for e in seen):
        next_of(on_b, "team", where=_left("carol"), timeout=5)
    for desk in (on_a, on_b):
        assert "carol" not in _team(desk)
    for ws in (visitor, on_a, on_b):
        ws.close()


def _one_daemon_config(tmp_path: Path, tokens: str) -> str:
    return f"""
[wsdaemon]
listen = tcp:0:interface=127.0.0.1

[protocol]
identity = anonymous
identity_secret_file = {tmp_path / "identity.key"}

[operator]
model = conversations
tokens =
{tokens}
store = {tmp_path / "conversations.sqlite3"}
ack_message = Thanks!
offline_message =
fallback_after = 0

[route:/support]
strategy = operator
"""


def test_a_reload_on_one_daemon_adds_and_removes(tmp_path: Path) -> None:
    """
    One daemon, SQLite: a SIGHUP adding Carol's token tells Alice's inbox
    she joined and the team lists her (offline) at once; removing it again,
    Carol (offline, free) leaves at once: Alice is told, and an assignment
    to her is refused.
    """
    config = tmp_path / "wsdaemon.ini"
    config.write_text(_one_daemon_config(tmp_path, f"    alice:{ALICE}"), encoding="utf-8")
    daemon = Daemon(config)
    try:
        desk = operator_desk(daemon, ALICE)
        assert set(_team(desk)) == {"alice"}
        config.write_text(_one_daemon_config(
            tmp_path, f"    alice:{ALICE}\n    carol:{CAROL}"), encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)
        event = next_of(desk, "team", where=_joined("carol"), timeout=5)
        assert event["operator"] == {"name": "carol", "display_name": "carol",
                                     "availability": "offline", "capacity": 0, "load": 0}
        assert set(_team(desk)) == {"alice", "carol"}
        config.write_text(_one_daemon_config(tmp_path, f"    alice:{ALICE}"), encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)
        next_of(desk, "team", where=_left("carol"), timeout=5)
        assert set(_team(desk)) == {"alice"}
        desk.close()
    finally:
        assert daemon.stop() == 0
