"""
An operator speaking the JSON protocol to a real daemon, through the
independent `websockets` client.
"""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon


class Operator:
    """An operator speaking the JSON protocol through the `websockets` client."""

    def __init__(self, daemon: Daemon, token: str) -> None:
        self.ws: ClientConnection = connect(
            f"{daemon.url}/operator", additional_headers={"Authorization": f"Bearer {token}"})
        self.hello = self.next("hello")
        self._id = 0

    def next(self, kind: str, timeout: float = 5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if event["type"] == kind:
                return event  # type: ignore[no-any-return]

    def request(self, **body: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, **body}))
        deadline = time.monotonic() + 10
        while True:
            event = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if event["type"] in ("ok", "error") and event.get("id") == self._id:
                return event  # type: ignore[no-any-return]

    def close(self) -> None:
        self.ws.close()


def next_of(ws: ClientConnection, kind: str, timeout: float = 5) -> dict[str, Any]:
    """The next message of C{kind} on a protocol-2 connection (others skipped)."""
    while True:
        message = json.loads(ws.recv(timeout=timeout))
        if message.get("type") == kind:
            return message  # type: ignore[no-any-return]


def request(ws: ClientConnection, payload: dict[str, Any], rid: str) -> dict[str, Any]:
    """Send C{payload} with the id C{rid}; its answer (ok or error)."""
    ws.send(json.dumps({"id": rid, **payload}))
    while True:
        message = json.loads(ws.recv(timeout=5))
        if message.get("id") == rid and message.get("type") in ("ok", "error"):
            return message  # type: ignore[no-any-return]
