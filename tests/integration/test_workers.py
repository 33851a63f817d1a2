"""
Several worker processes on the same listeners, supervised: they share the
load, a dead one is restarted, SIGHUP reloads all of them (or none), SIGTERM
stops them all gracefully, READY=1 waits for every one, and systemd's
socket activation works with them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import require_tool
from tests.daemon import Daemon, free_port, twistd_command
from tests.integration.test_conversations_redis import ALICE

pytestmark = pytest.mark.slow

ROUTES = """
[route:/echo]
strategy = echo

[route:/bot]
strategy = scripted
rules = bot.toml
"""
CONFIG = """
[wsdaemon]
listen = tcp:0:interface=127.0.0.1
workers = {workers}
""" + ROUTES


def workers_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def wait_workers(pid: int, count: int, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = workers_of(pid)
        if len(found) == count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"expected {count} workers, found {workers_of(pid)}")


def echo(url: str, text: str) -> str:
    with connect(f"{url}/echo") as ws:
        ws.send(text)
        answer = ws.recv(timeout=5)
        assert isinstance(answer, str)
        return answer


@pytest.fixture
def write_rules(write_config: Callable[..., Path]) -> Callable[[int], Path]:
    def write(workers: int) -> Path:
        path = write_config(CONFIG.format(workers=workers))
        (path.parent / "bot.toml").write_text('[default]\nreply = "v1"\n')
        return path
    return write


def test_workers_share_the_listener_and_a_dead_one_is_restarted(
        write_rules: Callable[[int], Path], start_daemon: Callable[..., Daemon]) -> None:
    """Two workers accept on one port (both take connections); a worker
    killed with SIGKILL is logged and replaced; serving never stops."""
    daemon = start_daemon(write_rules(2))
    pids = wait_workers(daemon.process.pid, 2)
    daemon.wait_for_log("ready: 2 workers listening", timeout=20)
    clients = [connect(f"{daemon.url}/echo") for _ in range(40)]
    try:
        for n, ws in enumerate(clients):
            ws.send(str(n))
            assert ws.recv(timeout=5) == str(n)
        serving = set()
        for pid in pids:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd).startswith("socket:"):
                        serving.add(pid)
                except OSError:
                    pass
        assert serving == set(pids)
    finally:
        for ws in clients:
            ws.close()
    os.kill(pids[0], signal.SIGKILL)
    daemon.wait_for_log("worker 0 ended (signal 9)", timeout=10)
    replaced = wait_workers(daemon.process.pid, 2)
    assert pids[0] not in replaced and pids[1] in replaced
    for n in range(10):
        assert echo(daemon.url, f"after {n}") == f"after {n}"


def test_each_worker_log_line_names_its_worker(
        write_rules: Callable[[int], Path], start_daemon: Callable[..., Daemon]) -> None:
    """Worker lines say which worker wrote them, and a worker says it serves the
    socket the supervisor opened (not that it listens on the configured port)."""
    daemon = start_daemon(write_rules(2))
    daemon.wait_for_log("ready: 2 workers listening", timeout=20)
    assert echo(daemon.url, "hi") == "hi"
    daemon.wait_for_log(" left /echo", timeout=5)
    lines = daemon.log().splitlines()
    for number in (0, 1):
        tag = f"#info worker {number}]"
        assert any(tag in line and f"listening on tcp:{daemon.port}:interface=127.0.0.1 "
                   "(socket from the supervisor, fd 4)" in line for line in lines), number
        assert any(tag in line and "admin API" not in line and " ready" in line
                   for line in lines), number
    (connected,) = [line for line in lines if " connected to /echo" in line]
    assert "[wsdaemon.protocol#info worker " in connected
    supervisor = [line for line in lines if "[wsdaemon.supervisor#" in line]
    assert supervisor and not any(" worker 0]" in line or " worker 1]" in line
                                  for line in supervisor)


def test_reload_reaches_every_worker_or_none(
        write_rules: Callable[[int], Path], start_daemon: Callable[..., Daemon]) -> None:
    """SIGHUP with a good config: every worker reloads (new rules everywhere);
    with a bad one: refused once by the supervisor, every worker keeps the
    old config; a changed worker count needs a restart."""
    path = write_rules(2)
    daemon = start_daemon(path)
    daemon.wait_for_log("ready: 2 workers listening", timeout=20)
    (path.parent / "bot.toml").write_text('[default]\nreply = "v2"\n')
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while daemon.log().count("reloaded ") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert daemon.log().count("reloaded ") == 2
    reloaded = [line for line in daemon.log().splitlines() if "reloaded " in line]
    assert sorted(line.split(" worker ")[1][0] for line in reloaded) == ["0", "1"]
    for _ in range(10):
        with connect(f"{daemon.url}/bot") as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "v2"
    (path.parent / "bot.toml").write_text("[[rule]\n")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for_log("reload refused, every worker keeps the previous config", timeout=10)
    time.sleep(0.5)
    assert daemon.log().count("reloaded ") == 2
    path.write_text(path.read_text().replace("workers = 2", "workers = 3"))
    (path.parent / "bot.toml").write_text('[default]\nreply = "v3"\n')
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for_log("the number of workers changed: restart to apply", timeout=10)
    with connect(f"{daemon.url}/bot") as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "v2"


def test_ready_waits_for_every_worker_and_sigterm_stops_them_all(
        write_rules: Callable[[int], Path], start_daemon: Callable[..., Daemon],
        tmp_path: Path) -> None:
    """READY=1 once, after every worker listens (workers never talk to
    systemd themselves); SIGTERM: STOPPING=1, every client gets 1001, every
    worker exits, exit status 0."""
    notify_path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.settimeout(20)
    try:
        daemon = start_daemon(write_rules(3),
                              env=dict(os.environ, NOTIFY_SOCKET=str(notify_path)))
        ready = receiver.recv(200)
        assert ready.startswith(b"READY=1") and b"3 workers" in ready
        daemon.wait_for_log("ready: 3 workers listening", timeout=5)
        pids = wait_workers(daemon.process.pid, 3)
        clients = [connect(f"{daemon.url}/echo") for _ in range(12)]
        for ws in clients:
            ws.send("x")
            ws.recv(timeout=5)
        daemon.process.send_signal(signal.SIGTERM)
        assert receiver.recv(200) == b"STOPPING=1"
        for ws in clients:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert daemon.process.wait(timeout=20) == 0
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
                f"/proc/{pid}/status").read_text().lower()
    finally:
        receiver.close()


def test_socket_activation_with_workers(write_config: Callable[..., Path]) -> None:
    """Under systemd-socket-activate the workers serve the socket systemd passed."""
    tool = shutil.which("systemd-socket-activate")
    require_tool(tool is not None, "systemd-socket-activate")
    assert tool is not None
    port = free_port()
    path = write_config(CONFIG.format(workers=2).replace(
        "listen = tcp:0:interface=127.0.0.1", "listen = systemd:domain=INET:index=0"))
    (path.parent / "bot.toml").write_text('[default]\nreply = "v1"\n')
    process = subprocess.Popen(
        # --fdname: systemd always names its sockets (LISTEN_FDNAMES); Twisted needs it.
        [tool, "-l", f"127.0.0.1:{port}", "--fdname=wsdaemon",
         *twistd_command("--config", str(path))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=path.parent)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert echo(f"ws://127.0.0.1:{port}", "activated") == "activated"
                break
            except (OSError, ConnectionClosed, TimeoutError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        wait_workers(process.pid, 2)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_workers_1_is_one_process(write_rules: Callable[[int], Path],
                                  start_daemon: Callable[..., Daemon]) -> None:
    """The default: no supervisor, the daemon serves in its own process."""
    daemon = start_daemon(write_rules(1))
    assert echo(daemon.url, "solo") == "solo"
    assert workers_of(daemon.process.pid) == []
    assert "wsdaemon.supervisor" not in daemon.log()


def test_workers_option_overrides_the_config(write_rules: Callable[[int], Path],
                                             start_daemon: Callable[..., Daemon]) -> None:
    """--workers 2 on the command line wins over workers = 1."""
    daemon = start_daemon(write_rules(1), extra_args=["--workers", "2"])
    wait_workers(daemon.process.pid, 2)
    assert echo(daemon.url, "two") == "two"


KEY = "workers-key-0123456789abcdef"


def test_the_admin_api_answers_for_every_worker(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """With 2 workers: a push reaches the clients of both; /clients, /healthz,
    /metrics and the journal cover both; a close reaches the worker holding
    the session; replaced rules answer on every worker."""
    from tests.admin_client import Admin, admin_config

    port = free_port()
    path = write_config(admin_config(port, KEY, ROUTES, wsdaemon="workers = 2\n"))
    (path.parent / "bot.toml").write_text('[default]\nreply = "v1"\n')
    daemon = start_daemon(path)
    daemon.wait_for_log("ready: 2 workers listening", timeout=20)
    admin = Admin(port, KEY)
    health = admin.call("GET", "/healthz")
    assert health["ready"] and health["workers"] == {"expected": 2, "answering": 2}
    mark = admin.call("GET", "/journal?limit=0")["last"]
    clients = [connect(f"{daemon.url}/echo?client_id=c{n}") for n in range(20)]
    try:
        for n, ws in enumerate(clients):
            ws.send(f"m{n}")
            assert ws.recv(timeout=5) == f"m{n}"
        listed = admin.call("GET", "/clients")
        assert listed["count"] == 20
        # SO_REUSEPORT: the kernel spreads connections over both workers
        # (all 20 on one would happen once in half a million runs).
        per_worker = [each["connections"] for each in admin.call("GET", "/healthz")["each"]]
        assert sorted(per_worker)[0] > 0 and sum(per_worker) == 20, per_worker
        answer = admin.call("POST", "/push", {"route": "/echo", "text": "to everyone"})
        assert (answer["delivered"], answer["failed"]) == (20, 0)
        for ws in clients:
            assert ws.recv(timeout=5) == "to everyone"
        journal = admin.call("GET", f"/journal?direction=in&since={mark}")
        assert journal["count"] == 20
        assert sorted(e["text"] for e in journal["entries"]) == sorted(
            f"m{n}" for n in range(20))
        metrics = admin.call_text("GET", "/metrics")
        assert 'wsdaemon_messages_received_total{route="/echo"} 20.0' in metrics
        session = [c for c in listed["clients"] if c["client_id"] == "c7"][0]["session_id"]
        admin.call("POST", "/connections/close", {"session": session, "code": 4007,
                                                  "reason": "bye"})
        with pytest.raises(ConnectionClosed) as closed:
            clients[7].recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4007
    finally:
        for ws in clients:
            ws.close()
    assert admin.call("PUT", "/routes/rules?route=/bot",
                      raw=b'[default]\nreply = "replaced"\n')["rules"] == 0
    for _ in range(8):
        with connect(f"{daemon.url}/bot") as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "replaced"
    code, why = admin.error("PUT", "/routes/rules?route=/bot", raw=b"[[rule]\n")
    assert code == 400 and why.startswith("rules:1:")


def operator_config(redis_url: str, port: int, workers: int, prefix: str) -> str:
    """Clients on /echo, conversations on the Redis broker, the admin API on C{port}."""
    from tests.admin_client import admin_config

    return admin_config(port, KEY, f"""
        [operator]
        tokens = alice:{ALICE}
        fallback_after = 0

        [broker]
        backend = redis
        url = {redis_url}
        prefix = {prefix}
        heartbeat = 0.5

        [route:/echo]
        strategy = echo

        [route:/support]
        strategy = operator
    """, wsdaemon=f"workers = {workers}\n")


Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(admin: Any) -> Series:
    """Every series of /metrics (which must parse), by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    found: Series = {}
    for family in text_string_to_metric_families(admin.call_text("GET", "/metrics")):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found, key
            found[key] = sample.value
    return found


#: What the scenario below leaves, whatever the number of workers.
TRUTH = {
    ("wsdaemon_ready", ()): 1.0,
    ("wsdaemon_conversation_operators", (("availability", "online"),)): 1.0,
    ("wsdaemon_conversations", (("state", "unassigned"),)): 2.0,
    ("wsdaemon_conversations", (("state", "assigned"),)): 1.0,
    ("wsdaemon_connections", (("route", "/echo"),)): 12.0,
    ("wsdaemon_connections", (("route", "/support"),)): 3.0,
    ("wsdaemon_push_calls_total", (("outcome", "ok"), ("target", "route"))): 1.0,
    ("wsdaemon_handshakes_refused_total", (("reason", "bad_token"), ("route", "/operator"))): 1.0,
    ("wsdaemon_broker_up", ()): 1.0,
}
AGE = ("wsdaemon_conversation_oldest_wait_seconds", ())
SUPERVISOR_ONLY = {("wsdaemon_workers", ()), ("wsdaemon_workers_answering", ())}


MOMENTS = {AGE, ("wsdaemon_config_last_reload_success_timestamp_seconds", ())}


def comparable(found: Series) -> Series:
    """
    The series a one-process daemon and workers in the same state give
    alike: all but moments (each daemon's own) and the workers counted.
    """
    return {key: value for key, value in found.items()
            if key not in MOMENTS and key not in SUPERVISOR_ONLY}


def drive(daemon: Daemon, admin: Any, opened: list[Any]) -> float:
    """
    An operator online (and one refused), 12 echo clients, 3 visitors'
    conversations and one of them assigned, one push to /echo.

    @return: when the first question was asked (C{time.monotonic()}).
    """
    from websockets.exceptions import InvalidStatus

    from tests.operator_client import operator_desk, request

    desk = operator_desk(daemon, ALICE)
    opened.append(desk)
    assert request(desk, {"type": "availability", "availability": "online"})["type"] == "ok"
    with pytest.raises(InvalidStatus):
        connect(f"{daemon.url}/operator?token=not-the-right-token-at-all")
    echoes = []
    for n in range(12):
        ws = connect(f"{daemon.url}/echo?client_id=e{n}")
        opened.append(ws)
        echoes.append(ws)
        for text in (f"m{n}", "é" * n):
            ws.send(text)
            assert ws.recv(timeout=5) == text
    asked = time.monotonic()
    for n in range(3):
        ws = connect(f"{daemon.url}/support?client_id=s{n}")
        opened.append(ws)
        ws.send(f"question {n}")
        ws.recv(timeout=5)  # the acknowledgement
    deadline = time.monotonic() + 10
    while len(listed := request(desk, {"type": "conversations", "view": "all"},
                                "list")["conversations"]) < 3:
        assert time.monotonic() < deadline, listed
        time.sleep(0.1)
    assigned = request(desk, {"type": "assign", "conversation": listed[0]["id"],
                              "operator": "alice"}, "assign")
    assert assigned["type"] == "ok", assigned
    # With Redis, "delivered" counts the connections of the worker that took the push.
    admin.call("POST", "/push", {"route": "/echo", "text": "to all"})
    for ws in echoes:
        assert ws.recv(timeout=5) == "to all"
    return asked


def settled(admin: Any, matches: Callable[[Series], bool], timeout: float = 10) -> Series:
    """
    /metrics once C{matches} it (the workers learn of each other's
    operators and conversations through Redis), or the last scrape.
    """
    deadline = time.monotonic() + timeout
    while not matches(found := scrape(admin)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_metrics_and_clients_with_workers_match_one_process(
        redis_server: Any, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """Three workers on Redis, and one process in the same state: every
    series of the supervisor's /metrics equals the one process's (counters
    and open connections summed, the shared conversations' gauges, operators
    online and ready once), the oldest wait is as old as the oldest question, the
    workers expected and answering are 3; /clients names the worker holding
    each client (the one whose log line says it connected there)."""
    from tests.admin_client import Admin

    daemons = {}
    for workers in (1, 3):
        port = free_port()
        path = write_config(operator_config(redis_server.url, port, workers, f"w{workers}:"),
                            name=f"workers{workers}.ini")
        daemons[workers] = (start_daemon(path), Admin(port, KEY))
    for workers, (daemon, _) in daemons.items():
        deadline = time.monotonic() + 20
        while daemon.log().count("live conversations loaded") < workers:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.1)
    opened: list[Any] = []
    try:
        asked = {w: drive(daemon, admin, opened) for w, (daemon, admin) in daemons.items()}

        def truthful(found: Series) -> bool:
            return all(found.get(key) == value for key, value in TRUTH.items())

        one = settled(daemons[1][1], truthful)
        several = settled(daemons[3][1],
                          lambda found: truthful(found) and comparable(found) == comparable(one))
        assert {k: v for k, v in one.items() if k in TRUTH} == TRUTH
        assert comparable(several) == comparable(one)
        assert len(comparable(one)) >= 20
        assert {k: several.get(k) for k in SUPERVISOR_ONLY} == {k: 3.0 for k in SUPERVISOR_ONLY}
        assert set(several) == set(one) | SUPERVISOR_ONLY
        for workers, found in ((1, one), (3, several)):
            assert 0 < found[AGE] <= time.monotonic() - asked[workers] + 0.5, found[AGE]

        assert all("worker" not in c for c in daemons[1][1].call("GET", "/clients")["clients"])
        daemon, admin = daemons[3]
        clients = admin.call("GET", "/clients")["clients"]
        assert len(clients) == 15
        log = daemon.log().splitlines()
        for client in clients:
            (line,) = [line for line in log if f"(session {client['session_id']}," in line
                       and " connected to " in line]
            assert f"#info worker {client['worker']}] " in line, (client, line)
        # SO_REUSEPORT spreads 15 connections over 3 workers (all on one:
        # once in 4.8 million runs).
        assert len({c["worker"] for c in clients}) > 1
    finally:
        for thing in opened:
            thing.close()
