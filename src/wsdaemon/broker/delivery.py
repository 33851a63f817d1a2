"""
This daemon's side of delivery for the shared queue: which clients are
connected here (and telling Redis, for the other daemons), writing each
reply to their connections once, and marking it delivered in Redis.

Presence changes and delivery marks pile up during a reactor turn and go to
Redis together at its end: a few calls for many messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.broker.items import message_json, parse_message
from wsdaemon.broker.link import BrokerUnavailable, RedisLink
from wsdaemon.interfaces import ISession
from wsdaemon.operators.records import MessageRecord

__all__ = ["ClientDelivery"]

_log = Logger(namespace="wsdaemon.operators")


def log_failure(what: str) -> Callable[[Failure], None]:
    def log(failure: Failure) -> None:
        _log.failure("operator queue (redis): {what} failed", failure=failure, what=what)

    return log


class ClientDelivery:
    """
    @param ttl: seconds this daemon's presence lasts in Redis unless renewed.
    @param remember: seconds a message written here is remembered, so that
        the same message read again (from the stream, or a reconnecting
        client's backlog) is not written twice.
    """

    def __init__(self, link: RedisLink, clock: IReactorTime, ttl: float,
                 remember: float) -> None:
        self._link = link
        self._clock = clock
        self._ttl = ttl
        self._remember = remember
        self._clients: dict[str, set[ISession]] = {}
        # seq -> (when, connections written to) for messages written here.
        self._sent: dict[int, tuple[float, int]] = {}
        self._to_mark: dict[str, list[int]] = {}
        self._presence: list[tuple[str, str, int]] = []
        self._flush_call: Any = None
        self._remote: dict[tuple[str, str], int] = {}

    # -- connections -------------------------------------------------------------

    def connected(self, session: ISession) -> Deferred[int]:
        """
        @return: a Deferred firing with how many kept messages were sent.
        """
        self._clients.setdefault(session.client_id, set()).add(session)
        self._presence.append((session.client_id, session.route, 1))
        self._schedule_flush()
        return self.send_backlog(session)

    def disconnected(self, session: ISession) -> None:
        sessions = self._clients.get(session.client_id)
        if sessions is not None and session in sessions:
            sessions.discard(session)
            if not sessions:
                del self._clients[session.client_id]
            self._presence.append((session.client_id, session.route, -1))
            self._schedule_flush()

    def is_here(self, client_id: str) -> bool:
        return client_id in self._clients

    def route_of(self, client_id: str) -> str:
        sessions = self._clients.get(client_id)
        return next(iter(sessions)).route if sessions else ""

    def send_backlog(self, session: ISession) -> Deferred[int]:
        d = self._link.script("undelivered", session.client_id)

        def got(reply: list[str]) -> int:
            sent = 0
            for i in range(0, len(reply), 2):
                seq = int(reply[i])
                if seq in self._sent:
                    continue
                message = parse_message(json.loads(reply[i + 1]), seq)
                if session.send(message.body):
                    sent += 1
                    self._sent_to(message.client_id, seq, 1)
            return sent

        d.addCallback(got)
        d.addErrback(log_failure("delivering kept replies"))
        return d

    def catch_up(self) -> None:
        """
        After an outage: announce every connection here again and send each
        what was kept for it meanwhile.
        """
        counts: dict[tuple[str, str], int] = {}
        for client_id, sessions in self._clients.items():
            for session in sessions:
                key = (client_id, session.route)
                counts[key] = counts.get(key, 0) + 1
        triples: list[Any] = []
        for (client_id, route), count in counts.items():
            triples += [client_id, route, count]
        self._presence = []
        self._link.script("presence_reset", self._link.daemon_id, self._ttl, *triples) \
            .addErrback(log_failure("announcing this daemon's clients"))
        for sessions in list(self._clients.values()):
            for session in list(sessions):
                self.send_backlog(session)

    # -- writing -----------------------------------------------------------------

    def deliver(self, message: MessageRecord) -> int:
        """
        Write a message to its client's connections here, once (the
        answering operator's result and the stream both bring it).

        @return: how many connections here have it.
        """
        assert message.seq is not None
        if message.seq in self._sent:
            return self._sent[message.seq][1]
        sessions = list(self._clients.get(message.client_id, ()))
        count = sum(1 for session in sessions if session.send(message.body))
        if count:
            self._sent_to(message.client_id, message.seq, count)
        return count

    def broadcast_here(self, event: dict[str, Any]) -> int:
        """
        Write an operator's broadcast to this daemon's clients on its route,
        and add it to their transcripts.

        @return: how many connections got it.
        """
        count = 0
        for client_id, sessions in list(self._clients.items()):
            here = [s for s in sessions if s.route == event["route"]]
            if not here:
                continue
            count += sum(1 for s in here if s.send(event["body"]))
            message = MessageRecord(client_id=client_id, route=event["route"], direction="out",
                                    sender=event["sender"], body=event["body"],
                                    at=float(event["at"]), delivered=True)
            self._link.script("store_message", client_id, message_json(message), "0") \
                .addErrback(log_failure("storing a broadcast"))
        return count

    def _sent_to(self, client_id: str, seq: int, count: int) -> None:
        self._sent[seq] = (self._clock.seconds(), count)
        self._to_mark.setdefault(client_id, []).append(seq)
        self._schedule_flush()

    def _mark_later(self, failure: Failure, client_id: str, seqs: list[int]) -> None:
        # Not marked (Redis away): keep the marks for the next flush, or the
        # client would get these messages again on its next connection.
        if not failure.check(BrokerUnavailable):
            log_failure("marking delivered")(failure)
        self._to_mark.setdefault(client_id, []).extend(seqs)

    @property
    def pending(self) -> bool:
        return bool(self._to_mark or self._presence)

    def forget_old(self, now: float) -> None:
        for seq, (at, _) in list(self._sent.items()):
            if now - at > self._remember:
                del self._sent[seq]

    # -- the client list -----------------------------------------------------------

    def set_elsewhere(self, pairs: list[str]) -> None:
        """
        @param pairs: "client<TAB>route", count, ... over every daemon, as
            the C{clients} script returns them.
        """
        remote: dict[tuple[str, str], int] = {}
        for i in range(0, len(pairs), 2):
            client_id, _, route = pairs[i].partition("\t")
            remote[(client_id, route)] = int(pairs[i + 1])
        self._remote = remote

    def clients(self) -> list[dict[str, Any]]:
        """
        Clients connected to any daemon: this daemon's now, the others' as
        of the last heartbeat.
        """
        pairs = dict(self._remote)
        here: dict[tuple[str, str], int] = {}
        for client_id, sessions in self._clients.items():
            for session in sessions:
                key = (client_id, session.route)
                here[key] = here.get(key, 0) + 1
        for key, count in here.items():
            pairs[key] = max(count, pairs.get(key, 0))
        merged: dict[str, dict[str, Any]] = {}
        for (client_id, route), count in sorted(pairs.items()):
            entry = merged.setdefault(client_id, {"client_id": client_id, "routes": [],
                                                  "connections": 0})
            entry["routes"].append(route)
            entry["connections"] += count
        return list(merged.values())

    # -- batching ------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self._flush_call is None or not self._flush_call.active():
            self._flush_call = self._clock.callLater(0, self.flush)

    def flush(self) -> Deferred[Any]:
        """
        Write what piled up this turn: delivery marks and presence changes.
        """
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        marks, self._to_mark = self._to_mark, {}
        presence, self._presence = self._presence, []
        calls: list[Deferred[Any]] = []
        for client_id, seqs in marks.items():
            d = self._link.call("ZREM", f"{self._link.prefix}undelivered:{client_id}", *seqs)
            d.addErrback(self._mark_later, client_id, seqs)
            calls.append(d)
        if presence:
            args: list[Any] = []
            for client_id, route, delta in presence:
                args += [client_id, route, delta]
            calls.append(self._link.script("presence", self._link.daemon_id, self._ttl, *args)
                         .addErrback(lambda f: None))  # the link logged the outage
        return DeferredList(calls, consumeErrors=True)
