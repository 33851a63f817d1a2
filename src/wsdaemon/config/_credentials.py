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
from collections.abc import Mapping, Sequence
from pathlib import Path

from wsdaemon.config._reader import _Reader
from wsdaemon.credentials import example_names, is_loopback, parse_tokens
from wsdaemon.interfaces import SectionReader

__all__ = ["CREDENTIALS_VARIABLE", "expand_credentials", "expand_endpoint", "read_path",
           "read_secrets", "refuse_exposed_examples"]

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


def read_secrets(reader: _Reader, section: str, inline_key: str, file_key: str,
             what: str) -> dict[str, str]:
    """
    C{name:secret} lines from an inline key and/or a file it names.
    """
    values = reader.parser[section]
    found: dict[str, str] = {}
    if inline_key in values:
        try:
            found.update(parse_tokens(values[inline_key].splitlines()))
        except ValueError as e:
            raise reader.error(section, inline_key,
                               f"{e} (counting lines of this value)") from None
    if file_key in values:
        secret_path = read_path(reader, section, file_key)
        try:
            lines = secret_path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise reader.error(section, file_key,
                               f"cannot read {secret_path}: {e.strerror}") from None
        try:
            for secret, name in parse_tokens(lines).items():
                if secret in found:
                    raise ValueError(f"{name!r} has the same {what} as {found[secret]!r}")
                found[secret] = name
        except ValueError as e:
            raise reader.error(section, file_key, f"{secret_path}: {e}") from None
    if not found:
        raise reader.error(section, inline_key,
                           f"no {what}s; expected {inline_key} = name:secret lines or "
                           f"{file_key} = a file of them")
    return found


def refuse_exposed_examples(reader: SectionReader, key: str, secrets: Mapping[str, str],
                            endpoints: Sequence[str]) -> None:
    """
    The shipped example tokens and keys are public: refuse them on any
    listener other than loopback (the daemon warns about them on loopback).

    @param key: the inline key of C{secrets} (C{tokens}); the error names
        C{KEY_file} instead when the section has one.
    @param secrets: secret -> name.
    @param endpoints: where they would be accepted.
    """
    names = example_names(secrets)
    exposed = [e for e in endpoints if not is_loopback(e)]
    if names and exposed:
        if f"{key}_file" in reader.values:
            key = f"{key}_file"
        raise reader.error(
            key, f"{', '.join(names)} still use(s) the shipped example secret, and "
                 f"{exposed[0]} is not a loopback listener: make your own "
                 "(e.g. `openssl rand -hex 24`)")
