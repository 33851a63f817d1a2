"""
The twistd entry point: options, --check-config, and the service it builds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError

from wsdaemon.server.service import WsDaemonService
from wsdaemon.tap import Options, makeService

CONFIG = """
[wsdaemon]
listen = tcp:8080:interface=127.0.0.1
[route:/echo]
strategy = echo
[route:/a/b]
strategy = echo
"""


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_listen_is_repeatable() -> None:
    """Listen is repeatable."""
    options = parse("--config", "x.ini", "--listen", "tcp:1", "--listen", "unix:/tmp/s")
    assert options["listen"] == ["tcp:1", "unix:/tmp/s"]
    assert not options["check-config"]


def test_config_is_required() -> None:
    """Config is required."""
    with pytest.raises(UsageError, match="--config"):
        parse("--listen", "tcp:1")


def test_check_config_prints_summary(write_config: Callable[..., Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Check config prints summary."""
    options = parse("--config", str(write_config(CONFIG)), "--check-config")
    with pytest.raises(SystemExit) as info:
        makeService(options, reactor=MemoryReactorClock())
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "/echo (echo)" in out and "/a/b (echo)" in out


def test_config_error_exits_1_with_one_line(write_config: Callable[..., Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Config error exits 1 with one line."""
    path = write_config(CONFIG.replace("strategy = echo", "strategy = nope", 1))
    with pytest.raises(SystemExit) as info:
        makeService(parse("--config", str(path)), reactor=MemoryReactorClock())
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{path}:4: [route:/echo] strategy: unknown strategy 'nope'" in err


def test_service_listens_on_every_endpoint(write_config: Callable[..., Path]) -> None:
    """--listen replaces the config's endpoints; each becomes a listener on the reactor."""
    reactor = MemoryReactorClock()
    options = parse("--config", str(write_config(CONFIG)),
                    "--listen", "tcp:9001:interface=127.0.0.1", "--listen", "tcp:9002")
    service = makeService(options, reactor=reactor)
    assert isinstance(service, WsDaemonService)
    service.privilegedStartService()
    service.startService()
    assert sorted(port for port, *_ in reactor.tcpServers) == [9001, 9002]
    site = reactor.tcpServers[0][1]
    assert site is service.site
    assert set(service.factories) == {"/echo", "/a/b"}
    service.stopService()
