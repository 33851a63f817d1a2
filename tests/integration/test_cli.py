"""
The command line, run for real: --check-config, config errors, --listen,
`twist`, and a listener that cannot bind.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.conftest import ECHO_CONFIG
from tests.daemon import Daemon, copy_shipped_etc, free_port, run_cli

pytestmark = pytest.mark.slow


def test_check_config_on_shipped_example() -> None:
    """--check-config on etc/wsdaemon.ini exits 0 with a one-line summary."""
    result = run_cli("--config", "etc/wsdaemon.ini", "--check-config")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "etc/wsdaemon.ini: OK" in lines[0] and "/echo (echo)" in lines[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[wsdaemon]\nlisten = tcp:1\n[route:/echo]\nstrategy = ecoh\n",
         ":4: [route:/echo] strategy: unknown strategy 'ecoh' (did you mean echo?); "
         "expected one of: command, echo"),
        ("[wsdaemon]\nlisten = tcp:1\n[route:/echo]\nstrategy = echo\nmax_conections = 5\n",
         ":5: [route:/echo] max_conections: unknown option (did you mean max_connections?)"),
        ("[wsdaemon]\nlisten = tcp:1\n[route:/echo]\nstrategy = echo\nmax_message_size = big\n",
         ":5: [route:/echo] max_message_size: expected a size in bytes"),
        ("[wsdaemon]\nlisten = tcp:1\n[route:/echo]\nstrategy = echo\n"
         "[route:/echo]\nstrategy = echo\n",
         ":5: [route:/echo]: duplicate route '/echo'"),
        ("[wsdaemon]\nlisten = tcp:1\n[routes]\n", ":3: [routes]: unknown section"),
    ],
)
@pytest.mark.parametrize("check_only", [True, False])
def test_config_error_exits_before_listening(
    text: str, expected: str, check_only: bool, write_config: Callable[..., Path]
) -> None:
    """A bad config exits 1 with one line naming file, line, section, key and expectation."""
    path = write_config(text)
    port = free_port()
    args = ["--config", str(path), "--listen", f"tcp:{port}:interface=127.0.0.1"]
    result = run_cli(*args, *(["--check-config"] if check_only else []))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [f"wsdaemon: config error: {path}{expected}"] or (
        len(errors) == 1 and f"{path}{expected}" in errors[0]), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "nothing may listen"


def test_missing_config_file(tmp_path: Path) -> None:
    """A missing config file is one line on stderr and exit status 1."""
    result = run_cli("--config", str(tmp_path / "missing.ini"))
    assert result.returncode == 1
    expected = f"wsdaemon: config error: {tmp_path}/missing.ini: config file not found"
    assert result.stderr.strip() == expected


def test_twist_runs_the_daemon(write_config: Callable[..., Path],
                               start_daemon: Callable[..., Daemon]) -> None:
    """`twist wsdaemon ...` works as `twistd -n wsdaemon ...` does."""
    daemon = start_daemon(write_config(ECHO_CONFIG), runner="twist")
    with connect(f"{daemon.url}/echo") as client:
        client.send("via twist")
        assert client.recv() == "via twist"


def test_listen_replaces_config_endpoints(write_config: Callable[..., Path],
                                          start_daemon: Callable[..., Daemon]) -> None:
    """The config's endpoint is not used when --listen is given; several --listen all work."""
    config_port = free_port()
    path = write_config(ECHO_CONFIG.replace("tcp:0:", f"tcp:{config_port}:"))
    unix_path = path.parent / "ws.sock"
    daemon = start_daemon(path, extra_args=["--listen", f"unix:{unix_path}"])
    with connect(f"{daemon.url}/echo") as client:
        client.send("tcp")
        assert client.recv() == "tcp"
    from websockets.sync.client import unix_connect

    with unix_connect(str(unix_path), "ws://localhost/echo") as client:
        client.send("unix")
        assert client.recv() == "unix"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", config_port)) != 0


@pytest.mark.parametrize("runner", ["twistd", "twist"])
def test_port_in_use_exits_1(runner: str, write_config: Callable[..., Path]) -> None:
    """A listener that cannot bind ends the process with status 1 and says why."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("--config", str(write_config(ECHO_CONFIG)),
                         "--listen", f"tcp:{port}:interface=127.0.0.1", runner=runner)
    assert result.returncode == 1
    assert "cannot listen" in result.stdout + result.stderr
    assert "Address already in use" in result.stdout + result.stderr


def test_shipped_config_serves_echo(start_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    """etc/wsdaemon.ini as shipped works (a copy, on a free port instead of 8080)."""
    daemon = start_daemon(copy_shipped_etc(tmp_path / "etc"), cwd=tmp_path)
    with connect(f"{daemon.url}/echo", origin="http://localhost:8080") as client:  # type: ignore[arg-type]
        client.send("shipped")
        assert client.recv() == "shipped"
    daemon.wait_for_log("alice, bob: the shipped example operator token(s)")
    daemon.wait_for_log("ops: the shipped example API key(s)")


ADMIN_CONFIG = ECHO_CONFIG + """
    [admin]
    listen = tcp:{port}:interface=127.0.0.1
    api_keys = ops:ops-key-0123456789abcdef
"""


def test_a_busy_admin_port_names_its_key_and_admin_listen_moves_it(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """The admin port taken: exit 1 naming [admin] listen and --admin-listen;
    --admin-listen moves the admin API like --listen moves the routes."""
    import urllib.request

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(ADMIN_CONFIG.format(port=port))
        result = run_cli("--config", str(config), "--listen", "tcp:0:interface=127.0.0.1")
        assert result.returncode == 1
        output = result.stdout + result.stderr
        assert f"cannot listen on tcp:{port}:interface=127.0.0.1 ([admin] listen (or " \
            "--admin-listen))" in output and "Address already in use" in output
        moved = free_port()
        daemon = start_daemon(config, extra_args=[
            "--admin-listen", f"tcp:{moved}:interface=127.0.0.1"])
        with urllib.request.urlopen(f"http://127.0.0.1:{moved}/healthz", timeout=5) as answer:
            assert json.loads(answer.read())["ready"] in (True, False)
        assert daemon.process.poll() is None


def test_second_ctrl_c_is_quiet(write_config: Callable[..., Path],
                                start_daemon: Callable[..., Daemon]) -> None:
    """Two SIGINTs in a row (Ctrl-C twice) stop the daemon once, cleanly: exit
    0, no traceback, no ReactorNotRunning."""
    import signal
    import time

    daemon = start_daemon(write_config(ECHO_CONFIG))
    daemon.wait_for_log("ready")
    with connect(f"{daemon.url}/echo") as client:
        client.send("x")
        client.recv(timeout=5)
        daemon.process.send_signal(signal.SIGINT)
        time.sleep(0.05)
        daemon.process.send_signal(signal.SIGINT)
        assert daemon.process.wait(timeout=15) == 0
    log = daemon.log()
    assert "ReactorNotRunning" not in log and "Traceback" not in log, log
