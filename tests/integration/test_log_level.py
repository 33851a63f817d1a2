"""
C{[wsdaemon] log_level} on the real daemon: a debug line a client causes (a
visitor's message while Redis is away: "a message from ... was not
stored", logged at debug, once per message) is absent from the output at
info, present at debug, under twistd and twist, in a worker's output, and
after a SIGHUP reload that changes the level.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from websockets.sync.client import connect

from tests.daemon import Daemon, free_port
from wsdaemon.support.visitor import NOT_STORED, UNCONFIRMED


def config_text(level: str, redis_port: int, workers: int = 1) -> str:
    # Redis on a port nothing listens on: the conversations cannot be
    # loaded, and every visitor's message fails with the outage's debug line.
    return f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1
        log_level = {level}
        workers = {workers}

        [operator]
        tokens = alice:alice-token-0123456789abcdef
        fallback_after = 0

        [broker]
        backend = redis
        url = redis://127.0.0.1:{redis_port}/0
        prefix = ll:
        timeout = 1
        heartbeat = 0.5

        [protocol]
        identity = claimed

        [route:/support]
        strategy = operator
        """


def send_while_redis_away(daemon: Daemon, *client_ids: str) -> str:
    """Each visitor sends a message at once (each waits for the store's
    timeout, 1 s); return the daemon's log once all are answered."""
    with ExitStack() as stack:
        clients = [stack.enter_context(connect(f"{daemon.url}/support?client_id={client_id}"))
                   for client_id in client_ids]
        for client in clients:
            client.send("hello")
        for client in clients:
            assert client.recv(timeout=10) in (NOT_STORED, UNCONFIRMED)
    time.sleep(0.3)  # the line (if any) was written before the answer; let it flush
    return daemon.log()


def reload(daemon: Daemon, times: int) -> None:
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while daemon.log().count("] reloaded ") < times:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)


def debug_line(client_id: str) -> str:
    return f"a message from {client_id} on /support was not stored"


def test_info_hides_debug_and_a_reload_to_debug_shows_it(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """At info the debug line is not written; a reload to debug writes it,
    one back to info hides it again."""
    redis_port = free_port()
    daemon = start_daemon(write_config(config_text("info", redis_port)))
    log = send_while_redis_away(daemon, "v1")
    assert debug_line("v1") not in log, log
    assert "#debug]" not in log, log

    write_config(config_text("debug", redis_port))
    reload(daemon, 1)
    log = send_while_redis_away(daemon, "v2")
    assert f"[wsdaemon.support.visitor#debug] conversations: {debug_line('v2')}" in log, log

    write_config(config_text("info", redis_port))
    reload(daemon, 2)
    log = send_while_redis_away(daemon, "v3")
    assert debug_line("v3") not in log, log


def test_debug_under_twist(write_config: Callable[..., Path],
                           start_daemon: Callable[..., Daemon]) -> None:
    """twist's own --log-level (info by default) does not hide what the config asks for."""
    daemon = start_daemon(write_config(config_text("debug", free_port())), runner="twist")
    log = send_while_redis_away(daemon, "v1")
    assert '"client_id": "v1"' in log and " was not stored or not confirmed" in log, log


def test_workers_follow_the_level(write_config: Callable[..., Path],
                                  start_daemon: Callable[..., Daemon]) -> None:
    """Each worker writes what the level lets through: nothing at info, the
    line (marked with the worker) once a reload asked for debug."""
    redis_port = free_port()
    daemon = start_daemon(write_config(config_text("info", redis_port, workers=2)))
    daemon.wait_for_log("worker 1]", timeout=20)
    visitors = [f"i{n}" for n in range(6)]  # the kernel picks each one's worker
    log = send_while_redis_away(daemon, *visitors)
    assert "was not stored" not in log and "#debug worker " not in log, log

    write_config(config_text("debug", redis_port, workers=2))
    reload(daemon, 1)
    for batch in range(4):  # until both workers had one (each batch: 1 in 32 they did not)
        visitors = [f"d{batch}-{n}" for n in range(6)]
        log = send_while_redis_away(daemon, *visitors)
        assert all(debug_line(v) in log for v in visitors), log
        if "#debug worker 0]" in log and "#debug worker 1]" in log:
            break
    assert "#debug worker 0]" in log and "#debug worker 1]" in log, log
