"""
The embedded queue's delivery: the clients connected to this daemon, and
writing outgoing messages to them with the store's record of what was
delivered kept straight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.interfaces import ISession
from wsdaemon.records import MessageRecord
from wsdaemon.strategies.operator.ports import IQueueStore

__all__ = ["LocalDelivery"]

_log = Logger(namespace="wsdaemon.operators")


def log_failure(what: str) -> Callable[[Failure], None]:
    def log(failure: Failure) -> None:
        _log.failure("operator queue: {what} failed", failure=failure, what=what)

    return log


def write(message: MessageRecord, sessions: Iterable[ISession]) -> tuple[int, str | None]:
    """
    Write a message to a client's connections, surviving any of them
    refusing it (too big for its route: Autobahn raises on send).

    @return: how many connections took it, and why the last refusal (None
        if none refused).
    """
    count, error = 0, None
    for session in sessions:
        try:
            if session.send(message.body):
                count += 1
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            _log.warn("message {seq} for client {client_id} could not be written to session "
                      "{session_id} on {route}: {error}", seq=message.seq,
                      client_id=message.client_id, session_id=session.session_id,
                      route=session.route, error=error)
    return count, error


class LocalDelivery:
    """
    @param store: where messages wait for their client, and are marked
        delivered once written (or failed, if they never can be).
    @param on_failed: told of each message that can never be written (it is
        marked failed and not tried again, so later ones are not held up).
    """

    def __init__(self, store: IQueueStore,
                 on_failed: Callable[[MessageRecord, str], None] | None = None) -> None:
        self._store = store
        self._on_failed = on_failed
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
        sent: list[int] = []
        for record in records:
            if record.seq is None or record.seq in self._in_flight:
                continue
            count, error = write(record, [session])
            if count:
                sent.append(record.seq)
            elif error is not None:
                self._failed(record, error)
            else:
                break  # the connection closed: the rest waits for the next one
        if sent:
            self._store.mark_delivered(sent).addErrback(
                log_failure("marking kept replies delivered"))
        return len(sent)

    def _failed(self, message: MessageRecord, error: str) -> None:
        assert message.seq is not None
        self._store.mark_failed([message.seq]).addErrback(log_failure("marking a message failed"))
        if self._on_failed is not None:
            self._on_failed(message, error)

    def deliver(self, message: MessageRecord) -> int:
        """
        Write a stored message to its client's connections now.

        @return: how many connections got it (0: it waits in the store,
            unless it can never be written).
        """
        return self.deliver_or_keep(message)[0]

    def deliver_or_keep(self, message: MessageRecord) -> tuple[int, bool]:
        """
        Like L{deliver}.

        @return: how many connections got it, and whether it waits in the
            store for the client's next connection (none took it, and it
            was not refused as one that can never be written).
        """
        assert message.seq is not None
        count, error = write(message, list(self._clients.get(message.client_id, ())))
        if not count and error is not None:
            self._failed(message, error)
        if count:
            seq = message.seq
            self._in_flight.add(seq)

            def landed(result: Any) -> Any:
                self._in_flight.discard(seq)
                return result

            d: Deferred[Any] = self._store.mark_delivered([seq])
            d.addBoth(landed)
            d.addErrback(log_failure("marking a reply delivered"))
        return count, not count and error is None

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
