"""
This daemon's side of delivery for the shared queue: which clients are
connected here (and telling Redis, for the other daemons), and writing
replies to them.

A message for a client is I{taken} by one daemon in Redis before it is
written (L{wsdaemon.broker.scripts}: C{take}), then I{settled}: done, or
given back when nobody was there to write it to. So a client that reads a
reply on daemon A and reconnects at once to daemon B does not get it again
from B; a reply taken by a daemon that dies before writing it (or that
never heard back from Redis) is given back by the sweep and delivered
later: once in normal operation, never lost.

Takes, settlements and presence changes pile up during a reactor turn and
go to Redis together at its end: a few calls for many messages.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.broker.link import BrokerUnavailable, RedisLink, unless_outage
from wsdaemon.broker.mirror import message_json, parse_message
from wsdaemon.interfaces import ISession
from wsdaemon.records import MessageRecord
from wsdaemon.strategies.operator.delivery import log_failure, write

__all__ = ["ClientDelivery"]

_log = Logger(namespace="wsdaemon.operators")


class ClientDelivery:
    """
    @param ttl: seconds this daemon's presence lasts in Redis unless renewed.
    """

    def __init__(self, link: RedisLink, clock: IReactorTime, ttl: float) -> None:
        self._link = link
        self._clock = clock
        self._ttl = ttl
        self._clients: dict[str, set[ISession]] = {}
        self._to_take: list[str] = []  # client, seq ('*': all kept for it), ...
        self._to_settle: list[str] = []  # client, seq, '1' written / '0' give back, ...
        # Written, and not yet settled as far as this daemon knows: until a
        # call carrying the settlement is answered, every heartbeat carries
        # it again (see unsent_settlements). As many as this daemon has
        # taken in Redis and not settled, at most.
        self._written: dict[tuple[str, str], None] = {}
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
        return self._take([session.client_id, "*"])

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

    def catch_up(self) -> None:
        """
        After an outage: announce every connection here again and take what
        was kept for these clients meanwhile.
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
            .addErrback(unless_outage("announcing this daemon's clients"))
        wanted: list[str] = []
        for client_id in self._clients:
            wanted += [client_id, "*"]
        if wanted:
            self._take(wanted)

    # -- writing -----------------------------------------------------------------

    def heard_of(self, client_id: str, seq: int) -> None:
        """
        A message nobody has taken yet: take it if its client is here.
        """
        if client_id in self._clients:
            self._to_take += [client_id, str(seq)]
            self._schedule_flush()

    def write_taken(self, client_id: str, seq: int, body: str) -> int:
        """
        Write a message this daemon has taken to its client's connections
        here, and settle it: done, or given back if none took it.

        @return: how many connections got it.
        """
        return self.write_or_keep(client_id, seq, body)[0]

    def write_or_keep(self, client_id: str, seq: int, body: str) -> tuple[int, bool]:
        """
        Like L{write_taken}.

        @return: how many connections got it, and whether it was given back
            to wait for the client (none took it, and it was not refused as
            one that can never be written).
        """
        sessions = list(self._clients.get(client_id, ()))
        probe = MessageRecord(client_id=client_id, route="", direction="out", sender="",
                              body=body, at=0.0, seq=seq)
        count, error = write(probe, sessions)
        # One that can never be written (logged by write()) is settled as
        # done too: given back, it would be retried for ever.
        done = bool(count or error)
        if done:
            self._written[(client_id, str(seq))] = None
        self._to_settle += [client_id, str(seq), "1" if done else "0"]
        self._schedule_flush()
        return count, not count and error is None

    def _take(self, wanted: list[str]) -> Deferred[int]:
        d = self._link.script("take", self._link.daemon_id, self._clock.seconds(), *wanted)

        def took(reply: list[str]) -> int:
            written = 0
            for i in range(0, len(reply), 3):
                message = parse_message(json.loads(reply[i + 2]), int(reply[i + 1]))
                written += 1 if self.write_taken(reply[i], int(reply[i + 1]), message.body) else 0
            return written

        def failed(failure: Failure) -> int:
            # Still kept in Redis: taken on the next connection or catch-up.
            if not failure.check(BrokerUnavailable):
                log_failure("taking messages to deliver")(failure)
            return 0

        return d.addCallbacks(took, failed)

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
            message = MessageRecord(client_id=client_id, route=event["route"], direction="out",
                                    sender=event["sender"], body=event["body"],
                                    at=float(event["at"]), delivered=True)
            count += write(message, here)[0]
            self._link.script("store_message", client_id, message_json(message), "done", "",
                              self._clock.seconds()) \
                .addErrback(unless_outage("storing a broadcast"))
        return count

    def settled(self, result: Any, settlements: list[str]) -> Any:
        """
        A callback: Redis ran the call that carried C{settlements}.

        @return: C{result}.
        """
        for i in range(0, len(settlements), 3):
            self._written.pop((settlements[i], settlements[i + 1]), None)
        return result

    def settle_later(self, failure: Failure, settlements: list[str]) -> None:
        """
        An errback: C{settlements} did not reach Redis (or may not have),
        keep them for the next flush or heartbeat, or a taken message would
        stay taken (or a given-back one never come back).
        """
        if not failure.check(BrokerUnavailable):
            log_failure("settling deliveries")(failure)
        self._to_settle += settlements

    def unsent_settlements(self) -> list[str]:
        """
        What a heartbeat carries: the settlements not sent yet, and every
        written message not known to be settled, even if a call carrying it
        is still under way. The heartbeat records "everything written before
        now is settled", which the sweep relies on (a written message given
        back is written twice): a call still under way may yet fail, and an
        earlier heartbeat carrying it may never reach Redis while this one
        does. Settling a written message twice does nothing.

        @return: client, seq, written triples, which the caller now sends
            (then L{settled} or L{settle_later}).
        """
        settlements, self._to_settle = self._to_settle, []
        unsent = {(settlements[i], settlements[i + 1]) for i in range(0, len(settlements), 3)}
        for client_id, seq in self._written:
            if (client_id, seq) not in unsent:
                settlements += [client_id, seq, "1"]
        return settlements

    @property
    def pending(self) -> bool:
        return bool(self._to_take or self._to_settle or self._presence)

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
        Send what piled up this turn: takes, settlements, presence changes.
        """
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        wanted, self._to_take = self._to_take, []
        settlements, self._to_settle = self._to_settle, []
        presence, self._presence = self._presence, []
        calls: list[Deferred[Any]] = []
        if wanted:
            calls.append(self._take(wanted))
        if settlements:
            d = self._link.script("settle", self._link.daemon_id, *settlements)
            d.addCallbacks(self.settled, self.settle_later, callbackArgs=(settlements,),
                           errbackArgs=(settlements,))
            calls.append(d)
        if presence:
            args: list[Any] = []
            for client_id, route, delta in presence:
                args += [client_id, route, delta]
            calls.append(self._link.script("presence", self._link.daemon_id, self._ttl, *args)
                         .addErrback(lambda f: None))  # the link logged the outage
        return DeferredList(calls, consumeErrors=True)
