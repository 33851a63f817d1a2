"""
Workers die with their supervisor: one killed outright (kill -9, the OOM
killer) runs no stop code, and its workers used to keep serving the port on
the old config, unseen by push, reload, journal and metrics, taking half the
connections of the daemon started next. Each way a worker learns of it is
tested alone too: the pipe from the supervisor (everywhere), Linux's parent
death signal, and a supervisor gone before the worker could ask.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon
from tests.integration.test_workers import wait_workers

pytestmark = pytest.mark.slow

CONFIG = """
[wsdaemon]
listen = tcp:0:interface=127.0.0.1
workers = {workers}

[route:/bot]
strategy = scripted
rules = bot.toml
"""


def write_daemon(directory: Path, workers: int, reply: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "bot.toml").write_text(f'[default]\nreply = "{reply}"\n')
    path = directory / "wsdaemon.ini"
    path.write_text(CONFIG.format(workers=workers))
    return path


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie (an orphan's reaper may be slow or absent)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def wait_gone(pids: list[int], timeout: float) -> float:
    """@return: how long it took for every one of C{pids} to exit."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(gone(pid) for pid in pids):
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"still running after {timeout} s: "
                         f"{[pid for pid in pids if not gone(pid)]}")


def kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        if not gone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def closed_with(ws: ClientConnection, timeout: float) -> int | None:
    """@return: the close code the server sent (None: no close frame)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=timeout)
    return None if closed.value.rcvd is None else closed.value.rcvd.code


def test_workers_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    """kill -9 of the supervisor (workers = 2): both workers stop accepting,
    close their clients with 1001 and exit within seconds; the port is free,
    and a daemon started next on it gets every connection."""
    old = Daemon(write_daemon(tmp_path / "old", 2, "old"))
    pids = wait_workers(old.process.pid, 2)
    try:
        old.wait_for_log("ready: 2 workers listening", timeout=20)
        clients = [connect(f"{old.url}/bot") for _ in range(8)]
        for ws in clients:
            ws.send("x")
            assert ws.recv(timeout=5) == "old"
        old.kill()
        took = wait_gone(pids, timeout=10)
        assert took < 7
        for ws in clients:
            assert closed_with(ws, timeout=5) == 1001
        log = old.log()
        assert log.count("the supervisor (pid ") == 2 and "is gone: stopping" in log, log
        new = Daemon(write_daemon(tmp_path / "new", 2, "new"), port=old.port)
        try:
            new.wait_for_log("ready: 2 workers listening", timeout=20)
            answers = []
            for _ in range(20):
                with connect(f"{new.url}/bot") as ws:
                    ws.send("x")
                    answers.append(ws.recv(timeout=5))
            assert answers == ["new"] * 20
        finally:
            assert new.stop() == 0
    finally:
        kill_leftovers(pids)
        old.stop()


@contextmanager
def worker_by_hand(config: Path, supervisor_pid: int,
                   spawn: Callable[[list[str], dict[str, str], tuple[int, ...]], int]
                   ) -> Iterator[tuple[int, int, Path]]:
    """
    Start worker 0 of C{config} as a supervisor would (an inherited listening
    socket, the ready pipe, C{WSDAEMON_SUPERVISOR_PID}), through C{spawn}.

    @return: the worker's pid, its port and its log.
    """
    from wsdaemon.server.supervisor import worker_command

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    port = listener.getsockname()[1]
    ready_read, ready_write = os.pipe()
    log = config.parent / "worker.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               WSDAEMON_LISTEN_FDS=f"{listener.fileno()}:INET",
               WSDAEMON_READY_FD=str(ready_write),
               WSDAEMON_SUPERVISOR_PID=str(supervisor_pid))
    env.pop("WSDAEMON_ADMIN_SOCKET", None)
    command = worker_command(["--config", str(config)], 0)
    pid = spawn(command, env, (listener.fileno(), ready_write))
    os.close(ready_write)
    listener.close()
    try:
        yield pid, port, log
    finally:
        os.close(ready_read)
        kill_leftovers([pid])


def wait_ready(log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and "] ready" in log.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"the worker was not ready:\n{log.read_text() if log.exists() else ''}")


def test_a_worker_stops_when_the_pipe_from_its_supervisor_ends(tmp_path: Path) -> None:
    """End of file on the worker's stdin (the supervisor's end closed, its
    process still there: no parent death signal) stops the worker: its
    client gets 1001, it exits 0 within seconds."""
    config = write_daemon(tmp_path, 1, "hand")
    children: list[subprocess.Popen[bytes]] = []

    def spawn(command: list[str], env: dict[str, str], fds: tuple[int, ...]) -> int:
        out = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - the child's
        children.append(subprocess.Popen(command, env=env, pass_fds=fds, stdin=subprocess.PIPE,
                                         stdout=out, stderr=subprocess.STDOUT))
        out.close()
        return children[-1].pid

    with worker_by_hand(config, os.getpid(), spawn) as (pid, port, log):
        wait_ready(log)
        (child,) = children
        with connect(f"ws://127.0.0.1:{port}/bot") as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "hand"
            assert child.stdin is not None
            child.stdin.close()
            assert closed_with(ws, timeout=5) == 1001
        assert child.wait(timeout=10) == 0
        assert f"the supervisor (pid {os.getpid()}) is gone: stopping" in log.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_stops_on_its_parents_death_signal(tmp_path: Path) -> None:
    """The supervisor killed while its pipe to the worker stays open (here
    the test holds the other end): the parent death signal alone stops the
    worker."""
    config = write_daemon(tmp_path, 1, "hand")
    stdin_read, stdin_write = os.pipe()
    parents: list[subprocess.Popen[bytes]] = []
    # A stand-in supervisor: starts the worker with the test's pipe as its
    # stdin, says the worker's pid, then waits to be killed.
    script = ("import os, subprocess, sys\n"
              "command, fds = sys.argv[2:], [int(f) for f in sys.argv[1].split(',')]\n"
              "env = dict(os.environ, WSDAEMON_SUPERVISOR_PID=str(os.getpid()))\n"
              "out = open(os.environ['WORKER_LOG'], 'wb')\n"
              "child = subprocess.Popen(command, env=env, pass_fds=fds, stdin=0,\n"
              "                         stdout=out, stderr=subprocess.STDOUT)\n"
              "print(child.pid, flush=True)\n"
              "child.wait()\n")

    def spawn(command: list[str], env: dict[str, str], fds: tuple[int, ...]) -> int:
        parents.append(subprocess.Popen(
            [sys.executable, "-c", script, ",".join(map(str, fds)), *command],
            env=dict(env, WORKER_LOG=str(tmp_path / "worker.log")), pass_fds=fds,
            stdin=stdin_read, stdout=subprocess.PIPE))
        os.close(stdin_read)
        assert parents[-1].stdout is not None
        return int(parents[-1].stdout.readline())

    try:
        with worker_by_hand(config, 0, spawn) as (pid, port, log):
            wait_ready(log)
            (parent,) = parents
            with connect(f"ws://127.0.0.1:{port}/bot") as ws:
                ws.send("x")
                assert ws.recv(timeout=5) == "hand"
                parent.kill()
                parent.wait()
                assert closed_with(ws, timeout=5) == 1001
            wait_gone([pid], timeout=10)
            assert f"the supervisor (pid {parent.pid}) is gone: stopping" in log.read_text()
    finally:
        os.close(stdin_write)


def test_a_worker_whose_supervisor_is_already_gone_does_not_start(tmp_path: Path) -> None:
    """A supervisor that died before its worker could arrange to die with it
    (the worker's parent is not the supervisor it was told of): the worker
    exits 1 at once, saying so, and never serves."""
    config = write_daemon(tmp_path, 1, "hand")
    ended = subprocess.Popen(["true"])
    ended.wait()
    children: list[subprocess.Popen[bytes]] = []

    def spawn(command: list[str], env: dict[str, str], fds: tuple[int, ...]) -> int:
        children.append(subprocess.Popen(command, env=env, pass_fds=fds, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        return children[-1].pid

    with worker_by_hand(config, ended.pid, spawn) as (pid, port, log):
        (child,) = children
        out, _ = child.communicate(timeout=20)
        assert child.returncode == 1, out
        assert f"its supervisor (pid {ended.pid}) is gone".encode() in out
        assert b"] ready" not in out
