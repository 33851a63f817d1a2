"""
The operator queue shared by several daemons through Redis.

Same protocol and semantics as L{wsdaemon.operators.queue.OperatorQueue},
but the decisions are made by Redis (L{wsdaemon.broker.scripts}) instead of
in this process, so that an operator on daemon B can claim and answer a
message a client sent to daemon A. Each daemon keeps a mirror of the open
items, fed by the shared event stream, for listing and positions; every
change goes through a script first.

Differences a user can see, on purpose:
    - a claim belongs to the operator's I{name} and survives its
      connection: an operator whose connection drops (or who reconnects
      through the load balancer to another daemon) keeps its items until
      the lease runs out;
    - a client message is acknowledged only once Redis has it; while Redis
      is unreachable the client is told its message could not be queued
      (it was not accepted, so nothing accepted is lost).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wsdaemon.broker.link import RedisLink
from wsdaemon.interfaces import IOperatorQueue, ISession
from wsdaemon.operators.queue import OperatorLink, OperatorSettings, QueueError
from wsdaemon.operators.records import ItemRecord, MessageRecord

__all__ = ["SharedItem", "SharedOperatorQueue"]

_log = Logger(namespace="wsdaemon.operators")

#: How long a reply written to a connection here is remembered, so that the
#: same reply read again (from the stream, or a reconnecting client's
#: backlog) is not written twice.
_REMEMBER_SENT = 120.0
#: Items handled per sweep, at most (the next sweep takes the rest).
_SWEEP_LIMIT = 500


@dataclass
class SharedItem:
    """
    One open item as this daemon last heard of it.
    """

    record: ItemRecord
    order: int
    version: int
    online: bool = False
    position: int = 0

    @property
    def item_id(self) -> str:
        return self.record.item_id

    @property
    def state(self) -> str:
        return self.record.state


def parse_item(fields: dict[str, Any]) -> SharedItem:
    """
    @param fields: an item as the scripts encode it (strings from the hash).
    """
    answered = fields.get("answered_at") or ""
    record = ItemRecord(
        item_id=fields["item_id"], route=fields["route"], client_id=fields["client_id"],
        text=fields["text"], created_at=float(fields["created_at"]), state=fields["state"],
        operator=fields.get("operator") or None,
        answered_at=float(answered) if answered else None,
        fallback_sent=str(fields.get("fallback_sent")) == "1",
    )
    return SharedItem(record=record, order=int(fields.get("order", 0)),
                      version=int(fields.get("version", 0)), online=bool(fields.get("online")))


def parse_message(data: dict[str, Any], seq: int, delivered: bool = False) -> MessageRecord:
    return MessageRecord(
        client_id=data["client_id"], route=data["route"], direction=data["direction"],
        sender=data["sender"], body=data["body"], at=float(data["at"]),
        item_id=data.get("item_id") or None, delivered=delivered, seq=seq,
    )


def _message_json(message: MessageRecord) -> str:
    data = message.to_json()
    del data["seq"], data["delivered"]
    return json.dumps(data, ensure_ascii=False)


def _log_failure(what: str) -> Callable[[Failure], None]:
    def log(failure: Failure) -> None:
        _log.failure("operator queue (redis): {what} failed", failure=failure, what=what)

    return log


@implementer(IOperatorQueue)
class SharedOperatorQueue:
    """
    @param link: the daemon's Redis link (shared with the push bus).
    @param clock: lease and fallback sweeps, heartbeats, timestamps.
    """

    def __init__(self, settings: OperatorSettings, link: RedisLink, clock: IReactorTime,
                 new_id: Callable[[], str] | None = None) -> None:
        import secrets

        self.settings = settings
        self.link = link
        self._clock = clock
        self._new_id = new_id or (lambda: secrets.token_hex(6))
        self._items: dict[str, SharedItem] = {}
        self._clients: dict[str, set[ISession]] = {}
        self._operators: set[OperatorLink] = set()
        self._operators_elsewhere = 0
        # seq -> (when, connections written to) for replies written here.
        self._sent: dict[int, tuple[float, int]] = {}
        self._closed: dict[str, tuple[int, float]] = {}
        self._to_mark: dict[str, list[int]] = {}
        self._presence: list[tuple[str, str, int]] = []
        self._flush_call: Any = None
        self._remote_clients: dict[tuple[str, str], int] = {}
        self.started = False
        self._waiting: list[Deferred[None]] = []
        self._loops: list[LoopingCall] = []
        self.store = None  # no local store: Redis holds everything

    # -- life ----------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """
        Connect and start sweeping; the mirror loads in the background (and
        again after every outage), so a daemon starts even while Redis is
        down and serves its other routes.
        """
        self.link.on_events(self._handle_events)
        self.link.on_recovery(self._resync)
        self.link.start()
        for interval, work in ((self.link.settings.heartbeat, self._heartbeat),
                               (self.link.settings.sweep_interval, self.sweep)):
            loop = LoopingCall(work)
            loop.clock = self._clock
            loop.start(interval, now=False).addErrback(_log_failure("a periodic task"))
            self._loops.append(loop)
        return succeed(None)

    def when_started(self) -> Deferred[None]:
        if self.started:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def stop(self) -> Deferred[Any]:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        d: Deferred[Any] = self._flush()
        # Leave the service now rather than when the heartbeat runs out.
        d.addBoth(lambda _: self.link.call("HDEL", self.link.prefix + "daemons",
                                           self.link.daemon_id))
        d.addErrback(lambda _: None)
        return d

    def _resync(self) -> None:
        """
        (Re)load the open items, re-announce this daemon's clients, and
        deliver what is waiting for them: after an outage events may have
        been missed.
        """
        self._heartbeat()
        triples: list[Any] = []
        counts: dict[tuple[str, str], int] = {}
        for client_id, sessions in self._clients.items():
            for session in sessions:
                counts[(client_id, session.route)] = counts.get((client_id, session.route), 0) + 1
        for (client_id, route), count in counts.items():
            triples += [client_id, route, count]
        self._presence = []
        self.link.script("presence_reset", self.link.daemon_id, self._ttl(), *triples) \
            .addErrback(_log_failure("announcing this daemon's clients"))
        d = self.link.script("open_items", self._clock.seconds())
        d.addCallback(self._loaded)
        d.addErrback(_log_failure("loading the open items"))
        for sessions in list(self._clients.values()):
            for session in list(sessions):
                self._send_backlog(session)

    def _loaded(self, reply: str) -> None:
        items = [parse_item(fields) for fields in json.loads(reply)]
        self._items = {item.item_id: item for item in items}
        first = not self.started
        self.started = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        if first:
            _log.info("operator queue: {count} open item(s) in Redis", count=len(items))
        else:
            self._notify_operators({"type": "resync", "items": [
                self.describe(item) for item in self.open_items()]})

    def _ttl(self) -> float:
        return 3 * self.link.settings.heartbeat

    def _heartbeat(self) -> Deferred[Any]:
        now = self._clock.seconds()
        for seq, (at, _) in list(self._sent.items()):
            if now - at > _REMEMBER_SENT:
                del self._sent[seq]
        for item_id, (_, at) in list(self._closed.items()):
            if now - at > _REMEMBER_SENT:
                del self._closed[item_id]
        mine = len(self._operators)
        d = self.link.script("heartbeat", self.link.daemon_id, mine, now, self._ttl())

        def counted(total: Any) -> Any:
            self._operators_elsewhere = max(0, int(total) - mine)
            return self.link.script("clients", self._clock.seconds())

        def listed(pairs: list[str]) -> None:
            remote: dict[tuple[str, str], int] = {}
            for i in range(0, len(pairs), 2):
                client_id, _, route = pairs[i].partition("\t")
                remote[(client_id, route)] = int(pairs[i + 1])
            self._remote_clients = remote

        d.addCallback(counted)
        d.addCallback(listed)
        d.addErrback(lambda f: None)  # the link logged the outage
        return d

    def sweep(self) -> Deferred[Any]:
        """
        Return items whose lease ran out and send due fallbacks (whichever
        daemon gets there first does it, once).
        """
        s = self.settings
        d = self.link.script("sweep", self._clock.seconds(),
                             "1" if s.keep_after_fallback else "0",
                             s.fallback_message, _SWEEP_LIMIT)

        def swept(result: list[Any]) -> None:
            released, fallbacks = int(result[0]), int(result[1])
            if released or fallbacks:
                _log.info("operator queue: {released} lease(s) expired, {fallbacks} "
                          "fallback(s) sent", released=released, fallbacks=fallbacks)

        d.addCallback(swept)
        d.addErrback(lambda f: None)  # the link logged the outage; the next sweep retries
        return d

    # -- clients -------------------------------------------------------------

    def client_connected(self, session: ISession) -> Deferred[int]:
        self._clients.setdefault(session.client_id, set()).add(session)
        self._presence.append((session.client_id, session.route, 1))
        self._schedule_flush()
        return self._send_backlog(session)

    def _send_backlog(self, session: ISession) -> Deferred[int]:
        d = self.link.script("undelivered", session.client_id)

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
        d.addErrback(_log_failure("delivering kept replies"))
        return d

    def client_disconnected(self, session: ISession) -> None:
        sessions = self._clients.get(session.client_id)
        if sessions is not None and session in sessions:
            sessions.discard(session)
            if not sessions:
                del self._clients[session.client_id]
            self._presence.append((session.client_id, session.route, -1))
            self._schedule_flush()

    def enqueue(self, session: ISession, text: str) -> Deferred[SharedItem]:
        """
        @return: a Deferred firing with the item once Redis has it (or
            failing with L{wsdaemon.broker.link.BrokerUnavailable}).
        """
        now = self._clock.seconds()
        item_id = self._new_id()
        message = MessageRecord(client_id=session.client_id, route=session.route,
                                direction="in", sender="client", body=text, at=now,
                                item_id=item_id)
        s = self.settings
        d = self.link.script("enqueue", item_id, session.route, session.client_id, text, now,
                             s.fallback_after, "1" if s.fallback_when_offline else "0",
                             _message_json(message))

        def accepted(reply: list[Any]) -> SharedItem:
            item = parse_item(json.loads(reply[1]))
            item.position = int(reply[2])
            if self._apply(item):
                self._notify_operators({"type": "item", "item": self.describe(item)})
            if int(reply[3]):
                # Nobody online: the fallback is due now. The sweep's answer
                # comes in a later turn, after the acknowledgement.
                self.sweep()
            return item

        d.addCallback(accepted)
        return d

    def position(self, item: SharedItem) -> int:
        return item.position

    # -- operators -----------------------------------------------------------

    def add_operator(self, operator: OperatorLink) -> None:
        self._operators.add(operator)
        self._heartbeat()
        _log.info("operator {name} online ({count} online)", name=operator.name,
                  count=self.operators_online)

    def remove_operator(self, operator: OperatorLink) -> None:
        """
        The connection is gone, but not the claims: they belong to the
        operator's name until their lease runs out (it may be reconnecting
        to another daemon).
        """
        self._operators.discard(operator)
        self._heartbeat()
        _log.info("operator {name} offline here ({count} online); its claims last until their "
                  "lease ends", name=operator.name, count=self.operators_online)

    @property
    def operators_online(self) -> int:
        return self._operators_elsewhere + len(self._operators)

    def open_items(self) -> list[SharedItem]:
        return sorted(self._items.values(), key=lambda i: i.order)

    def find(self, item_id: str) -> str:
        """
        @return: the full id of the open item C{item_id} names (a prefix is
            enough when it is unambiguous among the items known here).
        """
        if item_id in self._items:
            return item_id
        found = [key for key in self._items if key.startswith(item_id)] if item_id else []
        if len(found) > 1:
            raise QueueError(f"item id {item_id!r} is ambiguous: give more characters")
        if found:
            return found[0]
        if not item_id:
            raise QueueError("no open item ''")
        return item_id  # maybe not heard of yet: Redis decides

    def oldest_unclaimed(self) -> str:
        for item in self.open_items():
            if item.state == "queued":
                return item.item_id
        raise QueueError("the queue is empty")

    def _decided(self, reply: list[Any]) -> SharedItem:
        if reply[0] != "ok":
            raise QueueError(str(reply[1]))
        item = parse_item(json.loads(reply[1]))
        if self._apply(item):
            self._notify_operators({"type": "updated", "item": self.describe(item)})
        return item

    def claim(self, item_id: str, operator: OperatorLink) -> Deferred[SharedItem]:
        d = self.link.script("claim", self.find(item_id), operator.name,
                             self._clock.seconds(), self.settings.lease)
        return d.addCallback(self._decided)

    def release(self, item_id: str, operator: OperatorLink) -> Deferred[SharedItem]:
        d = self.link.script("release", self.find(item_id), operator.name,
                             self._clock.seconds())
        return d.addCallback(self._decided)

    def reply(self, item_id: str | None, operator: OperatorLink,
              text: str) -> Deferred[dict[str, Any]]:
        """
        Answer an item exactly once, whichever daemons its client and other
        operators are on: Redis refuses a second answer.
        """
        target = self.oldest_unclaimed() if item_id is None else self.find(item_id)
        d = self.link.script("answer", target, operator.name, self._clock.seconds(), text)

        def answered(reply: list[Any]) -> dict[str, Any]:
            item = self._decided(reply)
            seq = int(reply[2])
            r = item.record
            delivered = self._deliver(MessageRecord(
                client_id=r.client_id, route=r.route, direction="out", sender=operator.name,
                body=text, at=r.answered_at or self._clock.seconds(), item_id=r.item_id,
                seq=seq))
            _log.info("item {item_id} answered by {operator} ({delivered} connection(s) here)",
                      item_id=r.item_id, operator=operator.name, delivered=delivered)
            return {"item": self.describe(item), "delivered": delivered}

        return d.addCallback(answered)

    def push(self, client_id: str, text: str, operator: OperatorLink) -> Deferred[int]:
        """
        Send to one client on whichever daemon it is; kept for it if it is
        connected nowhere.

        @return: a Deferred firing with how many connections here got it.
        """
        sessions = self._clients.get(client_id, set())
        route = next(iter(sessions)).route if sessions else ""
        message = MessageRecord(client_id=client_id, route=route, direction="out",
                                sender=operator.name, body=text, at=self._clock.seconds())
        d = self.link.script("store_message", client_id, _message_json(message), "1")
        return d.addCallback(lambda seq: self._deliver(replace(message, seq=int(seq))))

    def broadcast(self, route: str, text: str, operator: OperatorLink) -> Deferred[int]:
        """
        Send to every client connected to C{route} now, on every daemon.

        @return: a Deferred firing with how many connections here got it.
        """
        event = {"type": "broadcast", "route": route, "body": text, "sender": operator.name,
                 "at": self._clock.seconds(), "origin": self.link.daemon_id}
        d = self.link.call("XADD", self.link.events_key, "MAXLEN", "~", 100000, "*", "e",
                           json.dumps(event, ensure_ascii=False))
        return d.addCallback(lambda _: self._broadcast_here(event))

    def _broadcast_here(self, event: dict[str, Any]) -> int:
        count = 0
        for client_id, sessions in list(self._clients.items()):
            here = [s for s in sessions if s.route == event["route"]]
            if not here:
                continue
            count += sum(1 for s in here if s.send(event["body"]))
            message = MessageRecord(client_id=client_id, route=event["route"], direction="out",
                                    sender=event["sender"], body=event["body"],
                                    at=float(event["at"]), delivered=True)
            self.link.script("store_message", client_id, _message_json(message), "0") \
                .addErrback(_log_failure("storing a broadcast"))
        return count

    def transcript(self, client_id: str | None) -> Deferred[list[MessageRecord]]:
        d = self.link.script("transcript", client_id or "")

        def parsed(reply: list[str]) -> list[MessageRecord]:
            records = []
            for i in range(0, len(reply), 3):
                data = json.loads(reply[i + 1])
                delivered = data["direction"] == "out" and reply[i + 2] == "1"
                records.append(parse_message(data, int(reply[i]), delivered))
            return records

        return d.addCallback(parsed)

    def clients(self) -> list[dict[str, Any]]:
        """
        Clients connected to any daemon: this daemon's now, the others' as
        of the last heartbeat.
        """
        pairs = dict(self._remote_clients)
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

    def describe(self, item: SharedItem) -> dict[str, Any]:
        described = item.record.to_json()
        described["state"] = item.state
        described["online"] = item.online or item.record.client_id in self._clients
        return described

    # -- events --------------------------------------------------------------

    def _apply(self, item: SharedItem) -> bool:
        """
        Bring the mirror up to C{item}'s version. A closed item leaves the
        mirror and is remembered a while, so that a late event about an
        older version cannot bring it back.

        @return: whether it was news.
        """
        known = self._items.get(item.item_id)
        if known is not None and known.version >= item.version:
            return False
        closed_at = self._closed.get(item.item_id)
        if closed_at is not None and closed_at[0] >= item.version:
            return False
        if item.state in ("queued", "claimed"):
            self._items[item.item_id] = item
            return True
        self._closed[item.item_id] = (item.version, self._clock.seconds())
        return self._items.pop(item.item_id, None) is not None

    def _handle_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            kind = event.get("type")
            if kind in ("item", "updated"):
                item = parse_item(event["item"])
                if self._apply(item):
                    self._notify_operators({"type": kind, "item": self.describe(item)})
            elif kind == "deliver":
                seq = int(event["seq"])
                if seq not in self._sent:
                    self._deliver(parse_message(event["message"], seq))
            elif kind == "broadcast" and event.get("origin") != self.link.daemon_id:
                self._broadcast_here(event)

    # -- delivery ------------------------------------------------------------

    def _deliver(self, message: MessageRecord) -> int:
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

    def _sent_to(self, client_id: str, seq: int, count: int) -> None:
        self._sent[seq] = (self._clock.seconds(), count)
        self._to_mark.setdefault(client_id, []).append(seq)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_call is None or not self._flush_call.active():
            self._flush_call = self._clock.callLater(0, self._flush)

    def _flush(self) -> Deferred[Any]:
        """
        Write what piled up this turn: delivery marks and presence changes,
        a few calls for many messages.
        """
        marks, self._to_mark = self._to_mark, {}
        presence, self._presence = self._presence, []
        calls: list[Deferred[Any]] = []
        for client_id, seqs in marks.items():
            calls.append(self.link.call("ZREM", f"{self.link.prefix}undelivered:{client_id}",
                                        *seqs).addErrback(_log_failure("marking delivered")))
        if presence:
            args: list[Any] = []
            for client_id, route, delta in presence:
                args += [client_id, route, delta]
            calls.append(self.link.script("presence", self.link.daemon_id, self._ttl(), *args)
                         .addErrback(lambda f: None))
        from twisted.internet.defer import DeferredList

        return DeferredList(calls, consumeErrors=True)

    def _notify_operators(self, event: dict[str, Any]) -> None:
        for operator in list(self._operators):
            try:
                operator.notify(event)
            except Exception:
                _log.failure("notifying operator {name}", name=operator.name)
