"""
The daemon's log as journald keeps it: a page view, a monitor's probes and
a refused handshake do not flood it; who connected, API calls and errors
are still there (issue 23, ops trial).
"""

from __future__ import annotations

import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests import wsframes
from tests.admin_client import Admin, admin_config
from tests.daemon import Daemon, free_port

pytestmark = pytest.mark.slow

KEY = "quiet-key-0123456789abcdef"
# An [operator] section: its component serves the chat widget's files.
ROUTES = """
[operator]
tokens = alice:alice-token-0123456789abcdef
store = conversations.sqlite3

[route:/echo]
strategy = echo

[route:/support]
strategy = operator
"""


def start(write_config: Callable[..., Path], start_daemon: Callable[..., Daemon],
          every: str | None = None) -> tuple[Daemon, Admin]:
    port = free_port()
    extra = "max_connections_per_ip = 1" + (f"\nlog_every_request = {every}" if every else "")
    daemon = start_daemon(write_config(admin_config(port, KEY, ROUTES, wsdaemon=extra)))
    daemon.wait_for_log("admin API listening on")
    daemon.wait_for_log("live conversations loaded")  # ready: /healthz answers 200
    return daemon, Admin(port, KEY)


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as e:
        return e.code


def browse_and_probe(daemon: Daemon, admin: Admin) -> None:
    """A page view with its assets, a 404, the monitor's probes and one API call."""
    for path in ("/", "/_wsdaemon/demo.js", "/_wsdaemon/demo.css", "/_wsdaemon/widget.js"):
        assert get(daemon.http + path) == 200, path
    assert get(daemon.http + "/no-such-page") == 404
    assert get(admin.base + "/healthz") == 200
    assert get(admin.base + "/metrics") in (200, 401)
    admin.call("GET", "/clients")


def test_assets_and_probes_are_not_logged_by_default(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """
    Static assets and /healthz, /metrics probes write no access line; a
    404, an API call and a WebSocket connection still do; the start-up log
    names no "Starting factory <... object at 0x...>".
    """
    daemon, admin = start(write_config, start_daemon)
    browse_and_probe(daemon, admin)
    with connect(f"{daemon.url}/echo") as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
    log = daemon.wait_for_log("GET /clients")
    for quiet in ("GET / ", "/_wsdaemon/", "GET /healthz", "GET /metrics"):
        assert quiet not in log, quiet
    assert "GET /no-such-page" in log
    assert "connected to /echo" in log
    assert "object at 0x" not in log
    assert "_Site starting on" not in log and f"wsdaemon starting on {daemon.port}" in log
    assert "wsdaemon admin API starting on" in log


def test_every_request_logged_when_asked(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """[wsdaemon] log_every_request = yes: assets and probes are logged too."""
    daemon, admin = start(write_config, start_daemon, every="yes")
    browse_and_probe(daemon, admin)
    log = daemon.wait_for_log("GET /clients")
    for line in ("GET / ", "GET /_wsdaemon/demo.js", "GET /_wsdaemon/widget.js",
                 "GET /healthz", "GET /metrics"):
        assert line in log, line


def refused_lines(log: str, port: int) -> list[str]:
    return [line for line in log.splitlines() if f":{port}" in line]


def test_a_refused_handshake_is_one_line(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """
    A handshake refused by our limits, and one Autobahn refuses itself
    (an unknown WebSocket version), each leave exactly one log line.
    """
    daemon, _ = start(write_config, start_daemon)
    with connect(f"{daemon.url}/echo") as ws:
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        sock.sendall(wsframes.handshake_request("/echo"))
        assert sock.recv(4096).startswith(b"HTTP/1.1 429")
        limited_port = sock.getsockname()[1]
        sock.close()
        ws.send("still")
        assert ws.recv(timeout=5) == "still"
    bad = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    bad.sendall(wsframes.handshake_request("/echo").replace(
        b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 99"))
    assert bad.recv(4096).startswith(b"HTTP/1.1 400")
    bad_port = bad.getsockname()[1]
    bad.close()
    log = daemon.wait_for_log(f":{bad_port}")
    with pytest.raises(AssertionError):
        daemon.wait_for_log("dropping connection", timeout=1)
    assert len(refused_lines(log, limited_port)) == 1, refused_lines(log, limited_port)
    assert "max_connections_per_ip" in refused_lines(log, limited_port)[0]
    assert len(refused_lines(log, bad_port)) == 1, refused_lines(log, bad_port)
    assert "400" in refused_lines(log, bad_port)[0]
    with pytest.raises(InvalidStatus):  # the limit still holds after the refusals
        with connect(f"{daemon.url}/echo"), connect(f"{daemon.url}/echo"):
            pass


def test_reload_names_the_config_once(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """A reload's line names the config file once, not twice."""
    daemon, _ = start(write_config, start_daemon)
    daemon.process.send_signal(signal.SIGHUP)
    log = daemon.wait_for_log("reloaded ")
    line = next(row for row in log.splitlines() if "reloaded " in row)
    assert line.count("wsdaemon.ini") == 1, line


def test_identity_refusals_are_one_line(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """
    On an identity = jwt route a forged token (403, explained by the
    identity check's own line) and a missing one (401, explained by ours)
    each leave one line.
    """
    path = write_config("[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n\n"
                        "[route:/private]\nstrategy = echo\nidentity = jwt\n"
                        "jwt_secret_file = jwt.secret\n")
    (path.parent / "jwt.secret").write_text("s" * 40)
    daemon = start_daemon(path)
    ports = {}
    for case, query in (("forged", "?access_token=forged.token.here"), ("missing", "")):
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        sock.sendall(wsframes.handshake_request("/private" + query))
        ports[case] = (sock.getsockname()[1], sock.recv(4096).split(b"\r\n")[0])
        sock.close()
    assert ports["forged"][1].startswith(b"HTTP/1.1 403"), ports
    assert ports["missing"][1].startswith(b"HTTP/1.1 401"), ports
    log = daemon.wait_for_log(f":{ports['missing'][0]}")
    for port, _ in ports.values():
        assert len(refused_lines(log, port)) == 1, refused_lines(log, port)
    assert "identity token not accepted" in refused_lines(log, ports["forged"][0])[0]
    assert "401" in refused_lines(log, ports["missing"][0])[0]
