"""
Conversations on two daemons sharing a real redis-server
(`[operator] model = conversations` with `[broker] backend = redis`): a
visitor on one daemon and an operator on the other over protocol 2,
messages both ways, resolve, the visitor resuming on the other daemon;
both daemons' operators replying to one conversation at once.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.daemon import Daemon, free_port
from tests.operator_client import cookie_of, next_of, request, structured, the_conversation
from tests.operator_client import operator_desk as operator
from tests.redis_server import RedisServer
from wsdaemon.support.visitor import NOT_STORED

pytestmark = pytest.mark.slow

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdefgh"
ACK = "Thanks! We will be with you shortly."
ADMIN_KEY = "admin-key-0123456789abcdef"
CHAT = "wsdaemon.chat.v1"


def config_text(redis: RedisServer, shared: Path, name: str, admin_port: int = 0) -> str:
    admin = (f"[admin]\nlisten = tcp:{admin_port}:interface=127.0.0.1\n"
             f"api_keys = ops:{ADMIN_KEY}\n" if admin_port else "")
    return f"""
{admin}
[wsdaemon]
listen = tcp:0:interface=127.0.0.1

[protocol]
identity = anonymous
# Both daemons know a visitor by the same cookie.
identity_secret_file = {shared / "identity.key"}

[operator]
model = conversations
tokens =
    alice:{ALICE}
    bob:{BOB}
display_names =
    alice: Alice Martin
    bob: Bob Stone
ack_message = {ACK}
offline_message =
fallback_after = 0

[broker]
backend = redis
url = {redis.url}
prefix = it:
timeout = 1
heartbeat = 0.5
daemon_id = {name}

[route:/support]
strategy = operator
"""


@pytest.fixture
def pair(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:
    """Daemons A and B on one Redis (A first: it writes the identity key)."""
    started: list[Daemon] = []
    try:
        for name in ("a", "b"):
            config = tmp_path / f"{name}.ini"
            admin_port = free_port()
            config.write_text(config_text(redis_server, tmp_path, name, admin_port),
                              encoding="utf-8")
            daemon = Daemon(config)
            daemon.admin_port = admin_port  # type: ignore[attr-defined]
            started.append(daemon)
            daemon.wait_for_log("live conversations loaded", timeout=10)
            daemon.wait_for_log("redis: connected", timeout=10)
        yield started[0], started[1]
    finally:
        for daemon in started:
            assert daemon.stop() == 0


def admin_health(daemon: Daemon) -> dict[str, Any]:
    """The daemon's /healthz, its conversations part."""
    port = daemon.admin_port  # type: ignore[attr-defined]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz",
                                      headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return dict(json.loads(answer.read().decode())["conversations"])


def test_visitor_on_a_operator_on_b(pair: tuple[Daemon, Daemon]) -> None:
    """
    The visitor's message, stored through A, reaches the operator on B; B's
    reply reaches the visitor through A, with the operator's name, once;
    the visitor's next message reaches B; B resolves and the visitor hears
    it; the visitor reconnects to B and resumes: nothing after what it has,
    and the whole thread, in order, when it asks from the start.
    """
    a, b = pair
    visitor = structured(a)
    cookie = cookie_of(visitor)
    visitor.send(json.dumps({"type": "hello"}))
    assert next_of(visitor, "welcome")["messages"] == []
    frames: list[dict[str, Any]] = []
    with operator(b, BOB) as desk:
        visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "Where is my order?"}))
        assert next_of(visitor, "ack", seen=frames)["seq"] == 1
        new = next_of(desk, "conversation")
        conversation = new["conversation"]["id"]
        listed = request(desk, {"type": "conversations", "view": "all"})
        assert [c["id"] for c in listed["conversations"]] == [conversation]
        answer = request(desk, {"type": "reply", "conversation": conversation,
                                "text": "It ships today."})
        assert answer["type"] == "ok", answer
        reply = next_of(visitor, "message", where=lambda m: m.get("author") != "system",
                        seen=frames)
        assert reply["text"] == "It ships today." and reply["name"] == "Bob Stone"
        visitor.send(json.dumps({"type": "message", "id": "c-2", "text": "Thanks!"}))
        assert next_of(visitor, "ack", seen=frames)["id"] == "c-2"
        heard = next_of(desk, "message", where=lambda m: m.get("message", {}).get("text")
                        == "Thanks!")
        assert heard["conversation"]["id"] == conversation
        assert request(desk, {"type": "resolve", "conversation": conversation})["type"] == "ok"
        status = next_of(visitor, "status", seen=frames)
        assert status["status"] == "resolved"
        with pytest.raises(TimeoutError):
            next_of(visitor, "message", timeout=0.5, seen=frames)
        visitor.close()
    # Through A, each message of the thread once, in order (the visitor's
    # own are acknowledged, not sent back).
    seqs = [f["seq"] for f in frames if f["type"] in ("message", "ack")]
    assert seqs == [1, 2, 3, 4]
    last = seqs[-1]
    # A's feed took B's commits (its /healthz says so), and skipped its own.
    health = admin_health(a)
    assert health["feed"]["taken"] >= 2 and health["feed"]["skipped"] >= 2, health
    assert health["feed"]["missed"] == 0
    again = structured(b, cookie)
    again.send(json.dumps({"type": "hello", "after": last}))
    resumed = next_of(again, "welcome")
    assert resumed["status"] == "resolved" and resumed["messages"] == []
    again.close()
    anew = structured(b, cookie)
    anew.send(json.dumps({"type": "hello", "after": 0}))
    whole = next_of(anew, "welcome")
    texts = [m["text"] for m in whole["messages"]]
    assert texts == ["Where is my order?", ACK, "It ships today.", "Thanks!"]
    anew.close()


def test_operators_on_both_daemons_reply_at_once(pair: tuple[Daemon, Daemon]) -> None:
    """
    Alice on A and Bob on B reply to one conversation at the same moment,
    20 times each: commits decided on the same version clash, the loser
    reads the conversation again and decides again. Every reply is stored
    once, and the visitor (on A) gets every one once, in seq order.
    """
    a, b = pair
    visitor = structured(a)
    cookie = cookie_of(visitor)
    visitor.send(json.dumps({"type": "hello"}))
    next_of(visitor, "welcome")
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "Hello?"}))
    next_of(visitor, "ack")
    desks = {"alice": operator(a, ALICE), "bob": operator(b, BOB)}
    conversation = the_conversation(desks["bob"])
    replies = 20
    failures: list[Any] = []

    def answer(name: str) -> None:
        for n in range(replies):
            sent = request(desks[name], {"type": "reply", "conversation": conversation,
                                         "text": f"{name} {n}"}, f"r{n}")
            if sent["type"] != "ok":
                failures.append(sent)

    writers = [threading.Thread(target=answer, args=(name,)) for name in desks]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    assert failures == []
    got: list[dict[str, Any]] = []
    while len([m for m in got if m.get("author") == "operator"]) < 2 * replies:
        frame = json.loads(visitor.recv(timeout=10))
        if frame["type"] == "message":
            got.append(frame)
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(set(seqs))
    texts = sorted(m["text"] for m in got if m.get("author") == "operator")
    assert texts == sorted(f"{name} {n}" for name in desks for n in range(replies))
    with pytest.raises(TimeoutError):
        visitor.recv(timeout=0.5)
    visitor.close()
    for desk in desks.values():
        desk.close()
    whole = structured(b, cookie)
    whole.send(json.dumps({"type": "hello", "after": 0}))
    welcome = next_of(whole, "welcome")
    stored = [m["text"] for m in welcome["messages"] if m.get("author") == "operator"]
    assert sorted(stored) == texts
    whole.close()


def test_redis_stalling_and_restarting(pair: tuple[Daemon, Daemon],
                                       redis_server: RedisServer) -> None:
    """
    Redis stalls (CLIENT PAUSE, longer than the daemons' 1 s timeout) while
    the visitor's message is being stored: the visitor is told to send it
    again with its id; sent again once Redis answers, it is stored once.
    Redis then restarts on its data: both daemons' links come back, and the
    operator's reply on B still reaches the visitor on A, once.
    """
    a, b = pair
    visitor = structured(a)
    cookie = cookie_of(visitor)
    visitor.send(json.dumps({"type": "hello"}))
    next_of(visitor, "welcome")
    desk = operator(b, BOB)
    redis_server.pause(2.5)
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "Are you there?"}))
    error = next_of(visitor, "error")
    assert "send it again with the same id" in error["error"], error
    redis_server.wait_answering(10)
    a.wait_for_log("redis: reachable again", timeout=10)
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "Are you there?"}))
    # (The first send may be acknowledged too, once A reads its own event.)
    ack = next_of(visitor, "ack", where=lambda f: f.get("id") == "c-1")
    assert ack["seq"] == 1
    conversation = the_conversation(desk)
    redis_server.restart(down_for=0.5)
    a.wait_for_log("redis: reachable again", timeout=15)
    b.wait_for_log("redis: reachable again", timeout=15)
    deadline = time.monotonic() + 10
    while True:
        answer = request(desk, {"type": "reply", "conversation": conversation,
                                "text": "Yes, here."}, f"after-{time.monotonic()}")
        if answer["type"] == "ok" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer["type"] == "ok", answer
    reply = next_of(visitor, "message", where=lambda m: m.get("author") == "operator",
                    timeout=10)
    assert reply["text"] == "Yes, here."
    desk.close()
    visitor.close()
    whole = structured(a, cookie)
    whole.send(json.dumps({"type": "hello", "after": 0}))
    texts = [m["text"] for m in next_of(whole, "welcome")["messages"]]
    assert texts.count("Are you there?") == 1 and texts[-1] == "Yes, here."
    whole.close()


def test_workers_share_conversations_through_redis(redis_server: RedisServer,
                                                   tmp_path: Path) -> None:
    """
    `workers = 2` with conversations on Redis: each worker is a daemon of
    its own on the shared listener. Visitors land on either worker; the
    operator's replies reach each of them, also from the other worker (the
    test goes on until a visitor landed on the operator's worker's sibling).
    """
    config = tmp_path / "workers.ini"
    config.write_text(config_text(redis_server, tmp_path, "w").replace(
        "listen = tcp:0:interface=127.0.0.1", "listen = tcp:0:interface=127.0.0.1\nworkers = 2"),
        encoding="utf-8")
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("live conversations loaded", timeout=15)
        desk = operator(daemon, BOB)
        line = daemon.wait_for_log("operator bob connected").split("operator bob connected")[0]
        desk_worker = line.rsplit("worker ", 1)[1].split("]", 1)[0]
        crossed = 0
        for n in range(20):
            visitor = structured(daemon)
            visitor.send(json.dumps({"type": "hello"}))
            visitor_id = next_of(visitor, "welcome")["visitor"]
            visitor.send(json.dumps({"type": "message", "id": "c-1", "text": f"hello {n}"}))
            next_of(visitor, "ack")
            entry = next_of(desk, "conversation",
                            where=lambda e, v=visitor_id: e["conversation"]["visitor"] == v)
            answer = request(desk, {"type": "reply", "conversation": entry["conversation"]["id"],
                                    "text": f"answer {n}"}, f"r{n}")
            assert answer["type"] == "ok", answer
            reply = next_of(visitor, "message", where=lambda m: m.get("author") == "operator")
            assert reply["text"] == f"answer {n}"
            visitor.close()
            connected = [line for line in daemon.log().splitlines()
                         if f"client {visitor_id})" in line and "connected to" in line]
            crossed += f"worker {desk_worker}]" not in connected[0]
            if crossed:
                break
        assert crossed, "no visitor landed on the other worker in 20 tries"
        desk.close()
    finally:
        assert daemon.stop() == 0


def test_a_stalled_daemon_catches_up_from_the_stream(pair: tuple[Daemon, Daemon]) -> None:
    """
    Daemon A is stopped (SIGSTOP) for 3 s while the operator on B replies
    five times to A's visitor: once A runs again it reads what it missed
    from the stream, and the visitor gets every reply once, in order.
    """
    a, b = pair
    visitor = structured(a)
    visitor.send(json.dumps({"type": "hello"}))
    next_of(visitor, "welcome")
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "Hello?"}))
    next_of(visitor, "ack")
    desk = operator(b, BOB)
    conversation = the_conversation(desk)
    a.process.send_signal(signal.SIGSTOP)
    try:
        for n in range(5):
            answer = request(desk, {"type": "reply", "conversation": conversation,
                                    "text": f"reply {n}"}, f"r{n}")
            assert answer["type"] == "ok", answer
        time.sleep(3)
    finally:
        a.process.send_signal(signal.SIGCONT)
    got = [next_of(visitor, "message", where=lambda m: m.get("author") == "operator",
                   timeout=10) for _ in range(5)]
    assert [m["text"] for m in got] == [f"reply {n}" for n in range(5)]
    assert [m["seq"] for m in got] == sorted({m["seq"] for m in got})
    with pytest.raises(TimeoutError):
        next_of(visitor, "message", timeout=0.5)
    desk.close()
    visitor.close()


def test_a_daemon_started_while_redis_is_down_waits_for_it(redis_server: RedisServer,
                                                          tmp_path: Path) -> None:
    """
    Started while Redis is down, the daemon listens, says once that Redis
    cannot be used yet (a plain visitor's messages meanwhile are answered
    "send it again", with no traceback per message), and loads the
    conversations as soon as Redis answers; then a visitor's message is
    stored and acknowledged.
    """
    redis_server.stop()
    config = tmp_path / "a.ini"
    config.write_text(config_text(redis_server, tmp_path, "a"), encoding="utf-8")
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("Redis cannot be used yet", timeout=15)
        with connect(f"{daemon.url}/support") as plain:
            for n in range(3):
                plain.send(f"message {n}")
                assert plain.recv(timeout=10) == NOT_STORED
                time.sleep(0.4)  # across the component's tries (every START_RETRY)
        assert "live conversations loaded" not in daemon.log()
        assert "Traceback" not in daemon.log(), daemon.log()
        redis_server.start()
        daemon.wait_for_log("live conversations loaded", timeout=15)
        daemon.wait_for_log("ready", timeout=5)
        visitor = structured(daemon)
        visitor.send(json.dumps({"type": "hello"}))
        next_of(visitor, "welcome")
        visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "Hello?"}))
        assert next_of(visitor, "ack")["seq"] == 1
        visitor.close()
        log = daemon.log()
        assert log.count("Redis cannot be used yet") == 1, log
        assert "cannot open the operator store" not in log
    finally:
        assert daemon.stop() == 0
    # Stopped while still waiting for Redis: a clean exit.
    redis_server.stop()
    waiting = Daemon(config)
    waiting.wait_for_log("Redis cannot be used yet", timeout=15)
    assert waiting.stop() == 0
    assert "Traceback" not in waiting.log()


def test_an_operator_on_two_daemons_stays_available(pair: tuple[Daemon, Daemon]) -> None:
    """
    Bob is connected to A and to B and available; his connection to B
    closes: A still holds his other connection, so B does not say he went
    offline (no flap: Alice on A hears nothing of him), and B's team has
    him online. (More in test_conversations_team_redis.py.)
    """
    a, b = pair
    alice = operator(a, ALICE)
    bob_on_a = operator(a, BOB)
    bob_on_b = operator(b, BOB)
    answer = request(bob_on_b, {"type": "availability", "availability": "online"})
    assert answer["type"] == "ok", answer

    def bob(availability: str) -> Callable[[dict[str, Any]], bool]:
        return lambda e: e["operator"]["name"] == "bob" and \
            e["operator"]["availability"] == availability

    next_of(alice, "team", where=bob("online"))
    bob_on_b.close()
    with pytest.raises(TimeoutError):
        next_of(alice, "team", timeout=1.0, where=lambda e: e["operator"]["name"] == "bob")
    watcher = operator(b, ALICE)
    deadline = time.monotonic() + 5
    while True:
        team = request(watcher, {"type": "team"}, "t")
        members = {m["name"]: m["availability"] for m in team.get("team", [])}
        if members.get("bob") == "online" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert members.get("bob") == "online", team
    for desk in (alice, bob_on_a, watcher):
        desk.close()
