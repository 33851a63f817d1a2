"""
The embedded queue's delivery: the clients connected to this daemon, and
writing outgoing messages to them with the store's record of what was
delivered kept straight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.interfaces import IQueueStore, ISession
from wsdaemon.operators.records import MessageRecord

__all__ = ["LocalDelivery"]

_log = Logger(namespace="wsdaemon.operators")


def log_failure(what: str) -> Callable[[Failure], None]:
    def log(failure: Failure) -> None:
        _log.failure("operator queue: {what} failed", failure=failure, what=what)

    return log


class LocalDelivery:
    """
    @param store: where messages wait for their client, and are marked
        delivered once written.
    """

    def __init__(self, store: IQueueStore) -> None:
        self._store = store
        self._clients: dict[str, set[ISession]] = {}
        # Messages written on the reply path whose "delivered" mark may not
        # be stored yet: a reconnecting client's backlog must skip them.
        self._in_flight: set[int] = set()

    def connected(self, session: ISession) -> None:
        self._clients.setdefault(session.client_id, set()).add(session)

    def disconnected(self, session: ISession) -> None:
        sessions = self._clients.get(session.client_id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._clients[session.client_id]

    def is_here(self, client_id: str) -> bool:
        return client_id in self._clients

    def route_of(self, client_id: str) -> str:
        sessions = self._clients.get(client_id)
        return next(iter(sessions)).route if sessions else ""

    def send_backlog(self, session: ISession) -> Deferred[int]:
        """
        Write what was kept for the client while it was away.

        @return: a Deferred firing with how many messages were sent.
        """
        d: Deferred[Any] = self._store.undelivered(session.client_id)
        d.addCallback(self._write_backlog, session)
        return d

    def _write_backlog(self, records: list[MessageRecord], session: ISession) -> int:
        sent = [r.seq for r in records
                if r.seq is not None and r.seq not in self._in_flight and session.send(r.body)]
        if sent:
            self._store.mark_delivered([s for s in sent if s is not None]).addErrback(
                log_failure("marking kept replies delivered"))
        return len(sent)

    def deliver(self, message: MessageRecord) -> int:
        """
        Write a stored message to its client's connections now.

        @return: how many connections got it (0: it waits in the store).
        """
        assert message.seq is not None
        sessions = list(self._clients.get(message.client_id, ()))
        count = sum(1 for session in sessions if session.send(message.body))
        if count:
            seq = message.seq
            self._in_flight.add(seq)

            def landed(result: Any) -> Any:
                self._in_flight.discard(seq)
                return result

            d: Deferred[Any] = self._store.mark_delivered([seq])
            d.addBoth(landed)
            d.addErrback(log_failure("marking a reply delivered"))
        return count

    def on_route(self, route: str) -> list[tuple[str, ISession]]:
        """
        @return: (client id, session) for every connection to C{route}.
        """
        return [(client_id, session) for client_id, sessions in self._clients.items()
                for session in sessions if session.route == route]

    def clients(self) -> list[dict[str, Any]]:
        return [{"client_id": client_id, "routes": sorted({s.route for s in sessions}),
                 "connections": len(sessions)}
                for client_id, sessions in sorted(self._clients.items())]
