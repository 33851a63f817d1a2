"""
Opening the listeners workers share.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from wsdaemon.server.supervisor import open_listener


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
