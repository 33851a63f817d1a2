"""
Credentials: secret tokens (operator tokens, push API keys), each naming
who holds it.

Tokens are compared in constant time against every known token (the time
taken does not depend on which token matched or how much of one did), and
never logged.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping

from wsdaemon.endpoints import listen_interface

__all__ = ["MIN_TOKEN_LENGTH", "check_token", "parse_tokens"]

MIN_TOKEN_LENGTH = 16
#: Matched whole (fullmatch): `$` would accept a final newline.
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,32}")


def parse_tokens(lines: Iterable[str]) -> dict[str, str]:
    """
    Parse C{name:token} lines (blank lines and C{#} comments skipped).

    @return: token -> operator name.
    @raise ValueError: naming the line number (1-based) and what was expected.
    """
    tokens: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not _NAME.fullmatch(name):
            raise ValueError(
                f"line {number}: expected name:token with a name of letters, digits, '_', '.' "
                "or '-' (at most 32)"
            )
        if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise ValueError(
                f"line {number}: the token of {name!r} must be at least {MIN_TOKEN_LENGTH} "
                "characters without spaces (e.g. from `openssl rand -hex 24`)"
            )
        if token in tokens:
            raise ValueError(f"line {number}: {name!r} has the same token as {tokens[token]!r}")
        tokens[token] = name
    return tokens


def check_token(offered: str, tokens: Mapping[str, str]) -> str | None:
    """
    @return: the operator's name if C{offered} is a known token, else None.
    """
    offered_bytes = offered.encode("utf-8")
    found: str | None = None
    for token, name in tokens.items():
        if hmac.compare_digest(offered_bytes, token.encode("utf-8")):
            found = name
    return found


#: The secrets shipped in etc/ as examples: anyone who read the README knows
#: them. Warned about on loopback, refused on any other listener.
EXAMPLE_SECRETS = frozenset({
    "alice-example-token-change-me", "bob-example-token-change-me",
    "ops-example-api-key-change-me",
})


def example_names(secrets: Mapping[str, str]) -> list[str]:
    """
    @param secrets: secret -> name.
    @return: the names whose secret is one of the shipped examples.
    """
    return sorted(name for secret, name in secrets.items() if secret in EXAMPLE_SECRETS)


def is_loopback(endpoint: str) -> bool:
    """
    @return: whether a listening endpoint string only accepts this machine's
        connections (TCP on a loopback interface, or a Unix socket).
    """
    kind = endpoint.partition(":")[0]
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl"):
        return False  # systemd: and others: we cannot tell
    host = listen_interface(endpoint)
    return host is not None and (host in ("::1", "localhost") or host.startswith("127."))
