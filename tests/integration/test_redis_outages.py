"""
Redis going away in the ways production sees, with the daemons coming back
by themselves: stalls longer than the call timeout (a slow fork, a busy
script: here CLIENT PAUSE), restarts while Redis loads its data (LOADING),
an answer lost after Redis did the work (the client is told the truth and
may resend without making a duplicate), and many restarts under load (kill
-9 and clean stops) with nothing accepted lost and nothing queued twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from websockets.sync.client import connect

from tests.daemon import Daemon, free_port
from tests.integration.test_operator_daemon import ALICE, BOB
from tests.integration.test_redis_daemons import admin, ask, closing, config_text, operator
from tests.operator_client import Operator
from tests.redis_server import RedisServer
from tests.tcp_proxy import AnswerLosingRelay
from wsdaemon.broker.link import BrokerSettings, RedisLink
from wsdaemon.strategies.operator.strategy import NOT_QUEUED, RECEIVED_BEFORE, UNCONFIRMED

__all__ = ["closing"]  # a fixture, shared with test_redis_daemons

pytestmark = pytest.mark.slow

#: Seconds a daemon may take to be healthy again once Redis answers.
RECOVERS_WITHIN = 3.0
#: Keys enough for Redis to load for seconds with --key-load-delay 50.
FILL = "for i = 1, 20000 do redis.call('SET', 'filler:' .. i, 'x') end return 1"
SHORT = {NOT_QUEUED: "not queued", UNCONFIRMED: "not confirmed",
         RECEIVED_BEFORE: "received before"}
#: Items under the prefix ARGV[1]; texts found in more than one of them.
COUNT_ITEMS = "return #redis.call('KEYS', ARGV[1] .. 'item:*')"
COUNT_REPEATED_TEXTS = """
local seen, repeated = {}, 0
for _, key in ipairs(redis.call('KEYS', ARGV[1] .. 'item:*')) do
  local text = redis.call('HGET', key, 'text')
  if seen[text] then repeated = repeated + 1 end
  seen[text] = true
end
return repeated
"""


def start(redis: RedisServer, write_config: Callable[..., Path],
          start_daemon: Callable[..., Daemon], name: str, timeout: float = 1) -> Daemon:
    port = free_port()
    text = config_text(redis, port, name).replace("timeout = 1\n", f"timeout = {timeout:g}\n")
    daemon = start_daemon(write_config(text, name=f"{name}.ini"))
    daemon.admin_port = port  # type: ignore[attr-defined]
    daemon.wait_for_log("open item(s) in Redis", timeout=10)
    return daemon


def broker_up(daemon: Daemon) -> bool:
    status, health = admin(daemon, "/healthz")
    return bool(status == 200 and health["broker"]["up"] and health["status"] == "ok")


def wait_healthy(daemon: Daemon, timeout: float) -> float:
    """@return: the monotonic time /healthz first said the broker is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker_up(daemon):
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"/healthz still says Redis is down {timeout} s later:\n"
                         f"{admin(daemon, '/healthz')[1]}")


def queued(daemon: Daemon, client_id: str, text: str) -> str:
    with connect(f"{daemon.url}/support?client_id={client_id}") as client:
        client.send(text)
        return str(client.recv(timeout=10))


def stall_and_recover(redis: RedisServer, daemon: Daemon, seconds: float) -> float:
    """
    Stall Redis for C{seconds}; return how long after Redis answered again
    the daemon was healthy, having checked that it then queues a message.
    """
    redis.pause(seconds)
    if seconds > 10:
        daemon.wait_for_log("redis: unreachable", timeout=seconds)
        assert not broker_up(daemon)
    answered = redis.wait_answering(timeout=seconds + 5)
    healthy = wait_healthy(daemon, timeout=60)
    took = max(0.0, healthy - answered)
    ack = queued(daemon, f"after-{seconds:g}", f"after a {seconds:g} s stall")
    assert ack.startswith("queued #"), ack
    print(f"stall of {seconds:g} s: healthy {took:.2f} s after Redis answered")
    return took


def assert_quiet(daemon: Daemon) -> None:
    log = daemon.log()
    assert "Traceback" not in log, log
    assert "could not set dbid" not in log, log


def test_recovers_from_stalls_of_3_and_12_seconds(redis_server: RedisServer,
                                                  write_config: Callable[..., Path],
                                                  start_daemon: Callable[..., Daemon]) -> None:
    """
    With timeout = 5, Redis stalled for 3 s and then 12 s (more than twice
    the timeout): each time the daemon is healthy again within a few seconds
    of Redis answering, and queues messages again.
    """
    daemon = start(redis_server, write_config, start_daemon, "a", timeout=5)
    for seconds in (3, 12):
        assert stall_and_recover(redis_server, daemon, seconds) < RECOVERS_WITHIN
    assert_quiet(daemon)


def test_recovers_from_a_30_second_stall(redis_server: RedisServer,
                                         write_config: Callable[..., Path],
                                         start_daemon: Callable[..., Daemon]) -> None:
    """With timeout = 5, a 30 s stall: healthy again within seconds, queueing again."""
    daemon = start(redis_server, write_config, start_daemon, "a", timeout=5)
    assert stall_and_recover(redis_server, daemon, 30) < RECOVERS_WITHIN
    assert_quiet(daemon)


def test_redis_loading_its_data_is_an_outage_answered_try_again(
        redis_server: RedisServer, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon], closing: list[Any]) -> None:
    """
    Redis restarted with data to load (LOADING for seconds): operators are
    told to try again (never "internal error"), clients that their message
    could not be queued; the daemon logs the outage once, no traceback, and
    works again once Redis has loaded.
    """
    daemon = start(redis_server, write_config, start_daemon, "a")
    client, item_id = ask(daemon, "c1", "before the restart", closing)
    alice = operator(daemon, ALICE, closing)
    assert redis_server.command("EVAL", FILL, "0") == ":1"
    redis_server.stop()
    redis_server.start("--key-load-delay", "50", wait=False)
    assert str(redis_server.command("PING")).startswith("-LOADING")
    answers, told = [], []
    while redis_server.command("PING") != "+PONG":
        answers.append(alice.request(type="claim", item=item_id))
        client.send("while Redis loads")
        told.append(str(client.recv(timeout=10)))
    errors = [answer["error"] for answer in answers if answer["type"] == "error"]
    print(f"{len(answers)} claims while loading: {len(errors)} told to try again")
    assert errors and all(error.endswith("try again") for error in errors), errors
    # (The last one may have found Redis loaded.)
    assert all(t == NOT_QUEUED or t.startswith("queued #") for t in told), told
    assert NOT_QUEUED in told
    wait_healthy(daemon, timeout=10)
    assert alice.request(type="reply", item=item_id, text="loaded")["type"] == "ok"
    while (message := str(client.recv(timeout=5))) != "loaded":
        assert message.startswith("queued #"), message  # a send that found Redis loaded
    log = daemon.log()
    assert log.count("redis: unreachable") == 1, log
    assert "Traceback" not in log and "internal error" not in log, log


def test_a_message_stored_whose_answer_was_lost_is_not_queued_twice(
        redis_server: RedisServer, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon], closing: list[Any]) -> None:
    """
    Redis stores a client's message but its answer never comes back: the
    client is told the message could not be confirmed (not that it failed).
    Sent again while it waits for an operator, it is acknowledged as the
    same item; sent again after an operator answered it (the answer
    delivered), the client is told it had been received. Each is queued once.
    """
    relay = AnswerLosingRelay(redis_server.port)
    closing.append(relay)
    port = free_port()
    text = config_text(redis_server, port, "a").replace(
        redis_server.url, f"redis://127.0.0.1:{relay.port}/0")
    daemon = start_daemon(write_config(text, name="a.ini"))
    daemon.admin_port = port  # type: ignore[attr-defined]
    daemon.wait_for_log("open item(s) in Redis", timeout=10)
    client, first = ask(daemon, "c1", "first question", closing)
    for question in ("are you there?", "hello?"):
        relay.losing.set()
        client.send(question)
        assert client.recv(timeout=10) == UNCONFIRMED
        relay.stop_losing()
        wait_healthy(daemon, timeout=10)
    alice = operator(daemon, ALICE, closing)
    stored = {i["text"]: i["item_id"] for i in alice.hello["items"]}
    assert list(stored) == ["first question", "are you there?", "hello?"]
    client.send("are you there?")
    assert client.recv(timeout=10) == f"queued #2 as {stored['are you there?']}"
    assert alice.request(type="reply", item=stored["hello?"], text="hi!")["type"] == "ok"
    assert client.recv(timeout=10) == "hi!"
    client.send("hello?")
    assert client.recv(timeout=10) == RECEIVED_BEFORE
    listed = alice.request(type="list")["items"]
    assert [i["text"] for i in listed] == ["first question", "are you there?"]
    assert redis_server.command("EVAL", COUNT_ITEMS, "0", "it:") == ":3"


class LoadClient(threading.Thread):
    """
    One client sending numbered messages one after another, each sent again
    until it is acknowledged (told it could not be queued or confirmed, or
    its connection broke), collecting the answers it gets.
    """

    def __init__(self, url: str, name: str, stop_sending: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url = f"{url}/support?client_id={name}"
        self.name = name
        self.stop_sending = stop_sending
        self.accepted: list[str] = []
        self.answers: list[str] = []
        self.problems: list[str] = []
        self.told: Counter[str] = Counter()

    def run(self) -> None:
        pending: str | None = None
        n = 0
        deadline = None
        ws = connect(self.url)
        while True:
            if pending is None and not self.stop_sending.is_set():
                pending, n = f"{self.name}-{n}", n + 1
                ws.send(pending)
            if pending is None and deadline is None:
                deadline = time.monotonic() + 30
            if deadline is not None and not set(self.accepted) - set(self.answers):
                # All answered: listen a little longer for a second copy
                # (a reply given back after twice the call timeout).
                deadline = min(deadline, time.monotonic() + 3)
            if deadline is not None and time.monotonic() > deadline:
                break
            try:
                message = str(ws.recv(timeout=0.5))
            except TimeoutError:
                continue
            except Exception as e:  # the daemon closed: not expected, but resend
                self.problems.append(f"connection: {e!r}")
                ws = connect(self.url)
                if pending is not None:
                    ws.send(pending)
                continue
            if message.startswith("queued #") or message == RECEIVED_BEFORE:
                assert pending is not None
                self.told["queued" if message.startswith("queued #") else message] += 1
                self.accepted.append(pending)
                pending = None
                time.sleep(0.1)
            elif message in (NOT_QUEUED, UNCONFIRMED):
                assert pending is not None
                self.told[message] += 1
                time.sleep(0.1)
                ws.send(pending)
            elif message.startswith("answer to "):
                self.answers.append(message.removeprefix("answer to "))
            else:
                self.problems.append(f"unexpected {message!r}")
        ws.close()


class AnsweringOperator(threading.Thread):
    """Lists the open items on its daemon and answers each ("answer to TEXT")."""

    def __init__(self, daemon: Daemon, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.daemon_ = daemon
        self.token = token
        self.stop = stop
        self.answered = 0
        self.errors: dict[str, int] = {}

    def run(self) -> None:
        op = Operator(self.daemon_, self.token)
        try:
            while not self.stop.is_set():
                listed = op.request(type="list", limit=1000)
                for item in listed.get("items", ()):
                    answer = op.request(type="reply", item=item["item_id"],
                                        text=f"answer to {item['text']}")
                    if answer["type"] == "ok":
                        self.answered += 1
                    else:
                        why = answer["error"].split(":")[-1].strip()
                        self.errors[why] = self.errors.get(why, 0) + 1
                time.sleep(0.1)
        finally:
            op.close()


def test_redis_restarted_ten_times_under_load_loses_nothing_queues_nothing_twice(
        redis_server: RedisServer, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """
    Two daemons under load from clients and operators while Redis (AOF,
    appendfsync always) is restarted 10 times, alternately killed with
    kill -9 and stopped cleanly: every message a client was told was queued
    is answered exactly once, and every message is queued once, however
    often it was sent again after "could not be queued" or "could not
    confirm".
    """
    daemons = []
    for name in ("a", "b"):
        port = free_port()
        text = config_text(redis_server, port, name).replace(
            "fallback_when_offline = no\n",
            "fallback_when_offline = no\n        max_open_per_client = 0\n")
        daemon = start_daemon(write_config(text, name=f"{name}.ini"))
        daemon.admin_port = port  # type: ignore[attr-defined]
        daemons.append(daemon)
    for daemon in daemons:
        daemon.wait_for_log("open item(s) in Redis", timeout=10)
    stop_sending, stop_answering = threading.Event(), threading.Event()
    clients = [LoadClient(daemons[n % 2].url, f"c{n}", stop_sending) for n in range(8)]
    operators = [AnsweringOperator(d, token, stop_answering)
                 for d, token in zip(daemons, (ALICE, BOB), strict=True)]
    for thread in (*clients, *operators):
        thread.start()
    started = time.monotonic()
    for restart in range(10):
        time.sleep(1.5)
        if restart % 2:
            redis_server.stop()
        else:
            redis_server.kill()
        # Away for less than the call timeout, for more (then clients are
        # told their message could not be queued), or for more than twice
        # (then replies taken and not settled may be given back).
        time.sleep((0.3, 1.5, 3.0)[restart % 3])
        redis_server.start()
    time.sleep(1.5)
    stop_sending.set()
    for client in clients:
        client.join(40)
    stop_answering.set()
    for op in operators:
        op.join(15)
    took = time.monotonic() - started
    accepted = [text for c in clients for text in c.accepted]
    answers = Counter(text for c in clients for text in c.answers)
    told = sum((c.told for c in clients), Counter[str]())
    print(f"{len(accepted)} messages accepted in {took:.0f} s; clients told: "
          f"{ {SHORT.get(k, k): v for k, v in told.items()} }; operators answered "
          f"{sum(op.answered for op in operators)}, refused: "
          f"{[op.errors for op in operators]}")
    problems = [f"{c.name}: {p}" for c in clients for p in c.problems]
    assert not problems, problems
    lost = sorted(set(accepted) - set(answers))
    twice = sorted(text for text, count in answers.items() if count > 1)
    strays = sorted(set(answers) - set(accepted))
    assert (lost, twice, strays) == ([], [], []), "lost, answered twice, never accepted"
    assert len(accepted) == len(set(accepted))
    # Queued once: every message is one item in Redis, however often it was sent.
    assert redis_server.command("EVAL", COUNT_ITEMS, "0", "it:") == f":{len(accepted)}"
    assert redis_server.command("EVAL", COUNT_REPEATED_TEXTS, "0", "it:") == ":0"


@pytest_twisted.inlineCallbacks
def test_a_reply_written_before_an_outage_is_not_given_back(
        redis_server: RedisServer) -> Iterator[Any]:
    """
    The sweep's rule for a live daemon's taken messages, in the scripts: one
    it wrote but could not settle before Redis went away is not given back
    (it would be written twice), however long ago by anyone's clock; its
    heartbeat settles it. One it took but never heard of (the script's
    answer was lost) is given back once its heartbeat has passed it by
    twice the timeout.
    """
    link = RedisLink(BrokerSettings(url=redis_server.url, port=redis_server.port, prefix="w:",
                                    daemon_id="test", timeout=1), reactor)
    link.start()
    try:
        yield link.call("PING")
        message = json.dumps({"client_id": "c1", "route": "/support", "direction": "out",
                              "sender": "ann", "body": "hi", "at": 0})
        t = 1000.0
        yield link.script("heartbeat", "a", 0, t, 60)
        written = yield link.script("store_message", "c1", message, "take", "a", t + 1)
        # Redis away for a long time; daemon a still holds the settlement.
        yield link.script("sweep", t + 50, "0", "fallback", 500, 2.0, "1")
        assert (yield link.call("ZRANGE", "w:undelivered:c1", 0, -1)) == []
        yield link.script("heartbeat", "a", 0, t + 51, 60, "c1", written, "1")
        assert (yield link.call("ZCARD", "w:inflight:a")) == 0
        # Taken for a, whose answer never reached it: back after its heartbeat.
        unheard = yield link.script("store_message", "c1", message, "take", "a", t + 52)
        yield link.script("sweep", t + 53, "0", "fallback", 500, 2.0, "1")
        assert (yield link.call("ZRANGE", "w:undelivered:c1", 0, -1)) == []
        yield link.script("heartbeat", "a", 0, t + 55, 60)
        yield link.script("sweep", t + 55, "0", "fallback", 500, 2.0, "1")
        assert (yield link.call("ZRANGE", "w:undelivered:c1", 0, -1)) == [str(unheard)]
    finally:
        yield link.stop()


@pytest_twisted.inlineCallbacks
def test_the_first_sweep_after_a_long_outage_gives_back_nothing_written(
        redis_server: RedisServer) -> Iterator[Any]:
    """
    After an outage longer than three heartbeats every daemon's heartbeat
    has run out: the first sweep, by a daemon just connected again, does not
    take the others for dead and give back a reply one of them wrote just
    before the outage and could not settle (the CI failure: written twice).
    A sweep by a daemon connected long enough to have heard a live one does:
    that daemon died.
    """
    link = RedisLink(BrokerSettings(url=redis_server.url, port=redis_server.port, prefix="w:",
                                    daemon_id="test", timeout=1), reactor)
    link.start()
    try:
        yield link.call("PING")
        message = json.dumps({"client_id": "c1", "route": "/support", "direction": "out",
                              "sender": "ann", "body": "hi", "at": 0})
        t = 1000.0
        yield link.script("heartbeat", "a", 0, t, 1.5)
        written = yield link.script("store_message", "c1", message, "take", "a", t + 0.1)
        # Redis away 5 s; daemon b is back first and sweeps at once.
        yield link.script("heartbeat", "b", 0, t + 5.2, 1.5)
        yield link.script("sweep", t + 5.2, "0", "fallback", 500, 2.0, "0")
        assert (yield link.call("ZRANGE", "w:undelivered:c1", 0, -1)) == []
        assert (yield link.call("ZCARD", "w:inflight:a")) == 1
        # a is back: its heartbeat settles what it wrote.
        yield link.script("heartbeat", "a", 0, t + 5.4, 1.5, "c1", written, "1")
        assert (yield link.call("ZCARD", "w:inflight:a")) == 0
        # a takes one more, and dies; b, connected long enough, gives it back.
        unheard = yield link.script("store_message", "c1", message, "take", "a", t + 5.5)
        yield link.script("heartbeat", "b", 0, t + 10, 1.5)
        yield link.script("sweep", t + 10, "0", "fallback", 500, 2.0, "1")
        assert (yield link.call("ZRANGE", "w:undelivered:c1", 0, -1)) == [str(unheard)]
    finally:
        yield link.stop()
