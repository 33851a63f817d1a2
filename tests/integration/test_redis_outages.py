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

import pytest
from websockets.sync.client import connect

from tests.daemon import Daemon, free_port
from tests.integration.test_redis_daemons import admin, config_text
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

#: Seconds a daemon may take to be healthy again once Redis answers.
RECOVERS_WITHIN = 3.0


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
