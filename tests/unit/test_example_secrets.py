"""
The shipped example tokens and keys: warned about on loopback, refused on
any other listener.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock

from wsdaemon.config import ConfigError, load_config
from wsdaemon.credentials import is_loopback

CONFIG = """\
[wsdaemon]
listen = {listen}

[operator]
tokens = alice:{token}
store = q.sqlite3

[admin]
listen = {admin}
api_keys = ops:{key}

[route:/support]
strategy = operator
"""
OWN = "0123456789abcdef0123"


@pytest.mark.parametrize(("endpoint", "loopback"), [
    ("tcp:8080:interface=127.0.0.1", True), (r"tcp6:8080:interface=\:\:1", True),
    ("tcp:8080:interface=localhost", True), ("unix:/run/ws.sock", True),
    ("tcp:8080", False), ("tcp:8080:interface=0.0.0.0", False),
    ("ssl:8443:privateKey=k.pem:interface=10.0.0.5", False),
    ("systemd:domain=INET:index=0", False),
])
def test_loopback_endpoints(endpoint: str, loopback: bool) -> None:
    """Only loopback interfaces and Unix sockets count as loopback."""
    assert is_loopback(endpoint) is loopback


def _load(tmp_path: Path, **values: str) -> object:
    fields = {"listen": "tcp:8080:interface=127.0.0.1", "token": OWN,
              "admin": "tcp:8081:interface=127.0.0.1", "key": OWN, **values}
    path = tmp_path / "wsdaemon.ini"
    path.write_text(CONFIG.format(**fields))
    return load_config(path, clock=Clock())


def test_example_secrets_refused_off_loopback(tmp_path: Path) -> None:
    """An example token on a public listener, or an example API key on a public
    admin listener, is a config error naming the section and key; on loopback
    both load (the daemon warns)."""
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, listen="tcp:8080:interface=0.0.0.0",
              token="alice-example-token-change-me")
    assert (error.value.section, error.value.key, error.value.line) == ("operator", "tokens", 5)
    assert "not a loopback listener" in str(error.value)
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, admin="tcp:8081", key="ops-example-api-key-change-me")
    assert (error.value.section, error.value.key) == ("admin", "api_keys")
    _load(tmp_path, token="alice-example-token-change-me", key="ops-example-api-key-change-me")
    _load(tmp_path, listen="tcp:8080:interface=0.0.0.0", admin="tcp:8081")
