"""
Several daemons as one service through a real redis-server, on what they
share beside conversations (those: test_conversations_redis.py; a plain
visitor hopping between daemons: test_plain_visitor_hops.py): pushes through
any daemon, a reload that keeps the broker, workers on Redis, and the
shipped cluster example (etc/cluster) behind HAProxy.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import require_tool
from tests.daemon import REPO, Daemon, free_port
from tests.integration.test_conversations_redis import ACK, ADMIN_KEY, BOB, config_text
from tests.operator_client import cookie_of, next_of, operator_desk, request, structured
from tests.redis_server import RedisServer
from wsdaemon.client_ids import public_id

pytestmark = pytest.mark.slow

ECHO = "\n[route:/echo]\nstrategy = echo\n"


class Cluster:
    """Conversation daemons on one Redis, each with its admin API on a port of its own."""

    def __init__(self, redis: RedisServer, directory: Path,
                 start_daemon: Callable[..., Daemon]) -> None:
        self.redis = redis
        self.directory = directory
        self._start = start_daemon

    def start(self, name: str, workers: int = 1) -> Daemon:
        port = free_port()
        text = config_text(self.redis, self.directory, name, port) + ECHO
        if workers > 1:
            text = text.replace("listen = tcp:0:interface=127.0.0.1",
                                f"listen = tcp:0:interface=127.0.0.1\nworkers = {workers}")
        path = self.directory / f"{name}.ini"
        path.write_text(text, encoding="utf-8")
        daemon = self._start(path)
        daemon.admin_port = port  # type: ignore[attr-defined]
        deadline = time.monotonic() + 20
        while daemon.log().count("live conversations loaded") < workers:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        daemon.wait_for_log("redis: connected", timeout=10)
        return daemon


@pytest.fixture
def cluster(redis_server: RedisServer, tmp_path: Path,
            start_daemon: Callable[..., Daemon]) -> Cluster:
    return Cluster(redis_server, tmp_path, start_daemon)


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for thing in opened:
        thing.close()


def admin(daemon: Daemon, path: str, body: dict[str, Any] | None = None,
          headers: dict[str, str] | None = None, key: str = ADMIN_KEY) -> tuple[int, Any]:
    """Call C{daemon}'s admin API: the status and the JSON (or, for /metrics, the text)."""
    port = daemon.admin_port  # type: ignore[attr-defined]
    data = json.dumps(body).encode() if body is not None else None
    request_ = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                 **(headers or {})})
    try:
        with urllib.request.urlopen(request_, timeout=10) as response:
            raw = response.read().decode()
            return response.status, json.loads(raw) if path != "/metrics" else raw
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def no_more(*connections: ClientConnection, seconds: float = 0.5) -> None:
    """Nothing else arrives on any of C{connections} for C{seconds}."""
    time.sleep(seconds)
    for ws in connections:
        with pytest.raises(TimeoutError):
            got = ws.recv(timeout=0.01)
            raise AssertionError(f"unexpected {got!r}")


def client_id(ws: ClientConnection) -> str:
    """The id the daemon issued C{ws} (what pushes and /clients name), from its cookie."""
    return public_id(cookie_of(ws).removeprefix("wsdaemon_client="))


def test_push_through_b_reaches_clients_on_a(cluster: Cluster, closing: list[Any]) -> None:
    """
    The push API on any daemon reaches one client, a route, everyone,
    anywhere; a structured visitor gets a push as a push frame, outside its
    thread.
    """
    a, b = cluster.start("a"), cluster.start("b")
    on_a = connect(f"{a.url}/echo")
    on_b = connect(f"{b.url}/echo")
    visitor = structured(a)
    closing.extend([on_a, on_b, visitor])
    visitor.send(json.dumps({"type": "hello"}))
    next_of(visitor, "welcome")
    status, body = admin(b, "/push", {"client": client_id(on_a), "text": "just for pat"})
    assert (status, body["delivered"]) == (200, 0), body  # pat is on A
    assert on_a.recv(timeout=5) == "just for pat"
    status, body = admin(b, "/push", {"route": "/echo", "base64": "AAEC"})
    assert status == 200, body
    assert on_a.recv(timeout=5) == b"\x00\x01\x02"
    assert on_b.recv(timeout=5) == b"\x00\x01\x02"
    status, body = admin(a, "/push", {"all": True, "text": "everyone"})
    assert (status, body["delivered"]) == (200, 2)  # the two on A; B writes its own
    assert on_a.recv(timeout=5) == "everyone"
    assert on_b.recv(timeout=5) == "everyone"
    assert next_of(visitor, "push") == {"type": "push", "text": "everyone"}
    no_more(on_a, on_b, visitor)


def test_reload_keeps_the_broker_and_refuses_to_change_it(cluster: Cluster,
                                                          closing: list[Any]) -> None:
    """
    SIGHUP with the same [broker] keeps the shared conversations (the
    visitor's, stored before, still answered through the other daemon); a
    new prefix is refused, naming the section, and the old one stays.
    """
    a, b = cluster.start("a"), cluster.start("b")
    visitor = structured(a)
    closing.append(visitor)
    visitor.send(json.dumps({"type": "hello"}))
    next_of(visitor, "welcome")
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "before the reload"}))
    next_of(visitor, "ack")
    path = Path(a.process.args[a.process.args.index("--config") + 1])  # type: ignore[index]
    path.write_text(path.read_text().replace(ACK, "Thanks, reloaded."))
    a.process.send_signal(signal.SIGHUP)
    a.wait_for_log("reloaded")
    path.write_text(path.read_text().replace("prefix = it:", "prefix = other:"))
    a.process.send_signal(signal.SIGHUP)
    log = a.wait_for_log("reload refused")
    assert "[broker]" in log and "restart to apply" in log
    desk = operator_desk(b, BOB)
    closing.append(desk)
    listed = request(desk, {"type": "conversations", "view": "all"})
    [summary] = listed["conversations"]
    answer = request(desk, {"type": "reply", "conversation": summary["id"],
                            "text": "still shared"}, "r2")
    assert answer["type"] == "ok", answer
    reply = next_of(visitor, "message", where=lambda m: m.get("author") == "operator")
    assert reply["text"] == "still shared"


def test_pushes_with_workers_on_redis_are_sent_once(cluster: Cluster,
                                                    closing: list[Any]) -> None:
    """
    workers = 2 with Redis (each push goes to one worker, the other hears
    it through Redis): a push to a route reaches every client once,
    whichever worker holds it; retries with the same Idempotency-Key reach
    the worker that remembers it, so the client gets the message once and
    every retry is answered "replayed" (they used to take turns between the
    workers, and every other one sent again).
    """
    daemon = cluster.start("w", workers=2)
    daemon.wait_for_log("ready: 2 workers listening", timeout=20)
    clients = [connect(f"{daemon.url}/echo") for _ in range(16)]
    closing.extend(clients)
    listed = admin(daemon, "/clients")[1]["clients"]
    workers = {c["worker"] for c in listed}
    assert len(listed) == 16 and workers == {0, 1}, listed  # all on one: once in 32,768 runs
    status, body = admin(daemon, "/push", {"route": "/echo", "text": "closing soon"})
    assert status == 200, body
    for ws in clients:
        assert ws.recv(timeout=5) == "closing soon"
    kim = clients[0]
    answers = []
    for _ in range(4):
        status, body = admin(daemon, "/push", {"client": client_id(kim),
                                               "text": "order 17 shipped"},
                             headers={"Idempotency-Key": "order-17"})
        assert status == 200, body
        answers.append(body)
    assert [a.get("replayed", False) for a in answers] == [False, True, True, True], answers
    assert kim.recv(timeout=5) == "order 17 shipped"
    no_more(*clients)


HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
EXAMPLE_TOKEN = "alice-example-token-change-me"
EXAMPLE_KEY = "ops-example-api-key-change-me"


class _Stop:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _support_clients(daemon: Daemon) -> int:
    """How many connections of /support C{daemon}'s /clients lists."""
    status, body = admin(daemon, "/clients", key=EXAMPLE_KEY)
    assert status == 200, body
    return sum(1 for c in body["clients"] if c["route"] == "/support")


def test_shipped_cluster_example_behind_haproxy(redis_server: RedisServer, tmp_path: Path,
                                                start_daemon: Callable[..., Daemon],
                                                closing: list[Any]) -> None:
    """
    etc/cluster as shipped (ports moved): HAProxy spreads an operator and a
    visitor over the two daemons (leastconn), the operator on one daemon
    answers the visitor on the other, by name, and a push through the
    operator's daemon's admin API reaches the visitor too.
    """
    require_tool(Path(HAPROXY).exists(), "haproxy (Debian package haproxy)")
    etc = tmp_path / "etc"
    shutil.copytree(REPO / "etc", etc)
    ports = {old: free_port() for old in ("8080", "8091", "8092", "8191", "8192")}
    for name in ("wsdaemon-a.ini", "wsdaemon-b.ini", "haproxy.cfg"):
        path = etc / "cluster" / name
        text = path.read_text().replace("redis://127.0.0.1:6379/0", redis_server.url)
        for old, new in ports.items():
            text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
            text = text.replace(f"port {old}", f"port {new}")
            text = text.replace(f"tcp:{old}:", f"tcp:{new}:")
        path.write_text(text)
    daemons = []
    for name, port, admin_port in (("a", "8091", "8191"), ("b", "8092", "8192")):
        daemon = start_daemon(etc / "cluster" / f"wsdaemon-{name}.ini", port=ports[port])
        daemon.admin_port = ports[admin_port]  # type: ignore[attr-defined]
        daemon.wait_for_log("live conversations loaded", timeout=10)
        daemons.append(daemon)
    proxy = subprocess.Popen([HAPROXY, "-db", "-f", str(etc / "cluster" / "haproxy.cfg")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    closing.append(_Stop(proxy))
    front = Daemon.__new__(Daemon)
    front.url = f"ws://127.0.0.1:{ports['8080']}"
    deadline = time.monotonic() + 10
    while True:
        try:
            connect(f"{front.url}/echo").close()
            break
        except OSError:
            assert time.monotonic() < deadline, "HAProxy did not start"
            time.sleep(0.1)
    time.sleep(2.5)  # let the health checks mark both daemons up
    desk = operator_desk(front, EXAMPLE_TOKEN)
    visitor = structured(front)
    closing.extend([desk, visitor])
    visitor.send(json.dumps({"type": "hello"}))
    visitor_id = next_of(visitor, "welcome")["visitor"]
    # The shipped config issues visitors' ids (a signed cookie, the same
    # secret on both daemons): the id operators see is the cookie's.
    assert visitor_id == client_id(visitor)
    # leastconn: the operator went to one daemon, the visitor to the other.
    on = [_support_clients(d) for d in daemons]
    desks = ["operator alice connected" in d.log() for d in daemons]
    assert sorted(on) == [0, 1] and desks == [n == 0 for n in on], (on, desks)
    operator_daemon = daemons[on.index(0)]
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "hello through HAProxy"}))
    assert next_of(visitor, "ack")["seq"] == 1
    new = next_of(desk, "conversation")["conversation"]
    assert new["visitor"] == visitor_id
    answer = request(desk, {"type": "reply", "conversation": new["id"], "text": "answered"})
    assert answer["type"] == "ok", answer
    reply = next_of(visitor, "message", where=lambda m: m.get("author") == "operator")
    assert (reply["text"], reply["name"]) == ("answered", "Alice Martin")
    status, body = admin(operator_daemon, "/push", {"all": True, "text": "hello everyone"},
                         key=EXAMPLE_KEY)
    assert status == 200, body
    assert next_of(visitor, "push")["text"] == "hello everyone"
