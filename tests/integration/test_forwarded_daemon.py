"""
The real daemon behind a reverse proxy ([wsdaemon] trusted_proxies): the
test client on 127.0.0.1 plays the proxy, sending X-Forwarded-For as nginx
does; the per-IP limit, /clients and the log see the forwarded address
when 127.0.0.1 is trusted, and only the peer when it is not.
"""

from __future__ import annotations

import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect, unix_connect

from tests import wsframes
from tests.admin_client import Admin, admin_config
from tests.daemon import Daemon, free_port

pytestmark = pytest.mark.slow

KEY = "forwarded-key-0123456789abcdef"
ROUTES = """
[route:/echo]
strategy = echo
"""


@pytest.fixture
def proxied(write_config: Callable[..., Path],
            start_daemon: Callable[..., Daemon]) -> Iterator[Callable[[str], tuple[Daemon, Admin]]]:
    def start(trusted: str) -> tuple[Daemon, Admin]:
        port = free_port()
        text = admin_config(port, KEY, ROUTES, wsdaemon=f"trusted_proxies = {trusted}\n"
                                                         "max_connections_per_ip = 2")
        daemon = start_daemon(write_config(text))
        daemon.wait_for_log("admin API listening on")
        return daemon, Admin(port, KEY)

    yield start


def via_proxy(daemon: Daemon, forwarded_for: str, stack: ExitStack) -> ClientConnection:
    ws = stack.enter_context(connect(f"{daemon.url}/echo", open_timeout=5,
                                     additional_headers={"X-Forwarded-For": forwarded_for}))
    ws.send("hi")
    assert ws.recv(timeout=5) == "hi"
    return ws


def refused(daemon: Daemon, forwarded_for: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        connect(f"{daemon.url}/echo", open_timeout=5,
                additional_headers={"X-Forwarded-For": forwarded_for})
    return info.value.response.status_code


def access_line(daemon: Daemon, forwarded_for: str) -> str:
    """
    @return: the access log's line of a request (a 404) sent as through the
        proxy.
    """
    page = f"/page-{free_port()}"
    request = urllib.request.Request(daemon.http + page,
                                     headers={"X-Forwarded-For": forwarded_for})
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=5)
    log = daemon.wait_for_log(f"GET {page} ")
    return next(line for line in log.splitlines() if f"GET {page} " in line)


def peers(admin: Admin) -> list[str]:
    return sorted(c["peer"] for c in admin.call("GET", "/clients")["clients"])


def test_per_ip_limit_applies_to_the_forwarded_address(
        proxied: Callable[[str], tuple[Daemon, Admin]]) -> None:
    """
    Behind a trusted proxy, max_connections_per_ip counts each client (the
    proxy's X-Forwarded-For), not the proxy: a third connection of one
    client is refused, another client behind the same proxy is not; the
    forged left part of the header is not believed.
    """
    daemon, admin = proxied("127.0.0.1")
    with ExitStack() as stack:
        via_proxy(daemon, "203.0.113.5", stack)
        via_proxy(daemon, "1.2.3.4, 203.0.113.5", stack)  # the client forged 1.2.3.4
        assert refused(daemon, "203.0.113.5") == 429
        via_proxy(daemon, "203.0.113.6", stack)
        via_proxy(daemon, "[2001:db8::7]", stack)
        assert peers(admin) == ["tcp4:203.0.113.5:0", "tcp4:203.0.113.5:0",
                                "tcp4:203.0.113.6:0", "tcp6:2001:db8::7:0"]
    log = daemon.log()
    refusal = [line for line in log.splitlines() if "max_connections_per_ip" in line]
    assert refusal and "203.0.113.5" in refusal[0], log
    assert "1.2.3.4" not in log
    assert '"203.0.113.8" - - [' in access_line(daemon, "1.2.3.4, 203.0.113.8")


def test_header_from_an_untrusted_peer_is_ignored(
        proxied: Callable[[str], tuple[Daemon, Admin]]) -> None:
    """
    A peer that is not a trusted proxy cannot dodge the per-IP limit by
    naming other addresses: all its connections are its own.
    """
    daemon, admin = proxied("10.0.0.0/8")
    with ExitStack() as stack:
        via_proxy(daemon, "203.0.113.5", stack)
        via_proxy(daemon, "203.0.113.6", stack)
        assert refused(daemon, "203.0.113.7") == 429
        assert all(p.startswith("tcp4:127.0.0.1:") for p in peers(admin)), peers(admin)
    assert '"127.0.0.1" - - [' in access_line(daemon, "203.0.113.8")
    assert "203.0.113" not in daemon.log()


def test_malformed_header_counts_as_the_proxy_and_is_logged_once(
        proxied: Callable[[str], tuple[Daemon, Admin]]) -> None:
    """
    A trusted proxy's unreadable X-Forwarded-For: the connection is the
    proxy's own (still limited), and the log says so once.
    """
    daemon, admin = proxied("127.0.0.1")
    with ExitStack() as stack:
        via_proxy(daemon, "bogus-address", stack)
        via_proxy(daemon, "also bogus", stack)
        assert refused(daemon, "still bogus") == 429
        assert all(p.startswith("tcp4:127.0.0.1:") for p in peers(admin)), peers(admin)
    log = daemon.log()
    assert log.count("X-Forwarded-For that is not") == 1, log
    assert "bogus-address" in log


def proxy_protocol_handshake(port: int, source: str) -> tuple[socket.socket, bytes]:
    """
    A connection as HAProxy (send-proxy) makes it: the PROXY v1 line naming
    C{source}, then the client's handshake. @return: it, and the status line.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    family = "TCP6" if ":" in source else "TCP4"
    target = "::1" if ":" in source else "127.0.0.1"
    sock.sendall(f"PROXY {family} {source} {target} 40000 {port}\r\n".encode()
                 + wsframes.handshake_request("/echo"))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake"
        data += chunk
    return sock, data.split(b"\r\n", 1)[0]


def test_haproxy_endpoint_prefix(write_config: Callable[..., Path],
                                 start_daemon: Callable[..., Daemon]) -> None:
    """
    Twisted's C{haproxy:} endpoint prefix (PROXY protocol v1/v2) works with
    our listen strings: the address the proxy names is the peer for
    max_connections_per_ip and /clients, with no trusted_proxies set.
    """
    admin_port, proxied_port = free_port(), free_port()
    text = admin_config(admin_port, KEY, ROUTES, wsdaemon="max_connections_per_ip = 1")
    daemon = start_daemon(write_config(text), extra_args=[
        "--listen", f"haproxy:tcp:{proxied_port}:interface=127.0.0.1"])
    daemon.wait_for_log(f"listening on haproxy:tcp:{proxied_port}")
    opened = []
    try:
        first, status = proxy_protocol_handshake(proxied_port, "203.0.113.5")
        opened.append(first)
        assert status == b"HTTP/1.1 101 Switching Protocols"
        second, status = proxy_protocol_handshake(proxied_port, "203.0.113.5")
        opened.append(second)
        assert status.startswith(b"HTTP/1.1 429")
        third, status = proxy_protocol_handshake(proxied_port, "2001:db8::9")
        opened.append(third)
        assert status == b"HTTP/1.1 101 Switching Protocols"
        assert peers(Admin(admin_port, KEY)) == ["tcp4:203.0.113.5:40000",
                                                 "tcp6:2001:db8::9:40000"]
    finally:
        for sock in opened:
            sock.close()


@pytest.mark.parametrize(("trusted", "secure"), [("127.0.0.1", True), ("10.0.0.0/8", False)])
def test_forwarded_proto_makes_the_cookie_secure(
        trusted: str, secure: bool, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """
    The anonymous identity's cookie is Secure when a trusted proxy says the
    client spoke HTTPS (X-Forwarded-Proto); an untrusted peer's say-so is
    ignored.
    """
    daemon = start_daemon(write_config(
        f"[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\ntrusted_proxies = {trusted}\n\n"
        f"{ROUTES}"))
    with connect(f"{daemon.url}/echo", open_timeout=5, additional_headers={
            "X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"}) as ws:
        assert ws.response is not None
        cookie = ws.response.headers["Set-Cookie"]
    assert cookie.startswith("wsdaemon_client=")
    assert cookie.endswith("; Secure") is secure, cookie


def test_reload_changes_whom_the_daemon_trusts(
        proxied: Callable[[str], tuple[Daemon, Admin]]) -> None:
    """A reload that trusts the proxy applies to the next connections."""
    daemon, admin = proxied("10.0.0.0/8")
    config = next(Path(arg) for arg in daemon.process.args if str(arg).endswith(".ini"))
    with ExitStack() as stack:
        via_proxy(daemon, "203.0.113.5", stack)
        config.write_text(config.read_text().replace("trusted_proxies = 10.0.0.0/8",
                                                     "trusted_proxies = 127.0.0.1"))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log("reloaded ")
        via_proxy(daemon, "203.0.113.6", stack)
        found = peers(admin)
        assert found[0].startswith("tcp4:127.0.0.1:") and found[1] == "tcp4:203.0.113.6:0", found


def test_unix_socket_behind_a_local_proxy(write_config: Callable[..., Path],
                                          start_daemon: Callable[..., Daemon],
                                          tmp_path: Path) -> None:
    """
    trusted_proxies = unix: on a Unix socket listener (nginx's
    proxy_pass http://unix:...), X-Forwarded-For names the client for the
    per-IP limit and /clients.
    """
    admin_port = free_port()
    sock_path = tmp_path / "ws.sock"
    text = admin_config(admin_port, KEY, ROUTES,
                        wsdaemon="trusted_proxies = unix\nmax_connections_per_ip = 1")
    daemon = start_daemon(write_config(text), extra_args=["--listen", f"unix:{sock_path}"])
    daemon.wait_for_log(f"listening on unix:{sock_path}")
    with ExitStack() as stack:
        def over_unix(forwarded_for: str) -> ClientConnection:
            return stack.enter_context(unix_connect(
                str(sock_path), "ws://localhost/echo", open_timeout=5,
                additional_headers={"X-Forwarded-For": forwarded_for}))

        over_unix("203.0.113.5")
        with pytest.raises(InvalidStatus) as info:
            over_unix("203.0.113.5")
        assert info.value.response.status_code == 429
        over_unix("203.0.113.6")
        assert peers(Admin(admin_port, KEY)) == ["tcp4:203.0.113.5:0", "tcp4:203.0.113.6:0"]
