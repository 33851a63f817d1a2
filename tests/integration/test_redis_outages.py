"""
Redis going away in the ways production sees, with the daemons coming back
by themselves: stalls longer than the call timeout (a slow fork, a busy
script: here CLIENT PAUSE), restarts while Redis loads its data (LOADING),
an answer lost after Redis did the work (the client is told the truth and
may resend without making a duplicate), and many restarts under load (kill
-9 and clean stops) with nothing accepted lost and nothing queued twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.daemon import Daemon, free_port
from tests.integration.test_operator_daemon import ALICE
from tests.integration.test_redis_daemons import admin, ask, closing, config_text, operator
from tests.redis_server import RedisServer
from tests.tcp_proxy import AnswerLosingRelay
from wsdaemon.strategies.operator.strategy import NOT_QUEUED, RECEIVED_BEFORE, UNCONFIRMED

__all__ = ["closing"]  # a fixture, shared with test_redis_daemons

pytestmark = pytest.mark.slow

#: Seconds a daemon may take to be healthy again once Redis answers.
RECOVERS_WITHIN = 3.0
#: Keys enough for Redis to load for seconds with --key-load-delay 50.
FILL = "for i = 1, 20000 do redis.call('SET', 'filler:' .. i, 'x') end return 1"
#: Items under the prefix ARGV[1].
COUNT_ITEMS = "return #redis.call('KEYS', ARGV[1] .. 'item:*')"


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
