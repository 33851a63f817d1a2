"""
The team across daemons, in Redis keys: who is available, kept where a
daemon starting later finds it, and let go when the daemon holding an
operator is gone.

Keys (under the broker's prefix):

    P c:team      hash: operator -> JSON {"availability", "capacity",
                  "daemon"}: as the daemon where it last changed told
    P c:daemons   zset: daemon id -> Redis's time at its last heartbeat
    P c:held      hash: operator -> JSON list of the daemons holding a
                  connection of it

Each daemon writes its operators' entries when their availability or
capacity changes (L{record}, from the feed), and every C{heartbeat}
seconds runs one script: its own time set (Redis's clock, so daemons on
other machines compare alike), which operators it holds a connection of
(C{c:held} made to say exactly that, and daemons no longer alive taken
out of it), the daemons silent for three heartbeats returned, with the
team's entries. An operator whose entry names such a daemon, and is not
offline, is let go by the first daemon to rewrite its entry (a script:
only while it still names the gone daemon, and only if no live daemon
holds a connection of it: then the entry names that daemon instead):
that daemon takes the entry's state into its view and sets the operator
offline, as its own daemon does when its connection ends; the others
hear it as its news (with automatic routing its conversations go to
others).

Presence per daemon: an operator's first connection to a daemon adds the
daemon to its C{c:held} list (L{hold}); its last one closing takes it out
(L{release}, a script answering how many live daemons still hold one):
the operator goes offline only when that is none, so an operator
connected through two daemons who closes one console stays available for
everyone, at every moment.

Viewing across daemons: as an operator's connection here opens or closes
a conversation (L{viewing}), the others are told through the event stream
(C{"type": "operator_viewing"}: this daemon and its run, the connection,
the operator, the conversation or null; not stored in any record). When
the link comes up (the first heartbeat, and after an outage, when news may
have been lost) a daemon sends everything its connections view and asks
the others for theirs. A gone daemon's viewers are dropped with its
operators (L{wsdaemon.support.viewing}).

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
from typing import TYPE_CHECKING, Any

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
from wsdaemon.support.viewing import TeamLink, ViewingNews

if TYPE_CHECKING:
    from wsdaemon.support.hub import OperatorHub

__all__ = ["HEARTBEATS_TO_EXPIRE", "TeamLink", "TeamPresence", "team_entry"]

#: Heartbeats a daemon may miss before its operators are let go.
HEARTBEATS_TO_EXPIRE = 3
#: Seconds a connection to Redis may take to be made again (the broker's
#: RedisConnection.max_delay): part of the wait after an outage.
_RECONNECT = 1.0

_log = Logger(namespace="wsdaemon.conversations")

# The scripts' common part: a daemon's liveness (its heartbeat within
# `expiry` seconds of Redis's clock) and an operator's holders (a JSON
# list of daemon ids, '[]' or absent: none).
_COMMON = r"""
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function alive(P, daemon, now, expiry)
  local beat = redis.call('ZSCORE', P .. 'c:daemons', daemon)
  return beat and tonumber(beat) >= now - expiry
end
local function holders(raw)
  if not raw then return {} end
  local ok, list = pcall(cjson.decode, raw)
  if not ok or type(list) ~= 'table' then return {} end
  local out = {}
  for _, d in ipairs(list) do
    if type(d) == 'string' then out[#out + 1] = d end
  end
  return out
end
local function keep(P, operator, list)
  if #list == 0 then
    redis.call('HDEL', P .. 'c:held', operator)
  else
    redis.call('HSET', P .. 'c:held', operator, cjson.encode(list))
  end
end
"""

# ARGV: P, daemon, expiry (seconds), then the operators it holds a
# connection of. Returns {dead daemons, live daemons, team pairs}.
HEARTBEAT = _COMMON + r"""
local P, me, expiry = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = clock()
redis.call('ZADD', P .. 'c:daemons', now, me)
redis.call('ZREMRANGEBYSCORE', P .. 'c:daemons', '-inf', '(' .. (now - 10 * expiry))
local mine = {}
for i = 4, #ARGV do mine[ARGV[i]] = true end
local held = redis.call('HGETALL', P .. 'c:held')
for i = 1, #held, 2 do
  local operator, list, out = held[i], holders(held[i + 1]), {}
  for _, d in ipairs(list) do
    if d ~= me and alive(P, d, now, expiry) then out[#out + 1] = d end
  end
  if mine[operator] then out[#out + 1] = me; mine[operator] = nil end
  if #out ~= #list or cjson.encode(out) ~= held[i + 1] then keep(P, operator, out) end
end
for operator in pairs(mine) do keep(P, operator, {me}) end
local dead = redis.call('ZRANGEBYSCORE', P .. 'c:daemons', '-inf', '(' .. (now - expiry))
local live = redis.call('ZRANGEBYSCORE', P .. 'c:daemons', now - expiry, '+inf')
return {dead, live, redis.call('HGETALL', P .. 'c:team')}
"""

# ARGV: P, operator, daemon. Its first connection there opened.
HOLD = _COMMON + r"""
local P, operator, me = ARGV[1], ARGV[2], ARGV[3]
local list = holders(redis.call('HGET', P .. 'c:held', operator))
for _, d in ipairs(list) do
  if d == me then return 0 end
end
list[#list + 1] = me
keep(P, operator, list)
return 1
"""

# ARGV: P, operator, daemon, expiry. Its last connection there closed.
# Returns how many live daemons still hold one.
RELEASE = _COMMON + r"""
local P, operator, me, expiry = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = clock()
local out, live = {}, 0
for _, d in ipairs(holders(redis.call('HGET', P .. 'c:held', operator))) do
  if d ~= me then
    out[#out + 1] = d
    if alive(P, d, now, expiry) then live = live + 1 end
  end
end
keep(P, operator, out)
return live
"""

# ARGV: P, operator, the gone daemon, the entry to write, expiry, the
# daemon running it. Writes it only if the operator's entry still names
# that daemon (it may have come back elsewhere meanwhile) and no live
# daemon holds a connection of it (the gone one is not counted, unless it
# is the caller: its previous run's entry, and the operator has connected
# to it since); when one does, the entry names it instead. Returns 1 when
# the entry was written.
LET_GO = _COMMON + r"""
local P, operator, gone, entry = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local expiry, me = tonumber(ARGV[5]), ARGV[6]
local now = redis.call('HGET', P .. 'c:team', operator)
if not now then return 0 end
local ok, held = pcall(cjson.decode, now)
if not ok or type(held) ~= 'table' or held['daemon'] ~= gone then return 0 end
local t = clock()
for _, d in ipairs(holders(redis.call('HGET', P .. 'c:held', operator))) do
  if (d ~= gone or gone == me) and alive(P, d, t, expiry) then
    held['daemon'] = d
    redis.call('HSET', P .. 'c:team', operator, cjson.encode(held))
    return 0
  end
end
redis.call('HSET', P .. 'c:team', operator, entry)
return 1
"""


def team_entry(raw: Any) -> dict[str, Any] | None:
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
        #: Operators with a connection to this daemon (L{hold}, L{release}).
        self._here: set[str] = set()
        #: What this daemon's operators view, to the others and from them.
        self.news = ViewingNews(link)
        self._announced_for: float | None = None
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
        """
        An operator's availability or capacity changed here: its entry, in
        this daemon's name. One joined by the configuration is written only
        if it has none (another daemon's is as new, or newer); one that
        left keeps its entry (offline: nobody learns it at start).
        """
        if effect.left:
            return
        entry = json.dumps({"availability": effect.availability, "capacity": effect.capacity,
                            "daemon": self.daemon_id})
        d = self._link.call("HSETNX" if effect.joined else "HSET", self._key, effect.operator,
                            entry)
        d.addErrback(self._failed, "writing the team's entry")

    # -- presence per daemon ---------------------------------------------------

    @property
    def expiry(self) -> float:
        """Seconds of silence after which a daemon is gone."""
        return HEARTBEATS_TO_EXPIRE * self.heartbeat

    def hold(self, operator: str) -> Deferred[None]:
        """
        C{operator}'s first connection to this daemon opened.

        @return: a Deferred firing with None once written (or not: the
            next heartbeat writes it again).
        """
        self._here.add(operator)
        d: Deferred[Any] = self._scripts.run(HOLD, self._link.prefix, operator, self.daemon_id)
        d.addCallbacks(lambda _: None, self._failed, errbackArgs=("holding an operator",))
        return d

    def release(self, operator: str) -> Deferred[bool]:
        """
        C{operator}'s last connection to this daemon closed.

        @return: a Deferred firing with whether another live daemon still
            holds a connection of it (then it stays as it is); False when
            Redis cannot say (it goes offline, as with one daemon).
        """
        self._here.discard(operator)
        d: Deferred[Any] = self._scripts.run(RELEASE, self._link.prefix, operator,
                                             self.daemon_id, self.expiry)

        def unknown(failure: Failure) -> bool:
            self._failed(failure, "releasing an operator")
            return False

        d.addCallbacks(lambda live: int(live) > 0, unknown)
        return d

    # -- viewing (L{ViewingNews}) ---------------------------------------------

    def share_viewing(self, hub: OperatorHub) -> None:
        """C{hub}'s connections' viewing goes to the others; theirs comes to C{hub.remote}."""
        self.news.hub = hub

    def viewing(self, connection: str, operator: str, conversation_id: str | None) -> None:
        """C{connection} here has C{conversation_id} open now (None: none): the others hear it."""
        self.news.viewing(connection, operator, conversation_id)

    # -- the heartbeat ---------------------------------------------------------

    def _beat(self) -> Deferred[None]:
        d: Deferred[Any] = self._scripts.run(HEARTBEAT, self._link.prefix, self.daemon_id,
                                             self.expiry, *sorted(self._here))
        d.addCallback(self._heard)
        d.addErrback(self._failed, "the heartbeat")
        return d

    def _heard(self, reply: list[Any]) -> None:
        dead, alive, pairs = set(reply[0]), set(reply[1]), reply[2]
        fields = iter(pairs)
        entries: dict[str, dict[str, Any]] = {}
        for operator, raw in zip(fields, fields, strict=True):
            entry = team_entry(raw)
            if entry is None:
                _log.warn("conversations: skipped a malformed team entry for {operator}",
                          operator=visible(str(operator)[:64]))
            else:
                entries[str(operator)] = entry
        first, self._first = self._first, False
        if first:
            self._learn(entries, alive)
        if self._link.up_since != self._announced_for:
            # Up (again): news may have been lost meanwhile.
            self._announced_for = self._link.up_since
            self.news.announce(ask=True)
        else:
            self.news.beat()
        self.news.gone(dead)
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
                # and the others still count it in, unless a live daemon
                # holds a connection of it (then it is as the entry says).
                offline = self._offline(entry)
                d = self._scripts.run(LET_GO, self._link.prefix, operator, self.daemon_id,
                                      offline, self.expiry, self.daemon_id)
                d.addCallback(self._won_own, operator, entry)
                d.addErrback(self._failed, "letting an operator go")

    def _won_own(self, written: int, operator: str, entry: dict[str, Any]) -> None:
        if int(written):
            self._let_go(operator, entry)
            return
        driver = self._driver
        assert driver is not None
        was = NotifyTeam(operator, str(entry["availability"]), int(entry.get("capacity", 0)), 0)
        driver.adopt(Adopted((), (was,), durable=False)).addErrback(
            self._failed, "learning the team")

    def _offline(self, entry: dict[str, Any]) -> str:
        return json.dumps({"availability": str(Availability.OFFLINE),
                           "capacity": int(entry.get("capacity", 0)), "daemon": self.daemon_id})

    def _settled(self) -> bool:
        """Whether the link has been up long enough for others' silence to mean they are gone."""
        up_since = self._link.up_since
        wait = HEARTBEATS_TO_EXPIRE * self.heartbeat + _RECONNECT
        return up_since is not None and self._clock.seconds() - up_since >= wait

    def _sweep(self, entries: dict[str, dict[str, Any]], dead: set[str]) -> None:
        for operator, entry in entries.items():
            if entry.get("daemon") in dead and entry.get("availability") != Availability.OFFLINE:
                d = self._scripts.run(LET_GO, self._link.prefix, operator,
                                      str(entry["daemon"]), self._offline(entry), self.expiry,
                                      self.daemon_id)
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
