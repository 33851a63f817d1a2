"""
Issue 21's promises for conversations on Redis (`[operator] model =
conversations`, `[broker] backend = redis`), proven on a real redis-server
as the queue's are in test_redis_outages: stalls of 3, 12 and 30 s (CLIENT
PAUSE) from which the daemon comes back by itself; Redis loading its data
(LOADING) answered with a retryable error and logged once; and Redis killed
and stopped ten times under load (AOF, appendfsync always) with nothing a
visitor was acknowledged for lost or stored twice, and every operator reply
reaching its visitor once.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon, free_port
from tests.operator_client import Operator
from tests.redis_server import RedisServer
from wsdaemon.support.visitor import NOT_STORED, UNCONFIRMED

pytestmark = pytest.mark.slow

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdefgh"
ADMIN_KEY = "admin-key-0123456789abcdef"
CHAT = "wsdaemon.chat.v1"
ACK = "Thanks! We will be with you shortly."
#: What a structured visitor is told when its message was not stored or
#: not confirmed (both say to send it again with the same id).
RESEND = "send it again with the same id"
#: Seconds a daemon may take to be healthy again once Redis answers.
RECOVERS_WITHIN = 3.0
#: Keys enough for Redis to load for seconds with --key-load-delay 50.
FILL = "for i = 1, 20000 do redis.call('SET', 'filler:' .. i, 'x') end return 1"


def config_text(redis: RedisServer, shared: Path, name: str, admin_port: int) -> str:
    return f"""
[admin]
listen = tcp:{admin_port}:interface=127.0.0.1
api_keys = ops:{ADMIN_KEY}

[wsdaemon]
listen = tcp:0:interface=127.0.0.1

[protocol]
identity = anonymous
identity_secret_file = {shared / "identity.key"}

[operator]
model = conversations
tokens =
    alice:{ALICE}
    bob:{BOB}
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
def daemons(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[[str], Daemon]]:
    """Start daemons on the test's Redis (the first writes the shared identity key)."""
    started: list[Daemon] = []

    def start(name: str) -> Daemon:
        config = tmp_path / f"{name}.ini"
        admin_port = free_port()
        config.write_text(config_text(redis_server, tmp_path, name, admin_port),
                          encoding="utf-8")
        daemon = Daemon(config)
        daemon.admin_port = admin_port  # type: ignore[attr-defined]
        started.append(daemon)
        daemon.wait_for_log("live conversations loaded", timeout=15)
        daemon.wait_for_log("redis: connected", timeout=10)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.stop()


def health(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    port = daemon.admin_port  # type: ignore[attr-defined]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz",
                                      headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def redis_up(daemon: Daemon) -> bool:
    status, said = health(daemon)
    return bool(status == 200 and said["broker"]["up"] and said["status"] == "ok")


def wait_healthy(daemon: Daemon, timeout: float) -> float:
    """@return: the monotonic time /healthz first said Redis is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_up(daemon):
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"/healthz still says Redis is down {timeout} s later:\n"
                         f"{health(daemon)}")


def frames(ws: ClientConnection, kind: str | tuple[str, ...], timeout: float = 10,
           where: Callable[[dict[str, Any]], bool] = lambda _: True) -> dict[str, Any]:
    """The next frame of C{kind} (one of) that C{where} accepts (others skipped)."""
    kinds = (kind,) if isinstance(kind, str) else kind
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame.get("type") in kinds and where(frame):
            return frame  # type: ignore[no-any-return]


def structured(daemon: Daemon, cookie: str | None = None) -> ClientConnection:
    ws = connect(f"{daemon.url}/support", subprotocols=[CHAT],  # type: ignore[list-item]
                 additional_headers={"Cookie": cookie} if cookie else {})
    assert ws.subprotocol == CHAT
    return ws


def cookie_of(ws: ClientConnection) -> str:
    assert ws.response is not None
    return ws.response.headers["Set-Cookie"].split(";", 1)[0]


def heard_by(desk: Operator, text: str, timeout: float = 10) -> dict[str, Any]:
    """The message C{text} as an operator event brought it (new conversation or message)."""
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(desk.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if event.get("message", {}).get("text") == text:
            return event["message"]  # type: ignore[no-any-return]


def log_lines(daemon: Daemon, text: str) -> int:
    return sum(text in line for line in daemon.log().splitlines())


def test_stalls_of_3_12_and_30_seconds(redis_server: RedisServer,
                                       daemons: Callable[[str], Daemon]) -> None:
    """
    With timeout = 1, Redis stalled (CLIENT PAUSE) for 3, 12 and 30 s:
    meanwhile a structured visitor's message is answered with an error
    telling it to send it again with the same id, and a plain visitor's
    with "could not be queued" or "may have reached us"; each time, without
    a restart, the daemon is healthy within a few seconds of Redis answering,
    the message sent again is acknowledged once and reaches the operator
    over protocol 2. The log says unreachable and reachable again once per
    stall, never a traceback.
    """
    daemon = daemons("a")
    visitor = structured(daemon)
    visitor.send(json.dumps({"type": "hello"}))
    frames(visitor, "welcome")
    plain = connect(f"{daemon.url}/support")
    desk = Operator(daemon, ALICE)
    told: dict[str, str] = {}
    for n, seconds in enumerate((3, 12, 30)):
        text = f"after a {seconds} s stall"
        redis_server.pause(seconds)
        time.sleep(0.2)
        visitor.send(json.dumps({"type": "message", "id": f"c-{n}", "text": text}))
        error = frames(visitor, "error", timeout=5)
        assert RESEND in error["error"] and error["id"] == f"c-{n}", error
        told[sent := f"plain during a {seconds} s stall"] = ""
        plain.send(sent)
        told[sent] = str(plain.recv(timeout=5))
        assert told[sent] in (NOT_STORED, UNCONFIRMED), told
        if seconds > 10:
            daemon.wait_for_log("redis: unreachable", timeout=seconds)
            assert not redis_up(daemon)
        answered = redis_server.wait_answering(timeout=seconds + 5)
        took = wait_healthy(daemon, timeout=60) - answered
        print(f"stall of {seconds} s: healthy {max(0, took):.2f} s after Redis answered")
        assert took < RECOVERS_WITHIN
        visitor.send(json.dumps({"type": "message", "id": f"c-{n}", "text": text}))
        ack = frames(visitor, "ack", where=lambda f, i=f"c-{n}": f["id"] == i)
        assert heard_by(desk, text)["seq"] == ack["seq"]
    print(f"plain visitor told: {Counter(told.values())}")
    visitor.close()
    # What a plain visitor was told had failed was not stored.
    plain_thread = structured(daemon, cookie_of(plain))
    plain_thread.send(json.dumps({"type": "hello", "after": 0}))
    stored = {m["text"] for m in frames(plain_thread, "welcome")["messages"]}
    plain_thread.close()
    assert not {t for t, a in told.items() if a == NOT_STORED} & stored, (told, stored)
    plain.close()
    desk.close()
    # Each message stored once, however often it was sent.
    whole = structured(daemon, cookie_of(visitor))
    whole.send(json.dumps({"type": "hello", "after": 0}))
    texts = [m["text"] for m in frames(whole, "welcome")["messages"]
             if m["author"] == "visitor"]
    whole.close()
    assert [t for t in texts if t.startswith("after a")] == [
        f"after a {s} s stall" for s in (3, 12, 30)]
    log = daemon.log()
    assert "Traceback" not in log, log
    assert log_lines(daemon, "redis: unreachable") <= 3, log


def test_redis_loading_its_data_is_an_outage_answered_try_again(
        redis_server: RedisServer, daemons: Callable[[str], Daemon]) -> None:
    """
    Redis restarted with data to load (LOADING for seconds): an operator's
    replies are refused with a retryable error saying to try again (never
    "internal error"), a structured visitor is told to send its message
    again with the same id, a plain one that it could not be queued; the
    daemon logs the outage once, no traceback, and once Redis has loaded the
    operator's reply and the visitor's message sent again go through.
    """
    daemon = daemons("a")
    visitor = structured(daemon)
    visitor.send(json.dumps({"type": "hello"}))
    frames(visitor, "welcome")
    visitor.send(json.dumps({"type": "message", "id": "c-0", "text": "before the restart"}))
    frames(visitor, "ack")
    plain = connect(f"{daemon.url}/support")
    desk = Operator(daemon, ALICE)
    [summary] = desk.request(type="conversations", view="all")["conversations"]
    conversation = summary["id"]
    assert redis_server.command("EVAL", FILL, "0") == ":1"
    redis_server.stop()
    redis_server.start("--key-load-delay", "50", wait=False)
    assert str(redis_server.command("PING")).startswith("-LOADING")
    answers: list[dict[str, Any]] = []
    visitor_told: list[dict[str, Any]] = []
    plain_told: list[str] = []
    n = 0
    while redis_server.command("PING") != "+PONG":
        n += 1
        answers.append(desk.request(type="reply", conversation=conversation,
                                    text=f"while loading {n}"))
        visitor.send(json.dumps({"type": "message", "id": f"c-{n}", "text": f"loading {n}"}))
        visitor_told.append(frames(visitor, ("error", "ack"), timeout=10,
                                   where=lambda f, i=f"c-{n}": f.get("id") == i))
        plain.send(f"plain loading {n}")
        plain_told.append(str(plain.recv(timeout=10)))
    errors = [answer["error"] for answer in answers if answer["type"] == "error"]
    print(f"{len(answers)} replies while loading: {len(errors)} told to try again: "
          f"{Counter(errors)}; plain told {Counter(plain_told)}")
    assert errors and all(error.endswith("try again") for error in errors), errors
    assert all("internal error" not in error for error in errors), errors
    assert all(RESEND in told["error"] for told in visitor_told[:-1]), visitor_told
    assert visitor_told[0]["type"] == "error", visitor_told
    # (The last one may have found Redis loaded.)
    assert NOT_STORED in plain_told, plain_told
    wait_healthy(daemon, timeout=10)
    answer = desk.request(type="reply", conversation=conversation, text="loaded")
    assert answer["type"] == "ok", answer
    reply = frames(visitor, "message", where=lambda m: m.get("author") == "operator")
    assert reply["text"] in {"loaded"} | {f"while loading {i}" for i in range(n + 1)}
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "loading 1"}))
    frames(visitor, "ack", where=lambda f: f["id"] == "c-1")
    for ws in (visitor, plain):
        ws.close()
    desk.close()
    log = daemon.log()
    assert log_lines(daemon, "redis: unreachable") == 1, log
    assert "Traceback" not in log and "internal error" not in log, log
