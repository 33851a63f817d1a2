"""
systemd credentials in the config: C{${CREDENTIALS_DIRECTORY}/NAME} names a
file systemd handed the service (C{LoadCredential=NAME:/path}).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from wsdaemon.config import ConfigError, DaemonConfig, load_config
from wsdaemon.support.settings import operator_settings

KEY = "push-key-0123456789abcdef"
TOKEN = "alice-token-0123456789abcdef"

CONFIG = """
[wsdaemon]
listen = tcp:0:interface=127.0.0.1

[protocol]
identity_secret_file = {identity}

[admin]
listen = tcp:0:interface=127.0.0.1
api_keys_file = ${{CREDENTIALS_DIRECTORY}}/api.keys

[operator]
tokens_file = ${{CREDENTIALS_DIRECTORY}}/operators.tokens
store = queue.sqlite3

[route:/support]
strategy = operator
"""


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    """A directory as systemd makes it for LoadCredential=."""
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "api.keys").write_text(f"ops:{KEY}\n")
    (directory / "operators.tokens").write_text(f"alice:{TOKEN}\n")
    return directory


def load(path: Path, environ: dict[str, str]) -> DaemonConfig:
    return load_config(path, clock=Clock(), environ=environ)


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_secret_files_are_read_from_the_credentials_directory(
    write_config: Callable[..., Path], credentials: Path
) -> None:
    """Token and key files named through ${CREDENTIALS_DIRECTORY} are read
    there, whatever the config file's directory; the identity secret too."""
    (credentials / "identity.key").write_text("s" * 64)
    path = write_config(CONFIG.format(identity="${CREDENTIALS_DIRECTORY}/identity.key"))
    config = load(path, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.admin is not None and config.admin.api_keys == {KEY: "ops"}
    operator = operator_settings(config)
    assert operator is not None and operator.tokens == {TOKEN: "alice"}
    identity = config.protocol.identity
    assert identity.secret_file == credentials / "identity.key"
    assert identity.secret == b"s" * 64


def test_trailing_slash_and_relative_paths(
    write_config: Callable[..., Path], credentials: Path
) -> None:
    """A trailing slash on the directory changes nothing; a path without the
    variable is still relative to the config file."""
    path = write_config(CONFIG.format(identity="state/identity.key"))
    config = load(path, {"CREDENTIALS_DIRECTORY": f"{credentials}/"})
    assert config.admin is not None and config.admin.api_keys == {KEY: "ops"}
    assert config.protocol.identity.secret_file == path.parent / "state" / "identity.key"


def test_unset_variable_names_file_line_section_and_key(
    write_config: Callable[..., Path]
) -> None:
    """Outside systemd, a credential path is an error naming where it is and
    which LoadCredential= would provide it: in the [operator] section too,
    which its component's parser reads through the config layer."""
    path = write_config(CONFIG.format(identity="identity.key").replace(
        "${CREDENTIALS_DIRECTORY}/api.keys", "api.keys"))
    (path.parent / "api.keys").write_text(f"ops:{KEY}\n")
    with pytest.raises(ConfigError) as info:
        load(path, {})
    error = info.value
    line = line_of(path, "tokens_file")
    assert (error.section, error.key, error.line) == ("operator", "tokens_file", line)
    assert str(error).startswith(f"{path}:{line}: [operator] tokens_file: "
                                 "${CREDENTIALS_DIRECTORY} is not set")
    assert "LoadCredential=operators.tokens:" in str(error)


def test_missing_credential_says_which(write_config: Callable[..., Path],
                                       credentials: Path) -> None:
    """A credential the unit did not load is named, with the line to add."""
    (credentials / "operators.tokens").unlink()
    path = write_config(CONFIG.format(identity="identity.key"))
    with pytest.raises(ConfigError) as info:
        load(path, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert (info.value.section, info.value.key) == ("operator", "tokens_file")
    assert f"no credential operators.tokens in {credentials}" in str(info.value)
    assert "LoadCredential=operators.tokens:" in str(info.value)


def test_missing_identity_credential_is_not_left_for_the_daemon_to_create(
    write_config: Callable[..., Path], credentials: Path
) -> None:
    """An identity secret file the daemon would create is refused when it
    names a credential (systemd's directory is read-only)."""
    path = write_config(CONFIG.format(identity="${CREDENTIALS_DIRECTORY}/identity.key"))
    with pytest.raises(ConfigError) as info:
        load(path, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert (info.value.section, info.value.key) == ("protocol", "identity_secret_file")
    assert "no credential identity.key" in str(info.value)


def test_other_variables_are_not_expanded(write_config: Callable[..., Path],
                                          credentials: Path) -> None:
    """Only ${CREDENTIALS_DIRECTORY} is expanded: another ${...} is an error,
    not a file looked for under that literal name."""
    path = write_config(CONFIG.format(identity="${STATE_DIRECTORY}/identity.key"))
    with pytest.raises(ConfigError) as info:
        load(path, {"CREDENTIALS_DIRECTORY": str(credentials), "STATE_DIRECTORY": "/x"})
    assert (info.value.section, info.value.key) == ("protocol", "identity_secret_file")
    assert "only ${CREDENTIALS_DIRECTORY} is expanded in a path, not ${STATE_DIRECTORY}" \
        in str(info.value)


def test_jwt_secret_and_listen_endpoints(write_config: Callable[..., Path],
                                         credentials: Path) -> None:
    """A JWT secret and an endpoint string's files (a TLS key) may be
    credentials too."""
    (credentials / "jwt.secret").write_text("j" * 40)
    path = write_config("""
        [wsdaemon]
        listen = ssl:8443:privateKey=${CREDENTIALS_DIRECTORY}/key.pem:certKey=cert.pem

        [route:/echo]
        strategy = echo
        identity = jwt
        jwt_secret_file = ${CREDENTIALS_DIRECTORY}/jwt.secret
    """)
    config = load(path, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.listen == (f"ssl:8443:privateKey={credentials}/key.pem:certKey=cert.pem",)
    jwt = config.routes[0].protocol.identity.jwt
    assert jwt is not None and jwt.key == b"j" * 40
    with pytest.raises(ConfigError) as info:
        load(path, {})
    assert (info.value.section, info.value.key) == ("wsdaemon", "listen")
    assert "LoadCredential=key.pem:" in str(info.value)


def test_the_process_environment_is_the_default(
    write_config: Callable[..., Path], credentials: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an environ argument, the process's own environment is used
    (what systemd sets for the daemon)."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = load_config(write_config(CONFIG.format(identity="identity.key")), clock=Clock())
    operator = operator_settings(config)
    assert operator is not None and operator.tokens == {TOKEN: "alice"}
