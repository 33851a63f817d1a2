"""
Opening the listeners workers share.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from wsdaemon.server.supervisor import open_listener, tag_worker_logs


def test_tcp_and_unix_listeners_are_opened_listening_and_non_blocking(tmp_path: Path) -> None:
    """tcp: and unix: endpoint strings become listening, non-blocking sockets."""
    sock, family = open_listener("tcp:0:interface=127.0.0.1:backlog=10")
    try:
        assert family == "INET" and not sock.getblocking()
        client = socket.create_connection(sock.getsockname()[:2], timeout=5)
        client.close()
    finally:
        sock.close()
    path = tmp_path / "w.sock"
    sock, family = open_listener(f"unix:{path}:mode=600")
    try:
        assert family == "UNIX" and path.stat().st_mode & 0o777 == 0o600
    finally:
        sock.close()
    sock, family = open_listener(r"tcp6:0:interface=\:\:1")
    sock.close()
    assert family == "INET6"


def test_other_endpoints_cannot_be_shared() -> None:
    """ssl: (and systemd: without sockets) are refused with the reason."""
    with pytest.raises(ValueError, match="workers share tcp, tcp6, unix and systemd"):
        open_listener("ssl:8443:privateKey=k.pem")
    with pytest.raises(ValueError, match="systemd passed 0 socket"):
        open_listener("systemd:domain=INET:index=0", environ={})


def test_worker_log_lines_name_the_worker() -> None:
    """A worker's lines carry its number after the usual namespace#level (or the
    legacy system), without changing the event other observers see."""
    import io

    from twisted.logger import LogLevel, textFileLogObserver

    out = io.StringIO()
    observe = tag_worker_logs(textFileLogObserver(out), 3)
    event = {"log_format": "hello {who}", "who": "you", "log_level": LogLevel.info,
             "log_namespace": "wsdaemon.protocol", "log_time": 0.0}
    observe(event)
    observe({"log_format": "legacy", "log_system": "-", "log_time": 0.0})
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("[wsdaemon.protocol#info worker 3] hello you")
    assert lines[1].endswith("[- worker 3] legacy")
    assert "log_system" not in event

