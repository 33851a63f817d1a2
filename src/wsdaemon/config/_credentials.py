"""
Files the config names through systemd's credentials.

A unit with C{LoadCredential=NAME:/etc/wsdaemon/FILE} hands its service a
private, read-only copy of FILE, readable by the service's user only (a
C{DynamicUser} too), in the directory C{$CREDENTIALS_DIRECTORY}. The
config names it as C{${CREDENTIALS_DIRECTORY}/NAME}: that one variable is
expanded in the values that name files the daemon reads (secret files and
the listeners' endpoint strings), and no other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from wsdaemon.config._reader import _Reader

__all__ = ["CREDENTIALS_VARIABLE", "expand_credentials", "expand_endpoint", "read_path"]

#: The environment variable systemd sets for a unit with credentials.
CREDENTIALS_VARIABLE = "CREDENTIALS_DIRECTORY"
_REFERENCE = re.compile(r"\$\{([^}]*)\}")
#: What follows the variable: a credential's name (up to the next separator).
_NAME_AFTER = re.compile(r"/([^/:\s]+)")


def expand_credentials(raw: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """
    Replace C{${CREDENTIALS_DIRECTORY}} in C{raw} by the directory.

    @return: the expanded text and the names of the credentials it refers
        to (empty if none).
    @raise ValueError: another C{${...}} is used, or the variable is unset.
    """
    names: list[str] = []
    for match in _REFERENCE.finditer(raw):
        if match.group(1) != CREDENTIALS_VARIABLE:
            raise ValueError(f"only ${{{CREDENTIALS_VARIABLE}}} is expanded in a path, "
                             f"not {match.group(0)}")
        after = _NAME_AFTER.match(raw, match.end())
        names.append(after.group(1) if after else "")
    if not names:
        return raw, []
    directory = environ.get(CREDENTIALS_VARIABLE, "")
    if not directory:
        wanted = ", ".join(n for n in names if n) or "NAME"
        raise ValueError(
            f"${{{CREDENTIALS_VARIABLE}}} is not set: start the daemon from a systemd unit "
            f"with LoadCredential={wanted}:/path/to/file (README, \"Running under systemd\"), "
            f"or set {CREDENTIALS_VARIABLE} to a directory holding {wanted}")
    return raw.replace(f"${{{CREDENTIALS_VARIABLE}}}", directory.rstrip("/") or "/"), names


def read_path(reader: _Reader, section: str, key: str) -> Path:
    """
    @return: the file C{[section] key} names, relative to the config file's
        directory, with C{${CREDENTIALS_DIRECTORY}} expanded.
    @raise ConfigError: naming the file, line, section and key; also for a
        credential that is missing (never created later: the directory is
        systemd's, read-only).
    """
    raw = reader.parser[section][key].strip()
    try:
        expanded, names = expand_credentials(raw, reader.environ)
    except ValueError as e:
        raise reader.error(section, key, str(e)) from None
    path = reader.path.parent / expanded
    if names and not path.exists():
        raise reader.error(
            section, key,
            f"no credential {names[0] or '(unnamed)'} in {path.parent} "
            f"(${{{CREDENTIALS_VARIABLE}}}): add LoadCredential={names[0] or 'NAME'}:"
            "/path/to/file to the unit")
    return path


def expand_endpoint(reader: _Reader, section: str, key: str, endpoint: str) -> str:
    """
    @return: C{endpoint} with C{${CREDENTIALS_DIRECTORY}} expanded (e.g. a
        TLS key given as a credential).
    @raise ConfigError: naming the file, line, section and key.
    """
    try:
        return expand_credentials(endpoint, reader.environ)[0]
    except ValueError as e:
        raise reader.error(section, key, str(e)) from None
