"""
An operator speaking the JSON protocol to a real daemon, through the
independent `websockets` client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
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


#: The structured visitor protocol's subprotocol.
CHAT = "wsdaemon.chat.v1"
#: The operator every one-operator daemon test signs in as (alice).
TOKEN = "alice-token-0123456789abcdef"
#: The acknowledgement those tests set, so that they can tell it apart.
ACK = "Thanks! We will be with you shortly."
ADMIN_KEY = "admin-key-0123456789abcdef"


def support_config(*sections: str, display_name: bool = True, ack: bool = True,
                   notices: bool = False, admin: bool = False) -> str:
    """
    The config of a one-operator daemon on conversations: alice (L{TOKEN})
    on an SQLite store, then C{sections} (each a whole section's text,
    e.g. C{"[route:/support]\nstrategy = operator"}).

    @param display_name: alice shows as "Alice Martin" to visitors.
    @param ack: the acknowledgement is L{ACK} (else the default one).
    @param notices: the offline notice at its default; without it, none,
        so that a test's visitor sees only what it is waiting for. The
        fallback is never sent (C{fallback_after = 0}).
    @param admin: an admin listener on C{ADMIN_PORT} (replace it with a
        free port), key L{ADMIN_KEY}.
    """
    operator = ["[operator]", "model = conversations", f"tokens = alice:{TOKEN}"]
    if display_name:
        operator.append("display_names = alice: Alice Martin")
    operator.append("store = conversations.sqlite3")
    if ack:
        operator.append(f"ack_message = {ACK}")
    if not notices:
        operator.append("offline_message =")
    operator.append("fallback_after = 0")
    parts = ["[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1", "\n".join(operator)]
    if admin:
        parts.append("[admin]\nlisten = tcp:ADMIN_PORT:interface=127.0.0.1\n"
                     f"api_keys = ops:{ADMIN_KEY}")
    parts.extend(section.strip() for section in sections)
    return "\n" + "\n\n".join(parts) + "\n"


def next_of(ws: ClientConnection, kind: str, timeout: float = 5,
            where: Callable[[dict[str, Any]], bool] = lambda _: True,
            seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """
    The next message of C{kind} that C{where} accepts on a protocol-2 (or
    structured visitor) connection; others are skipped, and every one read
    is added to C{seen}.
    """
    while True:
        message = json.loads(ws.recv(timeout=timeout))
        if seen is not None:
            seen.append(message)
        if message.get("type") == kind and where(message):
            return message  # type: ignore[no-any-return]


def request(ws: ClientConnection, payload: dict[str, Any], rid: str = "r1") -> dict[str, Any]:
    """Send C{payload} with the id C{rid}; its answer (ok or error)."""
    ws.send(json.dumps({"id": rid, **payload}))
    while True:
        message = json.loads(ws.recv(timeout=5))
        if message.get("id") == rid and message.get("type") in ("ok", "error"):
            return message  # type: ignore[no-any-return]


def operator_desk(daemon: Daemon, token: str, path: str = "/operator") -> ClientConnection:
    """An operator's protocol-2 connection, its C{hello} read."""
    ws = connect(f"{daemon.url}{path}", additional_headers={"Authorization": f"Bearer {token}"})
    hello = next_of(ws, "hello")
    assert hello["protocol"] == 2, hello
    return ws


def the_conversation(ws: ClientConnection, timeout: float = 5) -> str:
    """The one conversation the operator lists (waiting up to C{timeout} for it)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = request(ws, {"type": "conversations", "view": "all"}, "list")
        assert listed["type"] == "ok", listed
        if listed["conversations"] or time.monotonic() > deadline:
            [summary] = listed["conversations"]
            return str(summary["id"])
        time.sleep(0.05)


def structured(daemon: Daemon, cookie: str | None = None,
               path: str = "/support") -> ClientConnection:
    """A visitor speaking the structured protocol, with C{cookie} if given."""
    headers = {"Cookie": cookie} if cookie else {}
    ws = connect(f"{daemon.url}{path}", subprotocols=[CHAT],  # type: ignore[list-item]
                 additional_headers=headers)
    assert ws.subprotocol == CHAT
    return ws


def cookie_of(ws: ClientConnection) -> str:
    """The identity cookie the daemon issued (as a browser would keep it)."""
    assert ws.response is not None
    header = ws.response.headers.get("Set-Cookie", "")
    assert header, "the daemon issues an identity cookie"
    return header.split(";", 1)[0]
