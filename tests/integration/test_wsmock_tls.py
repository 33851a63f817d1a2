"""
The wsmock fixture over TLS, as a user's test suite runs it (pytester: an
inner pytest run in a subprocess): C{@pytest.mark.wsmock(tls=True)} and the
ini setting C{wsmock_tls}, a throwaway CA the clients trust through
C{wsmock.ssl_context} / C{wsmock.ca_path}, certificates verified for real.
"""

from __future__ import annotations

import re
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest
from websockets.sync.client import connect

from wsdaemon.mock import server as mock_server

pytestmark = pytest.mark.slow

pytest_plugins = ["pytester"]

TESTS = '''
import ssl

import pytest
from websockets.sync.client import connect


@pytest.mark.wsmock(tls=True, rules='[[rule]]\\ntext = "ping"\\nreply = "pong"\\n')
def test_wss_with_the_marker(wsmock):
    assert wsmock.url.startswith("wss://127.0.0.1:") and wsmock.url.endswith("/mock")
    with connect(wsmock.url, ssl=wsmock.ssl_context) as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "pong"
    wsmock.assert_received(text="ping")
    with connect(wsmock.echo_url, ssl=wsmock.ssl_context) as ws:
        ws.send("echo?")
        assert ws.recv(timeout=5) == "echo?"


@pytest.mark.wsmock(tls=True)
def test_the_ca_file_for_other_clients(wsmock):
    context = ssl.create_default_context(cafile=wsmock.ca_path)
    with connect(wsmock.url.replace("127.0.0.1", "localhost"), ssl=context) as ws:
        wsmock.wait_for("open")
    # A client that does not trust the throwaway CA is refused by its own check.
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(wsmock.url, ssl=ssl.create_default_context())


def test_plain_by_default_and_tls_still_there(wsmock):
    assert wsmock.url.startswith("ws://")
    with connect(wsmock.tls_url, ssl=wsmock.ssl_context) as ws:
        wsmock.wait_for("open")
'''


def test_the_marker_gives_wss_with_a_verified_certificate(pytester: pytest.Pytester) -> None:
    """tls=True makes the URLs wss://; websockets verifies the mock's
    certificate against wsmock.ssl_context (by IP and by name) or
    wsmock.ca_path, and a client trusting only the system's CAs is
    refused; without it the URLs stay ws://."""
    pytester.makepyfile(test_tls=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=3)


def test_the_ini_setting_makes_every_test_wss(pytester: pytest.Pytester) -> None:
    """wsmock_tls = true: wss:// for every test; a marker's tls=False still
    asks for ws://."""
    pytester.makeini("[pytest]\nwsmock_tls = true\n")
    pytester.makepyfile(test_ini='''
import pytest
from websockets.sync.client import connect


def test_wss(wsmock):
    assert wsmock.url.startswith("wss://")
    with connect(wsmock.url, ssl=wsmock.ssl_context) as ws:
        wsmock.wait_for("open")


@pytest.mark.wsmock(tls=False)
def test_ws(wsmock):
    assert wsmock.url.startswith("ws://")
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2)


def test_the_readme_wss_example_passes(pytester: pytest.Pytester) -> None:
    """The README's test_wss_client.py passes as written."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    found = re.search(r"```python\n(# test_wss_client\.py\n.*?)```",
                      readme.read_text(encoding="utf-8"), re.S)
    assert found is not None
    pytester.makepyfile(test_wss_client=found.group(1))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)


def test_a_tls_port_taken_meanwhile_starts_again_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process takes the port chosen for wss:// before the daemon
    binds it: the server notices and starts again on other ports, and its
    wss:// then answers with a certificate its CA verifies."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    chosen: list[int] = []
    real_free_port = mock_server._free_port

    def free_port() -> int:
        chosen.append(taken.getsockname()[1] if len(chosen) == 2 else real_free_port())
        return chosen[-1]

    monkeypatch.setattr(mock_server, "_free_port", free_port)
    server = None
    try:
        server = mock_server.MockServer(tmp_path, datetime.now(UTC))
        assert len(chosen) == 6 and server.tls_port != taken.getsockname()[1]
        assert server.authority is not None
        context = ssl.create_default_context(cafile=str(server.authority.ca_path))
        with connect(f"wss://127.0.0.1:{server.tls_port}/echo", ssl=context) as ws:
            ws.send("mine")
            assert ws.recv(timeout=5) == "mine"
    finally:
        if server is not None:
            server.stop()
        taken.close()
