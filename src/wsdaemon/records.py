"""
The values that pass through the interfaces: whom a push is for, how a
route answers handshakes on purpose, a message's limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_FAULT_SECONDS", "MAX_FRAGMENTS", "SENDABLE_CLOSE_CODES",
           "SENDABLE_CLOSE_CODES_TEXT", "HandshakeAnswer", "HandshakePlan", "HandshakeRefused",
           "HandshakeRequest", "MessageLimits", "PushTarget", "check_plan", "path_params",
           "path_pattern"]

#: The longest a fault on purpose (a pause, a hold, a ping's wait) may last.
MAX_FAULT_SECONDS = 3600.0
#: The most frames one message may be sent in, on purpose.
MAX_FRAGMENTS = 10_000
#: Close codes the daemon may send (RFC 6455 section 7.4 and IANA's registry): 1000-1003,
#: 1007-1014, and 3000-4999 (registered and private use). 1004 is reserved; 1005, 1006 and
#: 1015 stand for "no code", "no close frame" and "TLS failed" and never go on the wire.
#: The one set that sessions, rules, the admin API and the proxy check against.
SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015),
                                  *range(3000, 5000)})
#: How L{SENDABLE_CLOSE_CODES} reads in an error message.
SENDABLE_CLOSE_CODES_TEXT = "1000-1003, 1007-1014 or 3000-4999"


@dataclass(frozen=True)
class PushTarget:
    """
    Whom a push is for.

    @ivar kind: C{session}, C{client}, C{route} or C{all}.
    @ivar value: the session id, client id or route path (None for all).
    """

    kind: str
    value: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}


@dataclass(frozen=True)
class HandshakePlan:
    """
    How a route answers opening handshakes on purpose (a rules file's
    C{[handshake]}, or the admin API's C{/routes/handshake}).

    @ivar subprotocols: accepted subprotocols, in the server's order of
        preference: the first the client offers is chosen.
    @ivar require_subprotocol: refuse (HTTP 400) a client that offers none
        of them.
    @ivar refuse_next: how many handshakes to refuse, from now on.
    @ivar refuse_status: the HTTP status they get.
    @ivar refuse_headers: extra response headers they get (e.g.
        C{Retry-After}).
    @ivar reset_next: how many handshakes to answer by resetting the TCP
        connection (RST), after the refusals.
    @ivar hang_next: how many handshakes never to answer (held until the
        client gives up), after the resets.
    @ivar delay: seconds every answer waits (a slow server).
    @ivar paths: the paths the route answers, below its own (patterns such
        as C{/rooms/{room}}; empty: every path); others get 404.
    """

    subprotocols: tuple[str, ...] = ()
    require_subprotocol: bool = False
    refuse_next: int = 0
    refuse_status: int = 503
    refuse_headers: tuple[tuple[str, str], ...] = ()
    reset_next: int = 0
    hang_next: int = 0
    delay: float = 0.0
    paths: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"subprotocols": list(self.subprotocols),
                "require_subprotocol": self.require_subprotocol,
                "refuse_next": self.refuse_next, "refuse_status": self.refuse_status,
                "refuse_headers": dict(self.refuse_headers), "reset_next": self.reset_next,
                "hang_next": self.hang_next, "delay": self.delay, "paths": list(self.paths)}


#: An HTTP token (RFC 9110): header names and subprotocols (matched whole:
#: `$` would let a final newline through, into the response's headers).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Statuses a refusal may use.
REFUSAL_STATUSES = range(400, 600)


def check_plan(plan: HandshakePlan) -> None:
    """
    @raise ValueError: naming what is wrong (a subprotocol or header that is
        not an HTTP token, a header value with a line break, a status that
        is not an error).
    """
    for name in plan.subprotocols:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"subprotocol {name!r} is not an HTTP token")
    if plan.refuse_status not in REFUSAL_STATUSES:
        raise ValueError(f"refuse_status must be from 400 to 599, got {plan.refuse_status}")
    for key in ("refuse_next", "reset_next", "hang_next"):
        if getattr(plan, key) < 0:
            raise ValueError(f"{key} must be 0 or more")
    if not 0 <= plan.delay <= MAX_FAULT_SECONDS:
        raise ValueError(f"delay must be from 0 to {MAX_FAULT_SECONDS:g} seconds, "
                         f"got {plan.delay!r}")
    for pattern in plan.paths:
        path_pattern(pattern)
    for name, value in plan.refuse_headers:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name!r} is not an HTTP token")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name} holds a line break")


#: A placeholder in a path pattern: a whole segment, C{{name}}.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_\-]*)\}")


def path_pattern(pattern: str) -> tuple[str, ...]:
    """
    A path pattern's segments: C{/rooms/{room}} is C{("rooms", "{room}")};
    a placeholder stands for one whole, non-empty segment. C{/} alone is
    no segment (the route's own path).

    @raise ValueError: naming what is wrong (no leading slash, a
        placeholder inside a segment, one named twice, a line break).
    """
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise ValueError(f"path {pattern!r} must start with / (e.g. /rooms/{{room}})")
    if any(c in pattern for c in "?#\r\n\0 ") or len(pattern) > 1000:
        raise ValueError(f"path {pattern!r}: expected a path of at most 1000 characters, "
                         "without spaces, ? or #")
    segments = tuple(s for s in pattern.split("/") if s)
    names: set[str] = set()
    for segment in segments:
        found = _PLACEHOLDER.fullmatch(segment)
        if found is None and ("{" in segment or "}" in segment):
            raise ValueError(f"path {pattern!r}: a placeholder is a whole segment, "
                             "e.g. /rooms/{room}")
        if found is not None:
            if found.group(1) in names:
                raise ValueError(f"path {pattern!r}: {{{found.group(1)}}} named twice")
            names.add(found.group(1))
    return segments


def path_params(segments: tuple[str, ...], path: str) -> dict[str, str] | None:
    """
    @param segments: a pattern's (L{path_pattern}).
    @param path: a request's path below its route, e.g. C{/rooms/42}.
    @return: the placeholders' values if C{path} matches, else None.
    """
    parts = [s for s in path.split("/") if s]
    if len(parts) != len(segments):
        return None
    found: dict[str, str] = {}
    for segment, part in zip(segments, parts, strict=True):
        if segment.startswith("{") and segment.endswith("}"):
            found[segment[1:-1]] = part
        elif segment != part:
            return None
    return found


@dataclass(frozen=True)
class MessageLimits:
    """
    What a route accepts in one message (its C{max_message_size},
    C{max_frame_size} and C{max_fragments}; the defaults are the config's),
    for a strategy that relays messages from elsewhere into the route (a
    proxy's upstream) to hold that side to the same.

    @ivar max_message_size: bytes in one message.
    @ivar max_frame_size: bytes in one frame.
    @ivar max_fragments: frames in one message (0: no limit).
    """

    max_message_size: int = 65536
    max_frame_size: int = 65536
    max_fragments: int = 1024


@dataclass(frozen=True)
class HandshakeRequest:
    """
    A client's opening handshake, as a strategy's handshake hook sees it.

    @ivar session_id: the id its session will have once open.
    @ivar headers: the request's headers, names in lower case; values as
        Autobahn decodes them (ISO-8859-1: bytes over 0x7F are one character
        each).
    @ivar subprotocols: the subprotocols the client offers, in its order.
    @ivar limits: the route's limits on one message.
    @ivar client_id: the client's id as the route's identity found it (None:
        its session id will stand in).
    @ivar claims: the claims of the client's verified identity token
        (C{identity = jwt}); empty otherwise.
    """

    session_id: str
    path: str
    query: str
    headers: Mapping[str, str]
    subprotocols: tuple[str, ...]
    peer: str
    limits: MessageLimits = field(default_factory=MessageLimits)
    client_id: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    #: The subprotocol the connection was accepted with, once it is open
    #: (None before, or when none was).
    subprotocol: str | None = None


@dataclass(frozen=True)
class HandshakeAnswer:
    """
    How a hook accepts a handshake: the subprotocol chosen (one the client
    offered, or None) and headers to add to the response.

    @ivar client_id: the client's id from now on, as the hook decided it
        (a webhook backend that knows who the client is); None keeps the
        one the route's identity found.
    """

    subprotocol: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    client_id: str | None = None


class HandshakeRefused(Exception):  # noqa: N818 - says what happened
    """
    A hook refuses a handshake: the client gets C{status} and C{reason}.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
