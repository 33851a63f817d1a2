"""
sd_notify with the standard library: path and abstract-namespace sockets.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from wsdaemon.server.systemd import notify, reloading_message


def test_path_socket(tmp_path: Path) -> None:
    """Path socket."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        assert notify("READY=1", {"NOTIFY_SOCKET": str(path)}) is True
        assert server.recv(100) == b"READY=1"


def test_abstract_socket() -> None:
    """Abstract socket."""
    name = f"wsdaemon-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert server.recv(100) == b"STOPPING=1"


def test_not_under_systemd() -> None:
    """Not under systemd."""
    assert notify("READY=1", {}) is False


def test_unreachable_socket_is_not_fatal(tmp_path: Path) -> None:
    """Unreachable socket is not fatal."""
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False


def test_reloading_message() -> None:
    """Reloading message."""
    first, second = reloading_message().split("\n")
    assert first == "RELOADING=1"
    assert second.startswith("MONOTONIC_USEC=") and int(second.split("=")[1]) > 0
