"""
The operator queue shared by several daemons through Redis.

Same protocol and semantics as L{wsdaemon.strategies.operator.queue.OperatorQueue},
but the decisions are made by Redis (L{wsdaemon.broker.scripts}) instead of
in this process, so that an operator on daemon B can claim and answer a
message a client sent to daemon A. Each daemon keeps a mirror of the open
items (L{wsdaemon.broker.mirror}), fed by script results and the shared
event stream, for listing and positions; every change goes through a
script first. Writing to this daemon's clients is
L{wsdaemon.broker.delivery}'s job.

Differences a user can see, on purpose:
    - a claim belongs to the operator's I{name} and survives its
      connection: an operator whose connection drops (or who reconnects
      through the load balancer to another daemon) keeps its items until
      the lease runs out;
    - a client message is acknowledged only once Redis has it; while Redis
      is unreachable the client is told its message could not be queued
      (it was not accepted, so nothing accepted is lost), or, when Redis
      stopped answering after the message was sent, that it could not be
      confirmed;
    - the same message from the same client on the same route within
      L{RESEND_WINDOW} is a resend while the first one is open, or, through
      the daemon that could not confirm the first one, even once it is
      closed: answered with the first one's item, not queued again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wsdaemon.broker.connection import RedisConnection
from wsdaemon.broker.delivery import ClientDelivery
from wsdaemon.broker.link import BrokerOutcomeUnknown, RedisLink, unless_outage
from wsdaemon.broker.mirror import (
    ItemMirror,
    SharedItem,
    message_json,
    parse_item,
    parse_message,
)
from wsdaemon.interfaces import ISession
from wsdaemon.records import MessageRecord
from wsdaemon.strategies.operator.delivery import log_failure
from wsdaemon.strategies.operator.deprecation import warn_queue_deprecated
from wsdaemon.strategies.operator.errors import (
    QueueError,
    QueueRefused,
    check_sendable,
    send_limit,
    too_long,
)
from wsdaemon.strategies.operator.ports import IOperatorQueue
from wsdaemon.strategies.operator.queue import OperatorLink, OperatorSettings

__all__ = ["SharedItem", "SharedOperatorQueue"]

_log = Logger(namespace="wsdaemon.operators")

#: Seconds this daemon remembers what it wrote and which items closed (to
#: recognise the same news arriving again by another way).
_REMEMBER = 120.0
#: Items handled per sweep, at most (the next sweep takes the rest).
_SWEEP_LIMIT = 500
#: Seconds within which the same message from the same client on the same
#: route is taken as a resend, not a new item: while the first one is open
#: (the same text twice says nothing more), or after its client was told it
#: could not be confirmed. One key per message in Redis lasts this long.
RESEND_WINDOW = 120.0
#: Messages a daemon remembers it could not confirm (for the resend window),
#: at most: the oldest are forgotten first.
MAX_UNCONFIRMED = 10_000


def message_digest(route: str, client_id: str, text: str) -> str:
    """
    @return: what identifies a client message for the resend window (the
        plain-text protocol has no message ids).
    """
    data = "\0".join((route, client_id, text)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


@implementer(IOperatorQueue)
class SharedOperatorQueue:
    """
    @param link: the daemon's Redis link (shared with the push bus).
    @param clock: lease and fallback sweeps, heartbeats, timestamps.
    """

    def __init__(self, settings: OperatorSettings, link: RedisLink, clock: IReactorTime,
                 new_id: Callable[[], str] = lambda: secrets.token_hex(6)) -> None:
        self.settings = settings
        self.link = link
        self._clock = clock
        self._new_id = new_id
        self._mirror = ItemMirror(_REMEMBER)
        self._delivery = ClientDelivery(link, clock, 3 * link.settings.heartbeat)
        self._operators: set[OperatorLink] = set()
        self._operators_elsewhere = 0
        self.started = False
        self._waiting: list[Deferred[None]] = []
        self._loops: list[LoopingCall] = []
        self.send_limits: dict[str, int] = {}
        # Digests of messages whose clients were told "could not confirm",
        # and when: sent again, they match their first item even closed.
        self._unconfirmed: OrderedDict[str, float] = OrderedDict()

    # -- life ----------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """
        Connect and start sweeping; the mirror loads in the background (and
        again after every outage), so a daemon starts even while Redis is
        down and serves its other routes.
        """
        warn_queue_deprecated(f"Redis, the keys under {self.link.settings.prefix!r}")
        self.link.on_events(self._handle_events)
        self.link.on_recovery(self._resync)
        self.link.start()
        for interval, work in ((self.link.settings.heartbeat, self._heartbeat),
                               (self.link.settings.sweep_interval, self.sweep)):
            loop = LoopingCall(work)
            loop.clock = self._clock
            loop.start(interval, now=False).addErrback(log_failure("a periodic task"))
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
        d: Deferred[Any] = self._delivery.flush()
        # Leave the service now rather than when the heartbeat runs out.
        d.addBoth(lambda _: self.link.call("HDEL", self.link.prefix + "daemons",
                                           self.link.daemon_id))
        d.addBoth(lambda _: self.link.call("HDEL", self.link.prefix + "settled",
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
        self._delivery.catch_up()
        d = self.link.script("open_items", self._clock.seconds())
        d.addCallback(self._loaded)
        d.addErrback(unless_outage("loading the open items"))

    def _loaded(self, reply: str) -> None:
        items = [parse_item(fields) for fields in json.loads(reply)]
        self._mirror.replace_all(items)
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

    def _heartbeat(self) -> Deferred[Any]:
        now = self._clock.seconds()
        self._mirror.forget_old(now)
        # The settlements not sent yet go with the heartbeat, in one step:
        # the sweep counts on "settled before the last heartbeat".
        settlements = self._delivery.unsent_settlements()
        if self._delivery.pending:
            self._delivery.flush()
        mine = len(self._operators)
        d = self.link.script("heartbeat", self.link.daemon_id, mine, now,
                             3 * self.link.settings.heartbeat, *settlements)
        if settlements:
            d.addCallbacks(self._delivery.settled, self._delivery.settle_later,
                           callbackArgs=(settlements,), errbackArgs=(settlements,))

        def counted(total: Any) -> None:
            self._operators_elsewhere = max(0, int(total) - mine)
            if self._operators:
                # The merged client list is for operators' consoles: read it
                # (every daemon's presence) only when one is connected here.
                self.link.script("clients", self._clock.seconds()).addCallbacks(
                    self._delivery.set_elsewhere, lambda f: None)

        d.addCallback(counted)
        d.addErrback(lambda f: None)  # the link logged the outage
        return d

    def sweep(self) -> Deferred[Any]:
        """
        Return items whose lease ran out and send due fallbacks (whichever
        daemon gets there first does it, once).
        """
        s = self.settings
        now = self._clock.seconds()
        # A daemon writes what it took within a call timeout of asking, or
        # never (it did not hear back); twice that, to be sure.
        grace = 2 * self.link.settings.timeout
        d = self.link.script("sweep", now, "1" if s.keep_after_fallback else "0",
                             s.fallback_message, _SWEEP_LIMIT, grace,
                             "1" if self._may_judge_gone(now) else "0")

        def swept(result: list[Any]) -> None:
            released, fallbacks = int(result[0]), int(result[1])
            if released or fallbacks:
                _log.info("operator queue: {released} lease(s) expired, {fallbacks} "
                          "fallback(s) sent", released=released, fallbacks=fallbacks)

        d.addCallback(swept)
        d.addErrback(lambda f: None)  # the link logged the outage; the next sweep retries
        return d

    def _may_judge_gone(self, now: float) -> bool:
        """
        @return: whether this daemon's sweep may take a daemon whose
            heartbeat ran out for a dead one, and give back at once what it
            took (written or not). Only once this daemon's own link has been
            up for three heartbeats, plus what making a connection again can
            take: after an outage every daemon's heartbeat has run out, but
            the live ones are still reconnecting, and one of them may have
            written replies it could not settle yet.
        """
        b = self.link.settings
        up_since = self.link.up_since
        return up_since is not None and \
            now - up_since >= 3 * b.heartbeat + RedisConnection.max_delay + b.timeout

    # -- clients -------------------------------------------------------------

    def client_connected(self, session: ISession) -> Deferred[int]:
        return self._delivery.connected(session)

    def client_disconnected(self, session: ISession) -> None:
        self._delivery.disconnected(session)

    def enqueue(self, session: ISession, text: str) -> Deferred[SharedItem]:
        """
        @return: a Deferred firing with the item once Redis has it (with
            C{resent} set if it is the first send's), or failing with
            L{wsdaemon.broker.link.BrokerUnavailable} (not stored) or
            L{wsdaemon.broker.link.BrokerOutcomeUnknown} (maybe stored: the
            same message sent again within L{RESEND_WINDOW} is not stored
            twice).
        """
        now = self._clock.seconds()
        item_id = self._new_id()
        message = MessageRecord(client_id=session.client_id, route=session.route,
                                direction="in", sender="client", body=text, at=now,
                                item_id=item_id)
        s = self.settings
        if too_long(text, s.max_item_size):
            return fail(QueueRefused("too_long", s.max_item_size))
        digest = message_digest(session.route, session.client_id, text)
        while self._unconfirmed and next(iter(self._unconfirmed.values())) < now - RESEND_WINDOW:
            self._unconfirmed.popitem(last=False)
        d = self.link.script("enqueue", item_id, session.route, session.client_id, text, now,
                             s.fallback_after, "1" if s.fallback_when_offline else "0",
                             message_json(message), s.max_open_per_client,
                             s.max_open_per_route, s.max_open_total, digest, RESEND_WINDOW,
                             "1" if digest in self._unconfirmed else "0")

        def accepted(reply: list[Any]) -> SharedItem:
            self._unconfirmed.pop(digest, None)
            if reply[0] == "refused":
                raise QueueRefused(str(reply[1]), int(reply[2]))
            item = parse_item(json.loads(reply[1]))
            item.position = int(reply[2])
            if reply[0] == "resent":
                item.resent = True
                return item
            if self._mirror.apply(item, self._clock.seconds()):
                self._notify_operators({"type": "item", "item": self.describe(item)})
            if int(reply[3]):
                # Nobody online: the fallback is due now. The sweep's answer
                # comes in a later turn, after the acknowledgement.
                self.sweep()
            return item

        def unconfirmed(failure: Failure) -> Failure:
            if failure.check(BrokerOutcomeUnknown):
                self._unconfirmed[digest] = now
                self._unconfirmed.move_to_end(digest)
                if len(self._unconfirmed) > MAX_UNCONFIRMED:
                    self._unconfirmed.popitem(last=False)
            return failure

        d.addCallbacks(accepted, unconfirmed)
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
        return self._mirror.open_items()

    def count_open(self) -> int:
        return self._mirror.count()

    def iter_open(self, client_id: str | None = None) -> Iterator[SharedItem]:
        items = self._mirror.open_items()
        if client_id is None:
            return iter(items)
        return (item for item in items if item.record.client_id == client_id)

    def full_text(self, item_id: str | None = None,
                  seq: int | None = None) -> Deferred[str | None]:
        if seq is not None:
            d = self.link.call("HGET", self.link.prefix + "messages", str(seq))
            return d.addCallback(lambda found: None if found is None
                                 else str(json.loads(found)["body"]))
        assert item_id is not None
        d = self.link.call("HGET", self.link.prefix + "item:" + self._mirror.find(item_id),
                           "text")
        return d.addCallback(lambda found: None if found is None else str(found))

    def _limit(self, route: str) -> int:
        return send_limit(self.send_limits, route)

    def _decided(self, reply: list[Any]) -> SharedItem:
        if reply[0] != "ok":
            raise QueueError(str(reply[1]))
        item = parse_item(json.loads(reply[1]))
        if self._mirror.apply(item, self._clock.seconds()):
            self._notify_operators({"type": "updated", "item": self.describe(item)})
        return item

    def claim(self, item_id: str, operator: OperatorLink) -> Deferred[SharedItem]:
        d = self.link.script("claim", self._mirror.find(item_id), operator.name,
                             self._clock.seconds(), self.settings.lease)
        return d.addCallback(self._decided)

    def release(self, item_id: str, operator: OperatorLink) -> Deferred[SharedItem]:
        d = self.link.script("release", self._mirror.find(item_id), operator.name,
                             self._clock.seconds())
        return d.addCallback(self._decided)

    def reply(self, item_id: str | None, operator: OperatorLink,
              text: str) -> Deferred[dict[str, Any]]:
        """
        Answer an item exactly once, whichever daemons its client and other
        operators are on: Redis refuses a second answer.
        """
        target = (self._mirror.oldest_unclaimed() if item_id is None
                  else self._mirror.find(item_id))
        known = self._mirror.get(target)
        route = known.record.route if known is not None else ""
        check_sendable(text, self._limit(route), route)
        # The client is here: take the reply for this daemon in the same
        # step (no second round trip); otherwise its daemon takes it.
        here = known is not None and self._delivery.is_here(known.record.client_id)
        d = self.link.script("answer", target, operator.name, self._clock.seconds(), text,
                             self.link.daemon_id if here else "")

        def answered(reply: list[Any]) -> dict[str, Any]:
            item = self._decided(reply)
            r = item.record
            delivered = (self._delivery.write_taken(r.client_id, int(reply[2]), text)
                         if here else 0)
            _log.info("item {item_id} answered by {operator} ({delivered} connection(s) here)",
                      item_id=r.item_id, operator=operator.name, delivered=delivered)
            return {"item": self.describe(item), "delivered": delivered}

        return d.addCallback(answered)

    def push(self, client_id: str, text: str,
             operator: OperatorLink) -> Deferred[dict[str, int]]:
        """
        Send to one client on whichever daemon it is; kept for it if it is
        connected nowhere.

        @return: a Deferred firing with C{{"delivered": N, "kept": K}}: how
            many connections here got it, and 1 if it was stored for the
            client instead (the daemon holding its connection, or the next
            one it connects to, writes it), else 0.
        """
        here = self._delivery.is_here(client_id)
        route = self._delivery.route_of(client_id)
        check_sendable(text, self._limit(route), route)
        message = MessageRecord(client_id=client_id, route=route,
                                direction="out", sender=operator.name, body=text,
                                at=self._clock.seconds())
        d = self.link.script("store_message", client_id, message_json(message),
                             "take" if here else "keep", self.link.daemon_id if here else "",
                             message.at)

        def stored(seq: Any) -> dict[str, int]:
            if not here:
                return {"delivered": 0, "kept": 1}
            count, kept = self._delivery.write_or_keep(client_id, int(seq), text)
            return {"delivered": count, "kept": int(kept)}

        return d.addCallback(stored)

    def broadcast(self, route: str, text: str, operator: OperatorLink) -> Deferred[int]:
        """
        Send to every client connected to C{route} now, on every daemon.

        @return: a Deferred firing with how many connections here got it.
        """
        check_sendable(text, self._limit(route), route)
        event = {"type": "broadcast", "route": route, "body": text, "sender": operator.name,
                 "at": self._clock.seconds(), "origin": self.link.daemon_id}
        d = self.link.publish(event)
        return d.addCallback(lambda _: self._delivery.broadcast_here(event))

    def transcript(self, client_id: str | None, before: int | None = None,
                   limit: int | None = None) -> Deferred[list[MessageRecord]]:
        d = self.link.script("transcript", client_id or "",
                             "" if before is None else str(before), limit or 0)

        def parsed(reply: list[str]) -> list[MessageRecord]:
            records = []
            for i in range(0, len(reply), 3):
                data = json.loads(reply[i + 1])
                delivered = data["direction"] == "out" and reply[i + 2] == "1"
                records.append(parse_message(data, int(reply[i]), delivered))
            return records

        return d.addCallback(parsed)

    def clients(self) -> list[dict[str, Any]]:
        return self._delivery.clients()

    def describe(self, item: SharedItem) -> dict[str, Any]:
        described = item.record.to_json()
        described["state"] = item.state
        described["online"] = item.online or self._delivery.is_here(item.record.client_id)
        described["length"] = len(item.record.text)
        described["order"] = item.order
        return described

    # -- events --------------------------------------------------------------

    def _handle_events(self, events: list[dict[str, Any]]) -> None:
        now = self._clock.seconds()
        for event in events:
            kind = event.get("type")
            if kind in ("item", "updated"):
                item = parse_item(event["item"])
                if self._mirror.apply(item, now):
                    self._notify_operators({"type": kind, "item": self.describe(item)})
            elif kind == "deliver" and not event.get("taken"):
                self._delivery.heard_of(event["message"]["client_id"], int(event["seq"]))
            elif kind == "broadcast" and event.get("origin") != self.link.daemon_id:
                self._delivery.broadcast_here(event)

    def _notify_operators(self, event: dict[str, Any]) -> None:
        for operator in list(self._operators):
            try:
                operator.notify(event)
            except Exception:
                _log.failure("notifying operator {name}", name=operator.name)
