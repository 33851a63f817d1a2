"""
Several daemons as one service through a real redis-server: a client on one
daemon answered by an operator on another, operators racing across daemons,
pushes through any daemon, Redis restarting mid-conversation, a daemon
killed with kill -9 in the middle of a claim.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
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
from tests.integration.test_operator_daemon import ALICE, BOB, Operator, no_more
from tests.redis_server import RedisServer
from wsdaemon.client_ids import public_id

pytestmark = pytest.mark.slow

API_KEY = "redis-test-key-0123456789"
LEASE = 3.0


def config_text(redis: RedisServer, admin_port: int, name: str) -> str:
    return f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1

        [admin]
        listen = tcp:{admin_port}:interface=127.0.0.1
        api_keys = ci:{API_KEY}

        [operator]
        model = queue
        tokens =
            alice:{ALICE}
            bob:{BOB}
        lease = {LEASE}
        fallback_after = 0
        fallback_when_offline = no

        [broker]
        backend = redis
        url = {redis.url}
        prefix = it:
        timeout = 1
        heartbeat = 0.5
        sweep_interval = 0.25
        daemon_id = {name}

        [protocol]
        # These clients choose their ids (?client_id=).
        identity = claimed

        [route:/support]
        strategy = operator
        ack_message = queued #{{position}} as {{item}}

        [route:/echo]
        strategy = echo
    """


class Cluster:
    """Daemons on one Redis, each with its admin API on a port of its own."""

    def __init__(self, redis: RedisServer, write_config: Callable[..., Path],
                 start_daemon: Callable[..., Daemon]) -> None:
        self.redis = redis
        self._write = write_config
        self._start = start_daemon
        self.admin: dict[str, int] = {}

    def start(self, name: str) -> Daemon:
        port = free_port()
        path = self._write(config_text(self.redis, port, name), name=f"{name}.ini")
        daemon = self._start(path)
        daemon.admin_port = port  # type: ignore[attr-defined]
        daemon.wait_for_log("redis: connected", timeout=10)
        daemon.wait_for_log("open item(s) in Redis", timeout=10)
        return daemon


@pytest.fixture
def cluster(redis_server: RedisServer, write_config: Callable[..., Path],
            start_daemon: Callable[..., Daemon]) -> Cluster:
    return Cluster(redis_server, write_config, start_daemon)


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for thing in opened:
        thing.close()


def admin(daemon: Daemon, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    port = daemon.admin_port  # type: ignore[attr-defined]
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET",
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read().decode()
            return response.status, json.loads(raw) if path != "/metrics" else raw
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def ask(daemon: Daemon, client_id: str, text: str, closing: list[Any]) -> tuple[ClientConnection,
                                                                                str]:
    client = connect(f"{daemon.url}/support?client_id={client_id}")
    closing.append(client)
    client.send(text)
    ack = str(client.recv(timeout=5))
    assert ack.startswith("queued #"), ack
    return client, ack.rsplit(" ", 1)[1]


def operator(daemon: Daemon, token: str, closing: list[Any]) -> Operator:
    op = Operator(daemon, token)
    closing.append(op)
    return op


def wait_item(op: Operator, item_id: str, state: str = "queued") -> dict[str, Any]:
    """Wait until the operator's view shows the item in C{state}."""
    for item in op.hello["items"]:
        if item["item_id"] == item_id and item["state"] == state:
            return item  # type: ignore[no-any-return]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        event = op.next("updated" if state != "queued" else "item", timeout=10)
        if event["item"]["item_id"] == item_id and event["item"]["state"] == state:
            return event["item"]  # type: ignore[no-any-return]
    raise AssertionError(f"{item_id} never became {state}")


def test_client_on_a_answered_by_operator_on_b(cluster: Cluster, closing: list[Any]) -> None:
    """The reply crosses daemons; the operator on B saw the item queued on A."""
    a, b = cluster.start("a"), cluster.start("b")
    alice = operator(b, ALICE, closing)
    client, item_id = ask(a, "c1", "hello from A", closing)
    item = wait_item(alice, item_id)
    assert item["text"] == "hello from A"
    answer = alice.request(type="reply", item=item_id, text="hello from B")
    assert answer["type"] == "ok", answer
    assert client.recv(timeout=5) == "hello from B"
    no_more(client)


def test_two_operators_on_two_daemons_race_one_reply(cluster: Cluster,
                                                     closing: list[Any]) -> None:
    """Both answer at the same moment: exactly one ok, exactly one reply arrives."""
    a, b = cluster.start("a"), cluster.start("b")
    alice, bob = operator(a, ALICE, closing), operator(b, BOB, closing)
    client, item_id = ask(a, "c1", "race me", closing)
    wait_item(alice, item_id)
    wait_item(bob, item_id)
    answers: dict[str, dict[str, Any]] = {}

    def answer(name: str, op: Operator) -> None:
        answers[name] = op.request(type="reply", item=item_id, text=f"from {name}")

    threads = [threading.Thread(target=answer, args=(n, o))
               for n, o in (("alice", alice), ("bob", bob))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    kinds = sorted(r["type"] for r in answers.values())
    assert kinds == ["error", "ok"], answers
    winner = next(n for n, r in answers.items() if r["type"] == "ok")
    assert client.recv(timeout=5) == f"from {winner}"
    no_more(client, 1.0)


def test_push_through_b_reaches_clients_on_a(cluster: Cluster, closing: list[Any]) -> None:
    """The push API on any daemon reaches one client, a route, everyone, anywhere."""
    a, b = cluster.start("a"), cluster.start("b")
    on_a = connect(f"{a.url}/echo?client_id=pat")
    on_b = connect(f"{b.url}/echo?client_id=sam")
    closing.extend([on_a, on_b])
    time.sleep(0.2)
    status, body = admin(b, "/push", {"client": "pat", "text": "just for pat"})
    assert status == 200, body
    assert on_a.recv(timeout=5) == "just for pat"
    status, body = admin(b, "/push", {"route": "/echo", "base64": "AAEC"})
    assert status == 200
    assert on_a.recv(timeout=5) == b"\x00\x01\x02"
    assert on_b.recv(timeout=5) == b"\x00\x01\x02"
    status, body = admin(a, "/push", {"all": True, "text": "everyone"})
    assert (status, body["delivered"]) == (200, 1)  # the one on A; B writes its own
    assert on_a.recv(timeout=5) == "everyone"
    assert on_b.recv(timeout=5) == "everyone"
    no_more(on_a)
    no_more(on_b)


def test_a_reply_read_on_a_is_not_sent_again_on_b(cluster: Cluster,
                                                  closing: list[Any]) -> None:
    """Read on A, reconnecting at once to B (as through a balancer): no second copy."""
    a, b = cluster.start("a"), cluster.start("b")
    alice = operator(b, ALICE, closing)
    for n in range(20):
        client, item_id = ask(a if n % 2 else b, "hopper", f"question {n}", closing)
        wait_item(alice, item_id)
        assert alice.request(type="reply", item=item_id, text=f"answer {n}")["type"] == "ok"
        assert client.recv(timeout=5) == f"answer {n}"
        client.close()
    last = connect(f"{a.url}/support?client_id=hopper")
    closing.append(last)
    no_more(last)


def test_offline_client_gets_its_reply_on_another_daemon(cluster: Cluster,
                                                         closing: list[Any]) -> None:
    """Asked on A, answered while away, delivered once on reconnecting to B."""
    a, b = cluster.start("a"), cluster.start("b")
    alice = operator(a, ALICE, closing)
    client, item_id = ask(a, "c9", "call me back", closing)
    client.close()
    wait_item(alice, item_id)
    assert alice.request(type="reply", item=item_id, text="calling back")["type"] == "ok"
    again = connect(f"{b.url}/support?client_id=c9")
    closing.append(again)
    assert again.recv(timeout=5) == "calling back"
    no_more(again)
    third = connect(f"{a.url}/support?client_id=c9")
    closing.append(third)
    no_more(third)


def test_redis_restart_loses_nothing(cluster: Cluster, redis_server: RedisServer,
                                     closing: list[Any]) -> None:
    """
    Redis goes away and comes back: accepted messages survive, echo keeps
    serving, the outage shows in /healthz and /metrics, and the daemons
    recover by themselves.
    """
    a, b = cluster.start("a"), cluster.start("b")
    client, item_id = ask(a, "c1", "before the outage", closing)
    redis_server.stop()
    echo = connect(f"{a.url}/echo")
    closing.append(echo)
    echo.send("still here")
    assert echo.recv(timeout=5) == "still here"
    client.send("during the outage")
    assert "could not be queued" in str(client.recv(timeout=10))
    a.wait_for_log("redis: unreachable", timeout=10)
    status, health = admin(a, "/healthz")
    assert (status, health["status"], health["broker"]["up"]) == (200, "degraded", False)
    assert "wsdaemon_broker_up 0.0" in admin(a, "/metrics")[1]

    redis_server.start()
    a.wait_for_log("redis: reachable again", timeout=15)
    b.wait_for_log("redis: reachable again", timeout=15)
    bob = operator(b, BOB, closing)
    wait_item(bob, item_id)
    assert [i["text"] for i in bob.hello["items"]] == ["before the outage"]
    assert bob.request(type="reply", item=item_id, text="after the outage")["type"] == "ok"
    assert client.recv(timeout=5) == "after the outage"
    no_more(client)
    status, health = admin(a, "/healthz")
    assert (health["status"], health["broker"]["outages"]) == ("ok", 1)


def test_a_daemon_killed_mid_claim_loses_nothing(cluster: Cluster,
                                                 closing: list[Any]) -> None:
    """kill -9 on the claiming operator's daemon: the lease runs out, B answers."""
    a, b = cluster.start("a"), cluster.start("b")
    client, item_id = ask(b, "c1", "help", closing)
    alice = operator(a, ALICE, closing)
    wait_item(alice, item_id)
    assert alice.request(type="claim", item=item_id)["type"] == "ok"
    bob = operator(b, BOB, closing)
    assert bob.request(type="claim", item=item_id)["type"] == "error"
    a.kill()
    started = time.monotonic()
    deadline = started + LEASE + 5
    while time.monotonic() < deadline:
        event = bob.next("updated", timeout=LEASE + 5)
        if event["item"]["item_id"] == item_id and event["item"]["state"] == "queued":
            break
    else:
        raise AssertionError("the lease never ran out")
    assert time.monotonic() - started >= LEASE - 1.0
    assert bob.request(type="reply", item=item_id, text="bob here")["type"] == "ok"
    assert client.recv(timeout=5) == "bob here"
    no_more(client)


HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def test_shipped_cluster_example_behind_haproxy(redis_server: RedisServer, tmp_path: Path,
                                                start_daemon: Callable[..., Daemon],
                                                closing: list[Any]) -> None:
    """
    etc/cluster as shipped (ports moved): HAProxy spreads a client and an
    operator over the two daemons, and the reply finds its way back.
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
    a = start_daemon(etc / "cluster" / "wsdaemon-a.ini", port=ports["8091"])
    b = start_daemon(etc / "cluster" / "wsdaemon-b.ini", port=ports["8092"])
    for daemon in (a, b):
        daemon.wait_for_log("open item(s) in Redis", timeout=10)
    proxy = subprocess.Popen([HAPROXY, "-db", "-f", str(etc / "cluster" / "haproxy.cfg")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    closing.append(_Stop(proxy))
    front = Daemon.__new__(Daemon)
    front.url = f"ws://127.0.0.1:{ports['8080']}"
    deadline = time.monotonic() + 10
    while True:
        try:
            probe = connect(f"{front.url}/echo")
            probe.close()
            break
        except OSError:
            assert time.monotonic() < deadline, "HAProxy did not start"
            time.sleep(0.1)
    time.sleep(2.5)  # let the health checks mark both daemons up
    token = "alice-example-token-change-me"
    alice = operator(front, token, closing)
    client = connect(f"{front.url}/support")
    closing.append(client)
    # The shipped config issues client credentials (a signed cookie); the id
    # operators see is derived from it.
    cookie = client.response.headers["Set-Cookie"]
    issued = public_id(cookie.split(";")[0].removeprefix("wsdaemon_client="))
    client.send("hello through HAProxy")
    assert str(client.recv(timeout=5)).startswith("Thanks! Your message is number 1")
    item = alice.next("item")["item"]
    assert (item["text"], item["client_id"]) == ("hello through HAProxy", issued)
    item_id = item["item_id"]
    # leastconn: the operator went to one daemon, the client to the other
    clients = [admin_clients(port) for port in (ports["8191"], ports["8192"])]
    operators = ["operator alice online" in d.log() for d in (a, b)]
    assert sorted(clients) == [0, 1] and operators == [c == 0 for c in clients], \
        (clients, operators)
    assert alice.request(type="reply", item=item_id, text="answered")["type"] == "ok"
    assert client.recv(timeout=5) == "answered"


class _Stop:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def admin_clients(port: int) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/clients",
                                     headers={"Authorization":
                                              "Bearer ops-example-api-key-change-me"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return len(json.loads(response.read())["clients"])


def test_reload_keeps_the_broker_and_refuses_to_change_it(cluster: Cluster,
                                                          closing: list[Any]) -> None:
    """SIGHUP with the same [broker] keeps the shared queue; a new prefix is refused."""
    import signal

    a = cluster.start("a")
    client, item_id = ask(a, "c1", "before the reload", closing)
    path = Path(a.process.args[a.process.args.index("--config") + 1])  # type: ignore[index]
    path.write_text(path.read_text().replace("lease = 3.0", "lease = 4"))
    a.process.send_signal(signal.SIGHUP)
    a.wait_for_log("reloaded")
    alice = operator(a, ALICE, closing)
    wait_item(alice, item_id)
    path.write_text(path.read_text().replace("prefix = it:", "prefix = other:"))
    a.process.send_signal(signal.SIGHUP)
    log = a.wait_for_log("reload refused")
    assert "[broker]" in log and "restart to apply" in log
    assert alice.request(type="reply", item=item_id, text="still shared")["type"] == "ok"
    assert client.recv(timeout=5) == "still shared"


def test_web_console_on_b_answers_a_client_on_a(cluster: Cluster, redis_server: RedisServer,
                                                browser: Any, closing: list[Any]) -> None:
    """
    In a real browser: the console on B shows A's client, claims and answers
    it; after a Redis restart the console says it resynchronised the queue.
    """
    from selenium.webdriver.common.by import By

    from tests.integration.test_operator_browser import wait_for

    a, b = cluster.start("a"), cluster.start("b")
    find = browser.find_element
    browser.get(f"{b.http}/console")
    find(By.ID, "token").send_keys(ALICE)
    find(By.ID, "login").click()
    wait_for(lambda: "as alice" in find(By.ID, "whoami").text)

    client, _ = ask(a, "web-a", "Where is my order?", closing)
    text = wait_for(lambda: find(By.CSS_SELECTOR, "#items tr").text)
    assert "Where is my order?" in text and "web-a" in text
    wait_for(lambda: find(By.CSS_SELECTOR, "#items tr button.claim").click() or True)
    wait_for(lambda: "claimed by alice" in find(By.CSS_SELECTOR, "#items tr").text)
    wait_for(lambda: find(By.CSS_SELECTOR, "#items tr").click() or True)
    find(By.ID, "reply-text").send_keys("It ships today.")
    find(By.ID, "reply-send").click()
    assert client.recv(timeout=10) == "It ships today."
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, "#items tr"))

    redis_server.restart(down_for=1.0)
    wait_for(lambda: "queue resynchronised: 0 open item(s)" in find(By.ID, "events").text,
             timeout=20)


def test_workers_share_the_operator_queue_through_redis(
        redis_server: RedisServer, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon], closing: list[Any]) -> None:
    """workers = 2 with the Redis broker: clients land on either worker, one
    operator (on one of them) sees and answers every item, each reply reaches
    its client; a push through the admin API reaches everyone once."""
    port = free_port()
    text = config_text(redis_server, port, "w").replace(
        "listen = tcp:0:interface=127.0.0.1\n",
        "listen = tcp:0:interface=127.0.0.1\n        workers = 2\n", 1)
    daemon = start_daemon(write_config(text, name="w.ini"))
    daemon.admin_port = port  # type: ignore[attr-defined]
    daemon.wait_for_log("ready: 2 workers listening", timeout=20)
    alice = operator(daemon, ALICE, closing)
    asked = []
    for n in range(6):  # one at a time: the operator's view takes events in order
        client, item_id = ask(daemon, f"c{n}", f"question {n}", closing)
        item = wait_item(alice, item_id)
        assert item["text"] == f"question {n}"
        answer = alice.request(type="reply", item=item_id, text=f"answer {n}")
        assert answer["type"] == "ok", answer
        assert client.recv(timeout=5) == f"answer {n}"
        asked.append((client, item_id))
    status, body = admin(daemon, "/push", {"route": "/support", "text": "closing soon"})
    assert status == 200, body
    for client, _ in asked:
        assert client.recv(timeout=5) == "closing soon"
        no_more(client, 0.3)


def test_a_retried_push_is_sent_once_with_workers_on_redis(
        redis_server: RedisServer, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon], closing: list[Any]) -> None:
    """workers = 2 with Redis (each push goes to one worker): retries with the
    same Idempotency-Key reach the worker that remembers it, so the client
    gets the message once and every retry is answered "replayed" (they used
    to take turns between the workers, and every other one sent again)."""
    port = free_port()
    text = config_text(redis_server, port, "w").replace(
        "listen = tcp:0:interface=127.0.0.1\n",
        "listen = tcp:0:interface=127.0.0.1\n        workers = 2\n", 1)
    daemon = start_daemon(write_config(text, name="w.ini"))
    daemon.wait_for_log("ready: 2 workers listening", timeout=20)
    client = connect(f"{daemon.url}/echo?client_id=kim")
    closing.append(client)
    body = json.dumps({"client": "kim", "text": "order 17 shipped"}).encode()
    answers = []
    for _ in range(4):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/push", data=body, headers={
                "Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "order-17"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answers.append(json.loads(response.read()))
    assert [a.get("replayed", False) for a in answers] == [False, True, True, True], answers
    assert client.recv(timeout=5) == "order 17 shipped"
    no_more(client, 0.5)
