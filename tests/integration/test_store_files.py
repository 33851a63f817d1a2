"""
The conversations' store files, run by hand with a permissive umask, and a store
that cannot be opened.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.daemon import Daemon, run_cli

pytestmark = pytest.mark.slow

CONFIG = """
    [wsdaemon]
    listen = tcp:0:interface=127.0.0.1

    [operator]
    tokens = alice:alice-token-0123456789abcdef
    store = state/conversations.sqlite3

    [route:/support]
    strategy = operator
"""


def test_store_files_are_private_whatever_the_umask(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """With umask 000 the SQLite file, its WAL and SHM are still readable by
    the daemon's user only."""
    config = write_config(CONFIG)
    old = os.umask(0)
    try:
        daemon = start_daemon(config)
    finally:
        os.umask(old)
    with connect(f"{daemon.url}/support") as client:
        client.send("a private conversation")
        client.recv(timeout=5)
    state = config.parent / "state"
    for name in ("conversations.sqlite3", "conversations.sqlite3-wal",
                 "conversations.sqlite3-shm"):
        mode = stat.S_IMODE((state / name).stat().st_mode)
        assert mode == 0o600, f"{name}: {oct(mode)}"


def test_a_store_that_cannot_be_opened_stops_the_daemon_with_status_1(
        write_config: Callable[..., Path]) -> None:
    """A store file that is not a database: one clear line, exit status 1."""
    config = write_config(CONFIG)
    (config.parent / "state").mkdir()
    store = config.parent / "state" / "conversations.sqlite3"
    store.write_bytes(b"this is not a database" * 100)
    result = run_cli("--config", str(config), cwd=config.parent)
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "cannot open the operator store" in output and "conversations.sqlite3" in output
    assert "Traceback" not in output
