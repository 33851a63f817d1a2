"""
Every open client connection, findable by session, client, route: what
pushes are addressed to and what C{GET /clients} lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from wsdaemon.interfaces import ISession
from wsdaemon.records import PushTarget

__all__ = ["Connection", "PushTarget", "SessionIndex"]


class Connection(Protocol):
    """
    What the index, and the push buses it hands connections to, use of a
    client's connection (L{wsdaemon.connections.protocol.Connection}).
    """

    @property
    def session(self) -> ISession | None: ...

    messages_in: int
    messages_out: int
    factory: Any
    state: Any
    STATE_OPEN: Any
    STATE_CLOSED: Any

    @property
    def max_message_size(self) -> int: ...

    def push_frame(self, message: str | bytes) -> str | bytes: ...

    def send_prepared(self, prepared: Any, length: int, payload: bytes = ...,
                      binary: bool = ...) -> bool: ...


class SessionIndex:
    def __init__(self) -> None:
        self._by_session: dict[str, Connection] = {}
        self._by_client: dict[str, set[Connection]] = {}
        self._by_route: dict[str, set[Connection]] = {}

    def __len__(self) -> int:
        return len(self._by_session)

    def add(self, protocol: Connection) -> None:
        session = protocol.session
        assert session is not None
        self._by_session[session.session_id] = protocol
        self._by_client.setdefault(session.client_id, set()).add(protocol)
        self._by_route.setdefault(session.route, set()).add(protocol)

    def remove(self, protocol: Connection, session_id: str, client_id: str,
               route: str) -> None:
        if self._by_session.get(session_id) is protocol:
            del self._by_session[session_id]
        for index, key in ((self._by_client, client_id), (self._by_route, route)):
            members = index.get(key)
            if members is not None:
                members.discard(protocol)
                if not members:
                    del index[key]

    def select(self, target: PushTarget) -> Iterable[Connection]:
        if target.kind == "all":
            return list(self._by_session.values())
        if target.kind == "session":
            found = self._by_session.get(target.value or "")
            return [found] if found is not None else []
        if target.kind == "client":
            return list(self._by_client.get(target.value or "", ()))
        if target.kind == "route":
            return list(self._by_route.get(target.value or "", ()))
        raise ValueError(f"unknown push target kind {target.kind!r}")

    def select_all(self) -> list[Connection]:
        return list(self._by_session.values())

    def count_by_route(self) -> dict[str, int]:
        return {route: len(members) for route, members in self._by_route.items()}

    def describe(self, route: str | None = None) -> list[dict[str, Any]]:
        """
        @param route: only this route's connections (None: all).
        @return: one entry per open connection, oldest first.
        """
        protocols: Iterable[Connection] = (self._by_session.values() if route is None
                                           else self._by_route.get(route, ()))
        entries = []
        for protocol in protocols:
            session = protocol.session
            if session is None:
                continue
            entries.append({
                "session_id": session.session_id, "client_id": session.client_id,
                "route": session.route, "peer": session.peer,
                "connected_at": session.connected_at,
                "messages_in": protocol.messages_in, "messages_out": protocol.messages_out,
            })
        return sorted(entries, key=lambda e: e["connected_at"])
