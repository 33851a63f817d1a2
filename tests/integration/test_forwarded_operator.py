"""
Operators behind the same reverse proxy as visitors: the conversations'
operator channel believes the routes' [wsdaemon] trusted_proxies, and a
refused operator handshake is one log line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.daemon import Daemon
from tests.operator_client import next_of

pytestmark = pytest.mark.slow

TOKEN = "alice-token-0123456789abcdef0123"


def config(trusted: str) -> str:
    return ("[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n"
            f"trusted_proxies = {trusted}\n\n"
            f"[operator]\nmodel = conversations\ntokens = alice:{TOKEN}\n"
            "store = conversations.sqlite3\n\n"
            "[route:/support]\nstrategy = operator\n")


@pytest.mark.parametrize(("trusted", "shown"), [("127.0.0.1", "tcp4:203.0.113.5:0"),
                                                ("10.0.0.0/8", "tcp4:127.0.0.1:")])
def test_operator_channel_believes_the_trusted_proxy(
        trusted: str, shown: str, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """
    An operator's connection and a refused one (bad token) are logged
    with the forwarded address from a trusted proxy, the peer's otherwise;
    the refusal is one line (not Autobahn's two more).
    """
    daemon = start_daemon(write_config(config(trusted)))
    headers = {"X-Forwarded-For": "203.0.113.5"}
    with connect(f"{daemon.url}/operator", open_timeout=5, additional_headers={
            **headers, "Authorization": f"Bearer {TOKEN}"}) as ws:
        next_of(ws, "hello")
    with pytest.raises(InvalidStatus) as info:
        connect(f"{daemon.url}/operator", open_timeout=5, additional_headers={
            **headers, "Authorization": "Bearer wrong-token-0123456789abcdef"})
    assert info.value.response.status_code == 403
    log = daemon.wait_for_log("bad token")
    connected = [line for line in log.splitlines() if "operator alice connected from" in line]
    refused = [line for line in log.splitlines() if "bad operator token" in line
               or "bad token" in line]
    assert connected and shown in connected[0], connected
    assert len(refused) == 1 and shown in refused[0], refused
    assert "dropping connection" not in log and "failing WebSocket" not in log
