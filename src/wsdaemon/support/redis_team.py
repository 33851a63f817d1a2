"""
The team across daemons, in Redis keys: who is available, kept where a
daemon starting later finds it, and let go when the daemon holding an
operator is gone.

Keys (under the broker's prefix):

    P c:team      hash: operator -> JSON {"availability", "capacity",
                  "daemon"}: as the daemon where it last changed told
    P c:daemons   zset: daemon id -> Redis's time at its last heartbeat

Each daemon writes its operators' entries when their availability or
capacity changes (L{record}, from the feed), and every C{heartbeat}
seconds runs one script: its own time set (Redis's clock, so daemons on
other machines compare alike), the daemons silent for three heartbeats
returned, with the team's entries. An operator whose entry names such a
daemon, and is not offline, is let go by the first daemon to rewrite its
entry (a script: only while it still names the gone daemon): that daemon
takes the entry's state into its view and sets the operator offline, as
its own daemon does when its connection ends; the others hear it as its
news (with automatic routing its conversations go to others).

At start: the entries of daemons alive come in as their news would
(L{ConversationDriver.adopt}); this daemon's own entries (a previous run
under the same configured name) are let go the same way. After an outage
every heartbeat ran out: nobody is let go until the link has been up for
three heartbeats and a reconnection's delay (as the shared queue's
sweep). Bounded: the entries are the operators (the tokens); daemons
silent for ten times the expiry are dropped from C{c:daemons}.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.conversations.effects import NotifyTeam
from wsdaemon.conversations.events import OperatorAvailability
from wsdaemon.conversations.model import Availability
from wsdaemon.errors import BrokerUnavailable
from wsdaemon.escaping import visible
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.peers import Adopted
from wsdaemon.support.redis_scripts import ScriptRunner

__all__ = ["HEARTBEATS_TO_EXPIRE", "TeamPresence", "TeamLink"]

#: Heartbeats a daemon may miss before its operators are let go.
HEARTBEATS_TO_EXPIRE = 3
#: Seconds a connection to Redis may take to be made again (the broker's
#: RedisConnection.max_delay): part of the wait after an outage.
_RECONNECT = 1.0

_log = Logger(namespace="wsdaemon.conversations")

# ARGV: P, daemon, expiry (seconds). Returns {dead daemons, team pairs}.
HEARTBEAT = r"""
local P, me, expiry = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', P .. 'c:daemons', now, me)
redis.call('ZREMRANGEBYSCORE', P .. 'c:daemons', '-inf', '(' .. (now - 10 * expiry))
local dead = redis.call('ZRANGEBYSCORE', P .. 'c:daemons', '-inf', '(' .. (now - expiry))
local alive = redis.call('ZRANGEBYSCORE', P .. 'c:daemons', now - expiry, '+inf')
return {dead, alive, redis.call('HGETALL', P .. 'c:team')}
"""

# ARGV: P, operator, the gone daemon, the entry to write. Writes it only if
# the operator's entry still names that daemon (it may have come back
# elsewhere meanwhile). Returns 1 when written.
LET_GO = r"""
local P, operator, gone, entry = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = redis.call('HGET', P .. 'c:team', operator)
if not now then return 0 end
local ok, held = pcall(cjson.decode, now)
if not ok or type(held) ~= 'table' or held['daemon'] ~= gone then return 0 end
redis.call('HSET', P .. 'c:team', operator, entry)
return 1
"""


def _entry(raw: Any) -> dict[str, Any] | None:
    """A team entry as written by L{TeamPresence.record}, or None if it is not one."""
    try:
        entry = json.loads(raw)
        if isinstance(entry, dict) and isinstance(entry.get("daemon"), str):
            Availability(entry["availability"])
            int(entry["capacity"])
            return entry
    except (ValueError, TypeError, KeyError):
        pass
    return None


class TeamLink(Protocol):
    """What the team's keys need of the broker's link."""

    daemon_id: str
    prefix: str
    #: When the link last became up (None while it is down).
    up_since: float | None

    def call(self, *args: Any) -> Deferred[Any]: ...


class TeamPresence:
    """
    @param heartbeat: seconds between heartbeats (C{[broker] heartbeat}).
    """

    def __init__(self, link: TeamLink, clock: IReactorTime, heartbeat: float) -> None:
        self._link = link
        self._clock = clock
        self._scripts = ScriptRunner(link)
        self.heartbeat = heartbeat
        self.daemon_id = link.daemon_id
        self._key = f"{link.prefix}c:team"
        self._driver: ConversationDriver | None = None
        self._loop: LoopingCall | None = None
        self._first = True
        #: Operators let go here because their daemon was gone (for tests, logs).
        self.let_go = 0

    def start(self, driver: ConversationDriver) -> None:
        """The driver runs: learn the team, then beat."""
        self._driver = driver
        self._loop = LoopingCall(self._beat)
        self._loop.clock = self._clock
        self._loop.start(self.heartbeat, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def record(self, effect: NotifyTeam) -> None:
        """An operator's availability or capacity changed here: its entry, in this daemon's name."""
        entry = json.dumps({"availability": effect.availability, "capacity": effect.capacity,
                            "daemon": self.daemon_id})
        d = self._link.call("HSET", self._key, effect.operator, entry)
        d.addErrback(self._failed, "writing the team's entry")

    # -- the heartbeat ---------------------------------------------------------

    def _beat(self) -> Deferred[None]:
        expiry = HEARTBEATS_TO_EXPIRE * self.heartbeat
        d: Deferred[Any] = self._scripts.run(HEARTBEAT, self._link.prefix, self.daemon_id,
                                             expiry)
        d.addCallback(self._heard)
        d.addErrback(self._failed, "the heartbeat")
        return d

    def _heard(self, reply: list[Any]) -> None:
        dead, alive, pairs = set(reply[0]), set(reply[1]), reply[2]
        fields = iter(pairs)
        entries: dict[str, dict[str, Any]] = {}
        for operator, raw in zip(fields, fields, strict=True):
            entry = _entry(raw)
            if entry is None:
                _log.warn("conversations: skipped a malformed team entry for {operator}",
                          operator=visible(str(operator)[:64]))
            else:
                entries[str(operator)] = entry
        first, self._first = self._first, False
        if first:
            self._learn(entries, alive)
        if self._settled():
            self._sweep(entries, dead)

    def _learn(self, entries: dict[str, dict[str, Any]], alive: set[str]) -> None:
        """At start: the live daemons' operators, as their news would bring them."""
        driver = self._driver
        assert driver is not None
        told = tuple(
            NotifyTeam(operator, str(entry["availability"]), int(entry["capacity"]), 0)
            for operator, entry in entries.items()
            if entry.get("daemon") in alive and entry.get("daemon") != self.daemon_id
            and entry.get("availability") != Availability.OFFLINE)
        if told:
            driver.adopt(Adopted((), told, durable=False)).addErrback(
                self._failed, "learning the team")
        for operator, entry in entries.items():
            if entry.get("daemon") == self.daemon_id and \
                    entry.get("availability") != Availability.OFFLINE:
                # A previous run's operator (the same configured name): gone,
                # and the others still count it in.
                self._let_go(operator, entry)

    def _settled(self) -> bool:
        """Whether the link has been up long enough for others' silence to mean they are gone."""
        up_since = self._link.up_since
        wait = HEARTBEATS_TO_EXPIRE * self.heartbeat + _RECONNECT
        return up_since is not None and self._clock.seconds() - up_since >= wait

    def _sweep(self, entries: dict[str, dict[str, Any]], dead: set[str]) -> None:
        for operator, entry in entries.items():
            if entry.get("daemon") in dead and entry.get("availability") != Availability.OFFLINE:
                offline = json.dumps({"availability": str(Availability.OFFLINE),
                                      "capacity": int(entry.get("capacity", 0)),
                                      "daemon": self.daemon_id})
                d = self._scripts.run(LET_GO, self._link.prefix, operator,
                                      str(entry["daemon"]), offline)
                d.addCallback(self._won, operator, entry)
                d.addErrback(self._failed, "letting an operator go")

    def _won(self, written: int, operator: str, entry: dict[str, Any]) -> None:
        if int(written):
            self._let_go(operator, entry)

    def _let_go(self, operator: str, entry: dict[str, Any]) -> None:
        """C{operator} is let go here: into the view as it was, then offline (news for all)."""
        driver = self._driver
        assert driver is not None
        self.let_go += 1
        _log.info("conversations: operator {operator} let go: daemon {daemon} is gone",
                  operator=visible(operator), daemon=visible(str(entry.get("daemon"))[:64]))
        was = NotifyTeam(operator, str(entry["availability"]), int(entry.get("capacity", 0)), 0)
        driver.adopt(Adopted((), (was,), durable=False)).addErrback(
            self._failed, "letting an operator go")
        d = driver.submit(OperatorAvailability(operator, Availability.OFFLINE))
        d.addErrback(self._failed, "letting an operator go")

    def _failed(self, failure: Failure, what: str) -> None:
        if failure.check(BrokerUnavailable):
            return  # the link logs an outage once
        _log.failure("conversations: {what} failed", failure, what=what)
