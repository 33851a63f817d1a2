"""
Proxying and mocking mixed (issue 25, item 4): a proxy route with the
README's intercept file, between a websockets client and a real websockets upstream
that echoes what it gets.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from tests.daemon import REPO, Daemon, free_port, run_cli


def readme_intercept() -> str:
    """The README's example intercept file (the test runs what it shows)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("#### Intercepting: mocking on a proxy route"):]
    return section[section.index("```toml\n") + 8:section.index("```\n", 10)]


@pytest.fixture
def upstream() -> Iterator[tuple[int, list[str]]]:
    port, seen = free_port(), []

    def echo(ws: ServerConnection) -> None:
        for message in ws:
            seen.append(str(message))
            ws.send(message)

    server = serve(echo, "127.0.0.1", port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield port, seen
    server.shutdown()


def test_intercepts_rewrite_drop_answer_delay_and_inject(
        tmp_path: Path, upstream: tuple[int, list[str]]) -> None:
    port, seen = upstream
    (tmp_path / "intercept.toml").write_text(readme_intercept())
    config = tmp_path / "wsdaemon.ini"
    config.write_text(textwrap.dedent(f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1

        [route:/live]
        strategy = proxy
        upstream = ws://127.0.0.1:{port}/
        intercept = intercept.toml
    """))
    daemon = Daemon(config)
    try:
        with connect(f"{daemon.url}/live?client_id=c1") as client:
            client.send(json.dumps({"type": "subscribe", "channel": "prices"}))
            assert json.loads(client.recv(timeout=5)) == {"type": "subscribe",
                                                          "channel": "test-prices"}
            client.send("secret")
            assert client.recv(timeout=5) == "the proxy kept it"
            started = time.monotonic()
            client.send("slow one")
            client.send("fast two")
            assert client.recv(timeout=5) == "(delayed by the proxy)"
            assert client.recv(timeout=5) == "slow one"
            assert time.monotonic() - started >= 0.4
            assert client.recv(timeout=5) == "fast two", "order is kept behind a delay"
            client.send("bye")
            assert [client.recv(timeout=5), client.recv(timeout=5)] == ["bye",
                                                                         "injected after bye"]
            client.send("bye")  # times = 1: the second passes as it is
            assert client.recv(timeout=5) == "bye"
            client.send("ping")
            assert client.recv(timeout=5) == "ping"
        assert "secret" not in seen, "a dropped message never reaches the upstream"
        assert json.loads(seen[0])["channel"] == "test-prices"
    finally:
        assert daemon.stop() == 0


def test_a_wrong_intercept_file_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "intercept.toml").write_text('[[intercept]]\nfrom = "client"\ndelay = -1\n')
    config = tmp_path / "wsdaemon.ini"
    config.write_text("[wsdaemon]\nlisten = tcp:0\n\n[route:/live]\nstrategy = proxy\n"
                      "upstream = ws://127.0.0.1:9/\nintercept = intercept.toml\n")
    result = run_cli("--config", str(config), "--check-config", cwd=tmp_path)
    assert result.returncode != 0
    error = result.stdout + result.stderr
    assert "intercept.toml:3" in error and "delay" in error and "[route:/live]" in error
