"""
A strategy from outside the package, selected by config alone: once as a
Twisted plugin (by name), once by dotted path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.daemon import Daemon, run_cli

pytestmark = pytest.mark.slow

THIRDPARTY = Path(__file__).resolve().parent.parent / "thirdparty"

CONFIG = """
    [wsdaemon]
    listen = tcp:0:interface=127.0.0.1

    [route:/plugin]
    strategy = shout

    [route:/dotted]
    strategy = shout_strategy.ShoutFactory
    suffix = ?!
"""


def thirdparty_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(THIRDPARTY), env.get("PYTHONPATH")]))
    return env


def test_thirdparty_strategy_by_plugin_and_dotted_path(
    write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]
) -> None:
    """Third-party strategy by plugin and dotted path."""
    daemon = start_daemon(write_config(CONFIG), env=thirdparty_env())
    with connect(f"{daemon.url}/plugin") as client:
        assert client.recv() == "WELCOME"
        client.send("quiet please")
        assert client.recv() == "QUIET PLEASE!"
        client.send(b"\x01\x02")
        assert client.recv() == b"\x02\x01"
    with connect(f"{daemon.url}/dotted") as client:
        assert client.recv() == "WELCOME"
        client.send("what")
        assert client.recv() == "WHAT?!"


def test_thirdparty_option_error_names_key(write_config: Callable[..., Path]) -> None:
    """Third-party option error names key."""
    path = write_config(CONFIG.replace("suffix = ?!", "suffix = !!!!!"))
    result = run_cli("--config", str(path), "--check-config", env=thirdparty_env())
    assert result.returncode == 1
    assert ":9: [route:/dotted] suffix: expected at most 3 characters" in result.stderr


def test_plugin_unknown_without_pythonpath(write_config: Callable[..., Path]) -> None:
    """Without the third party on the path, the name is unknown and the known ones are listed."""
    result = run_cli("--config", str(write_config(CONFIG)), "--check-config")
    assert result.returncode == 1
    assert "unknown strategy 'shout'; expected one of: command, echo" in result.stderr
