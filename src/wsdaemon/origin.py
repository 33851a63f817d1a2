"""
Which browser pages may open a WebSocket to a route.

Browsers send the page's origin (C{scheme://host[:port]}) in the C{Origin}
header; non-browser clients usually send none. A pattern is
C{scheme://host[:port]} where C{host} may contain C{*} (any run of
characters) and C{port} may be C{*} (any port); a pattern without a port
means the scheme's default port, as the origin without one does. C{*} alone
allows every origin, C{null} allows the opaque origin of sandboxed or
C{file://} pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["LOCAL_ORIGINS", "MAX_REMEMBERED", "OriginPolicy"]

#: Pages served from this machine, on any port, over http or https.
LOCAL_ORIGINS = (
    "http://localhost:*",
    "http://127.0.0.1:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
)

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Origins whose answer a policy remembers (a reconnect storm brings the
#: same few pages' origins thousands of times; parsing and matching one
#: costs a few µs). Past the bound the memory starts again: anyone may send
#: any Origin.
MAX_REMEMBERED = 256
#: Matched whole (fullmatch): `$` would accept a final newline.
_PATTERN = re.compile(
    r"(?P<scheme>https?)://(?P<host>\[[0-9A-Fa-f:.*]+\]|[A-Za-z0-9.*\-]+)(:(?P<port>\*|[0-9]+))?"
)


def _compile(pattern: str) -> re.Pattern[str]:
    if pattern == "*":
        return re.compile(r".*", re.DOTALL)
    if pattern == "null":
        return re.compile(r"null")
    match = _PATTERN.fullmatch(pattern)
    if match is None:
        raise ValueError(
            "expected origin patterns such as http://localhost:* or https://*.example.com "
            f"(scheme://host[:port], '*' as a wildcard), '*' or 'null'; got {pattern!r}"
        )
    scheme, host, port = match["scheme"], match["host"].lower(), match["port"]
    if port is None:
        port = str(_DEFAULT_PORTS[scheme])
    host_re = ".*".join(re.escape(part) for part in host.split("*"))
    port_re = r"\d+" if port == "*" else re.escape(port)
    return re.compile(rf"{scheme}://{host_re}:{port_re}")


def _normalise(origin: str) -> str | None:
    """
    @return: C{scheme://host:port} with the default port filled in, C{null},
        or None if C{origin} is not a valid origin.
    """
    origin = origin.strip()
    if origin.lower() == "null":
        return "null"
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in _DEFAULT_PORTS:
        return None
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class OriginPolicy:
    """
    Allowed origin patterns, and whether a missing Origin header is allowed.
    """

    patterns: tuple[str, ...]
    allow_missing: bool = True
    _compiled: tuple[re.Pattern[str], ...] = field(
        default=(), init=False, repr=False, compare=False
    )
    _answers: dict[str, bool] = field(default_factory=dict, init=False, repr=False,
                                      compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", tuple(_compile(p) for p in self.patterns))

    @classmethod
    def local_only(cls) -> OriginPolicy:
        return cls(patterns=LOCAL_ORIGINS)

    def with_patterns(self, patterns: Iterable[str]) -> OriginPolicy:
        """
        @raise ValueError: if a pattern is malformed.
        """
        return OriginPolicy(patterns=tuple(patterns), allow_missing=self.allow_missing)

    def with_allow_missing(self, allow_missing: bool) -> OriginPolicy:
        return OriginPolicy(patterns=self.patterns, allow_missing=allow_missing)

    def allows(self, origin: str | None) -> bool:
        """
        @param origin: the Origin header's value; None or "" when absent.
        """
        if not origin:
            return self.allow_missing
        answers = self._answers
        known = answers.get(origin)
        if known is not None:
            return known
        normal = _normalise(origin)
        allowed = normal is not None and any(
            pattern.fullmatch(normal) for pattern in self._compiled)
        if len(answers) >= MAX_REMEMBERED:
            answers.clear()
        answers[origin] = allowed
        return allowed
