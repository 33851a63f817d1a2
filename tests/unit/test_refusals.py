"""
A refused handshake leaves one log line (wsdaemon.connections.refusals).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import globalLogPublisher

from wsdaemon.connections.refusals import fail_handshake_quietly


class _Noisy:
    """Logs as Autobahn's failHandshake does, through the protocol's C{log}."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, text: str, **kwargs: Any) -> None:
        self.lines.append(text)

    warn = info


class _Protocol:
    log = _Noisy()
    peer = "tcp4:198.51.100.7:4242"
    http_request_path = "/echo"

    def __init__(self) -> None:
        self.failed: list[tuple[str, int, Any]] = []

    def fail(self, reason: str, code: int, headers: Any) -> None:
        self.log.info("failing WebSocket opening handshake ('{reason}')", reason=reason)
        self.log.warn("dropping connection to peer {peer} with abort=False: {reason}")
        self.failed.append((reason, code, headers))


def _ours(told: bool, reason: str = "bad\x1bversion") -> tuple[_Protocol, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    protocol = _Protocol()
    try:
        fail_handshake_quietly(protocol, protocol.fail, reason, 400, None, told=told)
    finally:
        globalLogPublisher.removeObserver(events.append)
    return protocol, [e for e in events if e.get("log_namespace") == "wsdaemon.protocol"]


def test_unexplained_refusal_gets_one_line_of_ours() -> None:
    """Autobahn's two lines are left out; ours names peer, route, status, escaped reason."""
    protocol, events = _ours(told=False)
    assert _Protocol.log.lines == []
    assert len(events) == 1
    event = events[0]
    assert (event["peer"], event["route"], event["code"]) == (protocol.peer, "/echo", 400)
    assert "\x1b" not in event["reason"]
    assert protocol.failed == [(event["reason"], 400, None)]
    assert "log" not in protocol.__dict__  # Autobahn's logger is back


def test_explained_refusal_gets_no_more_lines() -> None:
    """A refusal our onConnect already logged: no line at all here."""
    protocol, events = _ours(told=True)
    assert events == [] and _Protocol.log.lines == []
    assert len(protocol.failed) == 1
