"""
strategy = command on the real daemon, with real processes and the
websockets client: cat as an echo, the seed's loop (examples/command), the
environment, exit codes, the client leaving, max_processes, stderr in the
log; hostile processes: one flooding stdout (with and without newlines), one
never reading stdin, one ignoring SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.daemon import REPO, Daemon

pytestmark = pytest.mark.slow

PY = sys.executable
#: Prints its pid, then does what its arguments say (run by the routes below).
HELPER = r'''
import os, signal, sys, time
print(os.getpid(), flush=True)
what = sys.argv[1]
if what == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
elif what == "no-stdin":
    time.sleep(60)
elif what == "flood":
    line = b"y" * 100 + b"\n"
    while True:
        sys.stdout.buffer.write(line * 100)
elif what == "flood-no-newline":
    while True:
        sys.stdout.buffer.write(b"z" * 65536)
elif what == "env":
    print(__import__("json").dumps(dict(os.environ)), flush=True)
elif what == "stderr":
    sys.stderr.write("bad \x1b[31mred\x1b[0m\n")
    sys.stderr.flush()
    time.sleep(60)
elif what == "exit":
    sys.stdin.readline()
    sys.exit(int(sys.argv[2]))
'''


def command_config(tmp_path: Path) -> str:
    helper = tmp_path / "helper.py"
    helper.write_text(HELPER)

    def route(path: str, command: str, extra: str = "") -> str:
        return f"[route:{path}]\nstrategy = command\ncommand = {command}\n{extra}\n"

    return "\n".join([
        "[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n",
        route("/cat", "cat", "max_processes = 2\n"),
        route("/binary", "cat", "binary = yes\n"),
        route("/reply", str(REPO / "examples" / "command" / "reply.py")),
        route("/reply-sh", str(REPO / "examples" / "command" / "reply.sh")),
        route("/env", f"{PY} {helper} env", "pass_headers = x-trace user-agent\n"),
        route("/exit", f"{PY} {helper} exit 0"),
        route("/exit3", f"{PY} {helper} exit 3"),
        route("/ignore-term", f"{PY} {helper} ignore-term", "kill_grace = 1\n"),
        route("/no-stdin", f"{PY} {helper} no-stdin", "max_stdin_buffer = 64KiB\n"),
        route("/flood", f"{PY} {helper} flood", "max_outbound_buffer = 256KiB\n"),
        route("/flood-no-newline", f"{PY} {helper} flood-no-newline", "max_line = 16KiB\n"),
        route("/stderr", f"{PY} {helper} stderr"),
    ])


@pytest.fixture
def daemon(tmp_path: Path, write_config: Callable[..., Path],
           start_daemon: Callable[..., Daemon]) -> Daemon:
    env = dict(os.environ, WSDAEMON_TEST_SECRET="must not leak", LANG="C.UTF-8")
    return start_daemon(write_config(command_config(tmp_path)), env=env)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes only once reaped: the daemon reaps.
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return False


def wait_gone(pid: int, timeout: float = 5) -> float:
    start = time.monotonic()
    while alive(pid):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"process {pid} still there after {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - start


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def closed_code(ws: object, timeout: float = 5) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=timeout)  # type: ignore[attr-defined]
    assert closed.value.rcvd is not None, closed.value
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_cat_echoes_lines_and_binary_mode_relays_bytes(daemon: Daemon) -> None:
    """Each message is a line on cat's stdin and comes back; binary = yes
    relays bytes as they are; the client leaving ends cat."""
    with connect(f"{daemon.url}/cat") as ws:
        for text in ("hello", "", "你好，世界", "x" * 10000):
            ws.send(text)
            assert ws.recv(timeout=5) == text
    with connect(f"{daemon.url}/binary") as ws:
        ws.send(b"\x00\x01\n\xff")
        assert ws.recv(timeout=5) == b"\x00\x01\n\xff"
    daemon.wait_for_log("ended: signal 15")


@pytest.mark.parametrize("route", ["/reply", "/reply-sh"])
def test_the_seeds_loop_runs_unchanged_as_a_backend(daemon: Daemon, route: str) -> None:
    """examples/command: read a line, print a reply, as the seed's loop does."""
    with connect(f"{daemon.url}{route}") as ws:
        for text in ("msg=hi", "msg=second"):
            ws.send(text)
            assert ws.recv(timeout=5) == f"reply: {text}"


def test_the_environment_is_cgis_and_nothing_of_the_daemons(daemon: Daemon) -> None:
    """REMOTE_ADDR, REMOTE_PORT, QUERY_STRING, PATH_INFO, SERVER_SOFTWARE, the
    allowed headers, the ids; PATH and LANG passed; no other daemon variable."""
    with connect(f"{daemon.url}/env?room=7&x=a%20b",
                 additional_headers={"X-Trace": "abc", "X-Other": "no"}) as ws:
        ws.recv(timeout=5)  # the pid
        env = json.loads(ws.recv(timeout=5))
        assert closed_code(ws) == (1000, "process exited")
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"].isdigit()
    assert env["PATH_INFO"] == "/env"
    assert env["QUERY_STRING"] == "room=7&x=a+b"
    assert env["SERVER_SOFTWARE"] == "wsdaemon"
    assert env["HTTP_X_TRACE"] == "abc" and "HTTP_X_OTHER" not in env
    assert env["HTTP_USER_AGENT"].startswith("Python/")
    assert len(env["WSDAEMON_SESSION_ID"]) == 32 and env["WSDAEMON_CLIENT_ID"]
    assert env["LANG"] == "C.UTF-8" and env["PATH"] == os.environ["PATH"]
    assert "WSDAEMON_TEST_SECRET" not in env and "HOME" not in env
    daemon.wait_for_log(f"client {env['WSDAEMON_CLIENT_ID']})")


def test_exit_status_0_closes_1000_and_any_other_1011(daemon: Daemon) -> None:
    """The process ending closes the connection: exit 0 with 1000, exit 3 with 1011."""
    for route, expected in [("/exit", (1000, "process exited")),
                            ("/exit3", (1011, "process exited with status 3"))]:
        with connect(f"{daemon.url}{route}") as ws:
            ws.recv(timeout=5)  # the pid
            ws.send("go")
            assert closed_code(ws) == expected


def test_the_client_leaving_ends_the_process(daemon: Daemon) -> None:
    """Closing the connection sends SIGTERM: the process is gone at once."""
    with connect(f"{daemon.url}/exit") as ws:
        pid = int(ws.recv(timeout=5))
        assert alive(pid)
    wait_gone(pid, timeout=2)


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(daemon: Daemon) -> None:
    """kill_grace = 1: SIGTERM is ignored, SIGKILL comes a second later."""
    with connect(f"{daemon.url}/ignore-term") as ws:
        pid = int(ws.recv(timeout=5))
        time.sleep(0.2)  # the handler is set after the pid is printed
    time.sleep(0.5)
    assert alive(pid), "gone before the grace"
    waited = wait_gone(pid, timeout=3)
    assert waited < 1.5
    log = daemon.wait_for_log(f"process {pid} (session ")
    assert "after SIGTERM: SIGKILL" in daemon.wait_for_log("after SIGTERM: SIGKILL")
    assert f"process {pid} (session" in log


def test_max_processes_refuses_with_503_until_one_ends(daemon: Daemon) -> None:
    """max_processes = 2: the third handshake is refused with 503; once one
    client has left and its process ended, a new one is accepted."""
    first = connect(f"{daemon.url}/cat")
    second = connect(f"{daemon.url}/cat")
    try:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{daemon.url}/cat")
        assert refused.value.response.status_code == 503
        daemon.wait_for_log("(max_processes)")
    finally:
        first.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            with connect(f"{daemon.url}/cat") as ws:
                ws.send("again")
                assert ws.recv(timeout=5) == "again"
            break
        except InvalidStatus:
            assert time.monotonic() < deadline, "the slot was never given back"
            time.sleep(0.05)
    second.close()


def test_stderr_goes_to_the_log_escaped(daemon: Daemon) -> None:
    """An escape sequence on stderr is logged as visible escapes, never raw."""
    with connect(f"{daemon.url}/stderr") as ws:
        ws.recv(timeout=5)
        log = daemon.wait_for_log("stderr: bad \\x1b[31mred\\x1b[0m")
    assert "\x1b[31m" not in log


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_a_process_flooding_stdout_waits_for_a_client_that_does_not_read(
        daemon: Daemon) -> None:
    """While its client does not read, a process flooding stdout is not read
    either: it blocks on the full pipe (its CPU time stops growing), the
    client is not dropped, the daemon's memory stays bounded, other clients
    are served; the client leaving ends the process."""
    before = rss_kib(daemon.process.pid)
    with connect(f"{daemon.url}/flood", max_queue=4, close_timeout=1) as ws:
        pid = int(ws.recv(timeout=5))
        deadline = time.monotonic() + 10
        ticks = cpu_ticks(pid)
        while True:
            time.sleep(0.5)
            now = cpu_ticks(pid)
            if now == ticks:
                break
            assert time.monotonic() < deadline, "the process never blocked"
            ticks = now
        with connect(f"{daemon.url}/cat") as other:
            for n in range(20):
                other.send(f"still served {n}")
                assert other.recv(timeout=5) == f"still served {n}"
        assert alive(pid) and cpu_ticks(pid) == ticks
        growth = rss_kib(daemon.process.pid) - before
        assert growth < 20 * 1024, f"the daemon grew by {growth} KiB"
    wait_gone(pid)
    assert "it does not read" not in daemon.log()


def test_a_client_slower_than_its_process_is_throttled_not_dropped(daemon: Daemon) -> None:
    """A client reading as fast as it can, slower than a process flooding
    stdout, gets a steady stream of whole lines and is not dropped."""
    with connect(f"{daemon.url}/flood") as ws:
        ws.recv(timeout=5)
        count = 0
        start = time.monotonic()
        while time.monotonic() - start < 2:
            assert ws.recv(timeout=5) == "y" * 100
            count += 1
    assert count > 1000
    assert "it does not read" not in daemon.log()


def test_a_flood_without_newlines_closes_1009(daemon: Daemon) -> None:
    """A line over max_line (16 KiB here) closes the client with 1009, with a
    log line, and ends the process."""
    with connect(f"{daemon.url}/flood-no-newline") as ws:
        pid = int(ws.recv(timeout=5))
        assert closed_code(ws) == (1009, "output line over max_line")
    daemon.wait_for_log("wrote a line of more than 16384 bytes")
    wait_gone(pid)


def test_a_process_never_reading_stdin_closes_1011(daemon: Daemon) -> None:
    """Messages to a process that never reads pile up to max_stdin_buffer
    (64 KiB here, after the pipe's own buffer): then 1011, a log line, and
    the process is ended."""
    with connect(f"{daemon.url}/no-stdin") as ws:
        pid = int(ws.recv(timeout=5))
        chunk = "m" * 1023
        sent = 0
        try:
            while sent < 4000:
                ws.send(chunk)
                sent += 1
        except ConnectionClosed:
            pass
        assert closed_code(ws) == (1011, "the process is not reading")
    # What the client managed to send says nothing: the kernel's socket
    # buffers on both sides can hold megabytes. What the daemon held for the
    # process is the property: the limit, overrun by one message at most.
    log = daemon.wait_for_log("does not read its input")
    waiting = [int(m) for m in re.findall(r"does not read its input \((\d+) bytes waiting", log)]
    assert len(waiting) == 1, log
    assert 64 * 1024 < waiting[0] <= 64 * 1024 + 1024, waiting
    wait_gone(pid)


def test_no_process_outlives_the_daemon(daemon: Daemon) -> None:
    """On SIGTERM the daemon ends its processes before it exits: one that
    ends on SIGTERM at once, one that ignores it by SIGKILL after kill_grace
    (1 s here); the daemon exits 0."""
    with connect(f"{daemon.url}/exit") as polite, \
            connect(f"{daemon.url}/ignore-term") as stubborn:
        pids = [int(polite.recv(timeout=5)), int(stubborn.recv(timeout=5))]
        time.sleep(0.2)  # the handler is set after the pid is printed
        start = time.monotonic()
        assert daemon.stop() == 0
        took = time.monotonic() - start
    assert not alive(pids[0]) and not alive(pids[1])
    assert 1 <= took < 4, took
    assert "after SIGTERM: SIGKILL" in daemon.log()
