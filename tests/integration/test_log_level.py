"""
C{[wsdaemon] log_level} on the real daemon: a debug line a client causes (a
visitor's message while Redis is away: "message from client ... not
queued", logged at debug, once per message) is absent from the output at
info, present at debug, under twistd and twist, in a worker's output, and
after a SIGHUP reload that changes the level.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from websockets.sync.client import connect

from tests.daemon import Daemon, free_port
from wsdaemon.strategies.operator.strategy import NOT_QUEUED, UNCONFIRMED


def config_text(level: str, workers: int = 1, redis_port: int = 0) -> str:
    # Redis on a port nothing listens on: every visitor's message fails
    # with the outage's debug line.
    return f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1
        log_level = {level}
        workers = {workers}

        [operator]
        model = queue
        tokens = alice:alice-token-0123456789abcdef
        fallback_after = 0
        fallback_when_offline = no

        [broker]
        backend = redis
        url = redis://127.0.0.1:{redis_port or free_port()}/0
        prefix = ll:
        timeout = 1
        heartbeat = 0.5

        [protocol]
        identity = claimed

        [route:/support]
        strategy = operator
        """


def send_while_redis_away(daemon: Daemon, client_id: str) -> str:
    """Send a visitor's message; return the daemon's log once it answered."""
    with connect(f"{daemon.url}/support?client_id={client_id}") as client:
        client.send("hello")
        assert client.recv(timeout=10) in (NOT_QUEUED, UNCONFIRMED)
    time.sleep(0.3)  # the line (if any) was written before the answer; let it flush
    return daemon.log()


def reload(daemon: Daemon, times: int) -> None:
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while daemon.log().count("] reloaded ") < times:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)


def debug_line(client_id: str) -> str:
    return f"message from client {client_id} on /support"


def test_info_hides_debug_and_a_reload_to_debug_shows_it(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    redis_port = free_port()
    daemon = start_daemon(write_config(config_text("info", redis_port=redis_port)))
    log = send_while_redis_away(daemon, "v1")
    assert debug_line("v1") not in log, log
    assert "#debug]" not in log, log

    write_config(config_text("debug", redis_port=redis_port))
    reload(daemon, 1)
    log = send_while_redis_away(daemon, "v2")
    assert f"[wsdaemon.operators#debug] {debug_line('v2')} not " in log, log

    write_config(config_text("info", redis_port=redis_port))
    reload(daemon, 2)
    log = send_while_redis_away(daemon, "v3")
    assert debug_line("v3") not in log, log


def test_debug_under_twist(write_config: Callable[..., Path],
                           start_daemon: Callable[..., Daemon]) -> None:
    """twist's own --log-level (info by default) does not hide what the config asks for."""
    daemon = start_daemon(write_config(config_text("debug")), runner="twist")
    log = send_while_redis_away(daemon, "v1")
    assert '"client_id": "v1"' in log and '"outcome": "not ' in log, log


def test_workers_follow_the_level(write_config: Callable[..., Path],
                                  start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(write_config(config_text("info", workers=2)))
    daemon.wait_for_log("worker 1]", timeout=20)
    for n in range(4):  # the kernel picks the worker
        log = send_while_redis_away(daemon, f"i{n}")
        assert debug_line(f"i{n}") not in log, log

    debug = start_daemon(write_config(config_text("debug", workers=2), name="debug.ini"))
    debug.wait_for_log("worker 1]", timeout=20)
    log = send_while_redis_away(debug, "d1")
    assert "#debug worker " in log and debug_line("d1") in log, log
