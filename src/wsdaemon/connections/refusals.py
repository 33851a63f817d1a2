"""
One log line per refused handshake.

Autobahn's C{failHandshake} logs two lines of its own for every refusal
("failing WebSocket opening handshake ('...')" at info and "dropping
connection to peer ... with abort=False: ..." at warn), after the line
our C{onConnect} already wrote saying who was refused and why: three lines
for one event in the journal. Here Autobahn's two are left out, and a
refusal our code did not explain (a malformed handshake that Autobahn
refuses itself, or an C{onConnect} refusal without a line of its own)
gets one line of ours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger

from wsdaemon.escaping import visible

__all__ = ["fail_handshake_quietly", "logged", "was_logged"]

_log = Logger(namespace="wsdaemon.protocol")


class _Silent:
    """
    Stands in for Autobahn's logger during the refusal (its lines at debug
    and trace stay what they were: off).
    """

    def _drop(self, *args: Any, **kwargs: Any) -> None:
        return None

    critical = error = warn = info = debug = trace = failure = _drop


_SILENT = _Silent()


def logged(deny: ConnectionDeny) -> ConnectionDeny:
    """
    @return: C{deny}, marked as a refusal whose log line was written.
    """
    deny.wsdaemon_logged = True  # type: ignore[attr-defined]
    return deny


def was_logged(error: BaseException) -> bool:
    """
    @return: whether C{error} is a refusal marked by L{logged}.
    """
    return bool(getattr(error, "wsdaemon_logged", False))


def fail_handshake_quietly(protocol: Any, fail: Callable[[str, int, Any], None],
                           reason: str, code: int, headers: Any, told: bool) -> None:
    """
    Refuse the handshake with C{fail} (Autobahn's C{failHandshake}), with
    one log line in all.

    @param told: whether our code already logged this refusal.
    """
    reason = visible(reason)
    if not told:
        _log.info("refused {peer} on {route} with {code}: {reason}",
                  peer=visible(getattr(protocol, "peer", "?")),
                  route=visible(getattr(protocol, "http_request_path", None) or "?"),
                  code=code, reason=reason)
    own = protocol.__dict__.get("log", _SILENT)  # Autobahn's is its class's
    protocol.log = _SILENT
    try:
        fail(reason, code, headers)
    finally:
        if own is _SILENT:
            del protocol.log
        else:
            protocol.log = own
