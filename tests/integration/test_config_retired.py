"""
The retired item queue in a real daemon's config (issue 22, item 9):
C{[operator] model = queue} stops the daemon before it listens, with one
line naming the file, line, section and key, and a SIGHUP to it keeps the
running config; the queue's tuning keys are ignored with a warning.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from websockets.sync.client import connect

from tests.daemon import Daemon, free_port, run_cli

CONFIG = """\
[wsdaemon]
listen = tcp:1

[operator]
tokens = alice:0123456789abcdef0123
store = c.sqlite3
{extra}

[route:/echo]
strategy = echo

[route:/support]
strategy = operator
"""
RETIRED = ("the item queue was retired in this version; conversations take over its store on "
           "start (the SQLite file or Redis keys stay where they are): remove this line")


def test_model_queue_stops_the_daemon_before_it_listens(
        write_config: Callable[..., Path]) -> None:
    """Started or checked, the config with model = queue exits 1 with one line."""
    path = write_config(CONFIG.format(extra="model = queue"))
    port = free_port()
    for check in ([], ["--check-config"]):
        result = run_cli("--config", str(path), "--listen", f"tcp:{port}:interface=127.0.0.1",
                         *check)
        assert result.returncode == 1, result.stdout + result.stderr
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert errors == [f"wsdaemon: config error: {path}:7: [operator] model: {RETIRED}"]
        assert "Traceback" not in result.stdout + result.stderr


def test_a_reload_to_model_queue_keeps_the_running_config(
        write_config: Callable[..., Path]) -> None:
    """A SIGHUP to a config now saying model = queue is refused, logged with
    its line, and the daemon keeps serving as before."""
    path = write_config(CONFIG.format(extra=""))
    daemon = Daemon(path)
    try:
        path.write_text(CONFIG.format(extra="model = queue"))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log(f"{path}:7: [operator] model: {RETIRED}")
        time.sleep(0.2)
        assert daemon.process.poll() is None
        with connect(f"{daemon.url}/echo", open_timeout=5) as ws:
            ws.send("still here")
            assert ws.recv(timeout=5) == "still here"
    finally:
        daemon.stop()


def test_the_queue_keys_are_ignored_with_a_warning(write_config: Callable[..., Path]) -> None:
    """The shipped config's old queue keys start the daemon, each with a
    warning naming its line and the fix; --check-config names them."""
    path = write_config(CONFIG.format(extra="lease = 120\nkeep_after_fallback = yes"))
    result = run_cli("--config", str(path), "--check-config")
    assert result.returncode == 0, result.stderr
    assert "(ignored, retired with the queue: lease, keep_after_fallback)" in result.stdout
    daemon = Daemon(path)
    try:
        log = daemon.wait_for_log(f"{path}:8: [operator] keep_after_fallback: ignored since "
                                  "the item queue was retired")
        assert f"{path}:7: [operator] lease: ignored since the item queue was retired " \
               "(conversations are assigned, not leased" in log
        assert log.count("[operator] lease: ignored") == 1
    finally:
        daemon.stop()
