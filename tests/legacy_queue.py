"""
Stores in the retired operator queue's formats, written without its code:
what an upgrading user still has on disk or in Redis, for the tests of
their take-over by conversations (L{wsdaemon.support.migration},
L{wsdaemon.support.redis_migration}; docs/conversations.md, section 5).

The queue (C{[operator] model = queue}) wrote them until commit 0889169
(2026-12-07, the last on main with C{strategies/operator} and
C{broker/queue.py}). What is here is a frozen copy of their layout and
encodings, checked byte for byte against that code once, by hand, before
it was removed (commits 33af039 and 3fd22a1 say how and what was
compared). Nothing here decides anything the queue decided (caps, claims,
leases, who is online): a builder writes what the queue wrote once it had
decided, with the times and ids the test gives.

SQLite: L{QueueFile}, the schema of C{strategies/operator/store.py}
(unchanged since commit 58a62d9, 2026-11-25) and its writes.

Redis: L{QueueKeys}, the keys of C{broker/scripts.py} (documented there
until its removal; repeated below), each write one script that writes
what the queue's script wrote, in the same encodings: the item's times as
txredisapi sent a Python float (C{format(x, "f")}), the visitor's messages
and pushes as Python's JSON (C{broker/mirror.message_json}), replies and
fallbacks as the queue's Lua made them (C{cjson.encode} of the same table,
so the server's own key order and number format).
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["QUEUE_FALLBACK", "QUEUE_SCHEMA", "QueueFile", "QueueKeys", "RESEND_WINDOW",
           "message_digest", "queue_time"]

# -- SQLite ---------------------------------------------------------------------

#: The queue's tables (C{strategies/operator/store.py}, C{_SCHEMA}), as it
#: created them on every open from commit 58a62d9 to commit 0889169.
QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    client_id TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    operator TEXT,
    answered_at REAL,
    fallback_sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_open ON items (state, created_at);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL,
    route TEXT NOT NULL,
    item_id TEXT,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    at REAL NOT NULL,
    -- out messages: 0 waiting, 1 delivered, 2 failed for good (not retried)
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_client ON messages (client_id, seq);
CREATE INDEX IF NOT EXISTS messages_undelivered ON messages (client_id, delivered, direction);
"""

#: Set on every connection by the queue's writer (C{wsdaemon.sqlite_writer});
#: no C{user_version}: the queue never set one.
QUEUE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL")


class QueueFile:
    """
    The queue's SQLite file, written as its store wrote it. Each call is
    one committed transaction, as each of the store's operations was.

    @param path: the file (made with its directory if missing).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None)
        for pragma in QUEUE_PRAGMAS:
            self._db.execute(pragma)
        self._db.executescript(QUEUE_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _write(self, *statements: tuple[str, tuple[Any, ...]]) -> int:
        """@return: the last statement's rowid (a message's seq)."""
        with self._db:
            self._db.execute("BEGIN")
            for sql, args in statements:
                cursor = self._db.execute(sql, args)
                if sql.startswith("UPDATE") and cursor.rowcount != 1:
                    raise LookupError(f"no stored item {args[-1]}")
        return int(cursor.lastrowid or 0)

    def ask(self, item_id: str, route: str, client: str, text: str, at: float) -> int:
        """
        A visitor's message: its item (queued) and its line in the thread
        (the store's C{add_item}). @return: the message's seq.
        """
        return self._write(
            ("INSERT INTO items (item_id, route, client_id, text, created_at, state, operator, "
             "answered_at, fallback_sent) VALUES (?,?,?,?,?,?,?,?,?)",
             (item_id, route, client, text, at, "queued", None, None, 0)),
            (_INSERT_MESSAGE, (client, route, item_id, "in", "client", text, at, 0)))

    def claim(self, item_id: str, operator: str) -> None:
        """An operator holds the item (stored; read back as queued after a restart)."""
        self._write(("UPDATE items SET state = 'claimed', operator = ? WHERE item_id = ?",
                     (operator, item_id)))

    def answer(self, item_id: str, operator: str, body: str, at: float) -> int:
        """
        The item answered and the reply stored, not yet written (the
        store's C{answer_item}). @return: the reply's seq.
        """
        client, route = self._item(item_id)
        return self._write(
            ("UPDATE items SET state = 'answered', operator = ?, answered_at = ? "
             "WHERE item_id = ?", (operator, at, item_id)),
            (_INSERT_MESSAGE, (client, route, item_id, "out", operator, body, at, 0)))

    def fallback(self, item_id: str, body: str, at: float, keep: bool = True) -> int:
        """
        The fallback message (from C{system}) for an item nobody answered
        in time: the item stays open (C{keep_after_fallback}) or expires.
        @return: the message's seq.
        """
        client, route = self._item(item_id)
        change = ("UPDATE items SET fallback_sent = 1 WHERE item_id = ?" if keep else
                  "UPDATE items SET fallback_sent = 1, state = 'expired', operator = NULL "
                  "WHERE item_id = ?")
        return self._write((change, (item_id,)),
                           (_INSERT_MESSAGE, (client, route, item_id, "out", "system", body,
                                              at, 0)))

    def push(self, client: str, route: str, sender: str, body: str, at: float,
             delivered: bool = False) -> int:
        """
        An operator's message to a client outside any item (C{push}: kept
        until written; a broadcast's line: written at once). @return: its seq.
        """
        return self._write((_INSERT_MESSAGE, (client, route, None, "out", sender, body, at,
                                              int(delivered))))

    def delivered(self, *seqs: int) -> None:
        """Written to the client's connection."""
        self._write(*(("UPDATE messages SET delivered = 1 WHERE seq = ?", (seq,))
                      for seq in seqs))

    def failed(self, *seqs: int) -> None:
        """Never writable (too big for its route): not tried again."""
        self._write(*(("UPDATE messages SET delivered = 2 WHERE seq = ?", (seq,))
                      for seq in seqs))

    def _item(self, item_id: str) -> tuple[str, str]:
        row = self._db.execute("SELECT client_id, route FROM items WHERE item_id = ?",
                               (item_id,)).fetchone()
        if row is None:
            raise LookupError(f"no stored item {item_id}")
        return str(row[0]), str(row[1])


_INSERT_MESSAGE = ("INSERT INTO messages (client_id, route, item_id, direction, sender, body, "
                   "at, delivered) VALUES (?,?,?,?,?,?,?,?)")


# -- Redis ----------------------------------------------------------------------

#: The queue's fallback message (its default C{fallback_message}).
QUEUE_FALLBACK = ("Sorry, no operator could answer yet. We will reply here as soon as one "
                  "does.")

#: Seconds a C{sent:DIGEST} key lasted (C{broker/queue.py}'s resend window).
RESEND_WINDOW = 120.0

# The queue's keys, under the prefix P (from broker/scripts.py):
#
#     P item:ID           hash: route, client_id, text, created_at, state,
#                         operator, answered_at, fallback_sent, lease_until,
#                         order, version
#     P open              zset: open items by arrival order (P itemseq)
#     P leases            zset: claimed items by lease end
#     P fallbacks         zset: items by when their fallback is due
#     P open_by_client    hash: client -> open items; P open_by_route too
#     P messages          hash: message seq (P msgseq) -> message JSON
#     P conv / conv:C     zset: every message seq / one client's
#     P undelivered:C     zset: seqs of outgoing messages no daemon took yet
#     P inflight:D        zset: "client<TAB>seq" taken by daemon D, by its clock
#     P inflight_daemons  set: daemons that may have entries in inflight:D
#     P sent:DIGEST       string: the item a message made (expires)
#     P events            stream: what changed (field "e": JSON)
#
# Not written here (a daemon's liveness, gone with it): daemons, settled,
# presence:D, routes:D.

_PRELUDE = r"""
local P = ARGV[1]
local function item_key(id) return P .. 'item:' .. id end
local function emit(json)
  redis.call('XADD', P .. 'events', 'MAXLEN', '~', 100000, '*', 'e', json)
end
local function emit_item(kind, id, why)
  local fields = redis.call('HGETALL', item_key(id))
  local t = {item_id = id}
  for i = 1, #fields, 2 do t[fields[i]] = fields[i + 1] end
  t.online = false
  emit(cjson.encode({type = kind, item = t, why = why}))
end
local function count_open(client, route, delta)
  if redis.call('HINCRBY', P .. 'open_by_client', client, delta) <= 0 then
    redis.call('HDEL', P .. 'open_by_client', client)
  end
  if redis.call('HINCRBY', P .. 'open_by_route', route, delta) <= 0 then
    redis.call('HDEL', P .. 'open_by_route', route)
  end
end
local function store_out(client, json, taker, now)
  local seq = redis.call('INCR', P .. 'msgseq')
  redis.call('HSET', P .. 'messages', seq, json)
  redis.call('ZADD', P .. 'conv:' .. client, seq, seq)
  redis.call('ZADD', P .. 'conv', seq, seq)
  if taker ~= '' then
    redis.call('ZADD', P .. 'inflight:' .. taker, now, client .. '\t' .. seq)
    redis.call('SADD', P .. 'inflight_daemons', taker)
    emit('{"type":"deliver","seq":' .. seq .. ',"taken":' .. cjson.encode(taker) ..
         ',"message":' .. json .. '}')
  else
    redis.call('ZADD', P .. 'undelivered:' .. client, seq, seq)
    emit('{"type":"deliver","seq":' .. seq .. ',"message":' .. json .. '}')
  end
  return seq
end
"""

# ARGV: P, id, route, client, text, created_at, message JSON, seconds until
# the fallback is due ('' for none), digest, window. Returns the message's seq.
_ASK = _PRELUDE + r"""
local id, route, client, text = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
count_open(client, route, 1)
local order = redis.call('INCR', P .. 'itemseq')
redis.call('HSET', item_key(id), 'route', route, 'client_id', client, 'text', text,
           'created_at', ARGV[6], 'state', 'queued', 'operator', '', 'answered_at', '',
           'fallback_sent', '0', 'lease_until', '0', 'order', order, 'version', 1)
redis.call('ZADD', P .. 'open', order, id)
local seq = redis.call('INCR', P .. 'msgseq')
redis.call('HSET', P .. 'messages', seq, ARGV[7])
redis.call('ZADD', P .. 'conv:' .. client, seq, seq)
redis.call('ZADD', P .. 'conv', seq, seq)
if ARGV[8] ~= '' then
  redis.call('ZADD', P .. 'fallbacks', tonumber(ARGV[6]) + tonumber(ARGV[8]), id)
end
redis.call('SET', P .. 'sent:' .. ARGV[9], id, 'EX', math.ceil(tonumber(ARGV[10])))
emit_item('item', id, 'queued')
return seq
"""

# ARGV: P, id, operator, lease end.
_CLAIM = _PRELUDE + r"""
local id, operator, lease_until = ARGV[2], ARGV[3], tonumber(ARGV[4])
local k = item_key(id)
redis.call('HSET', k, 'state', 'claimed', 'operator', operator, 'lease_until', lease_until)
redis.call('ZADD', P .. 'leases', lease_until, id)
redis.call('HINCRBY', k, 'version', 1)
emit_item('updated', id, 'claimed by ' .. operator)
return 1
"""

# ARGV: P, id, operator, at, body, taker ('' : kept for the client).
_ANSWER = _PRELUDE + r"""
local id, operator, now, body, taker = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local k = item_key(id)
redis.call('HSET', k, 'state', 'answered', 'operator', operator, 'answered_at', ARGV[4],
           'lease_until', '0')
for _, set in ipairs({'open', 'leases', 'fallbacks'}) do redis.call('ZREM', P .. set, id) end
local client, route = redis.call('HGET', k, 'client_id'), redis.call('HGET', k, 'route')
count_open(client, route, -1)
redis.call('HINCRBY', k, 'version', 1)
local reply = cjson.encode({client_id = client, route = route,
  direction = 'out', sender = operator, body = body, at = now, item_id = id})
emit_item('updated', id, 'answered by ' .. operator)
return store_out(client, reply, taker, now)
"""

# ARGV: P, id, at, body, '1' to keep the item open ('0': it expires).
_FALLBACK = _PRELUDE + r"""
local id, now, body = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local k = item_key(id)
redis.call('ZREM', P .. 'fallbacks', id)
redis.call('HSET', k, 'fallback_sent', '1')
local client, route = redis.call('HGET', k, 'client_id'), redis.call('HGET', k, 'route')
if ARGV[5] == '0' then
  redis.call('HSET', k, 'state', 'expired', 'lease_until', '0')
  redis.call('ZREM', P .. 'open', id)
  redis.call('ZREM', P .. 'leases', id)
  count_open(client, route, -1)
end
redis.call('HINCRBY', k, 'version', 1)
emit_item('updated', id, 'fallback sent')
return store_out(client, cjson.encode({client_id = client, route = route,
  direction = 'out', sender = 'system', body = body, at = now, item_id = id}), '', now)
"""

# ARGV: P, client, message JSON, taker ('': kept), at.
_PUSH = _PRELUDE + r"""
return store_out(ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]))
"""

# ARGV: P, daemon, at, client: everything kept for the client taken by the
# daemon to write (not settled yet). Returns the seqs.
_TAKE = r"""
local P, daemon, now, client = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local key = P .. 'undelivered:' .. client
local seqs = redis.call('ZRANGE', key, 0, -1)
for _, seq in ipairs(seqs) do
  redis.call('ZREM', key, seq)
  redis.call('ZADD', P .. 'inflight:' .. daemon, now, client .. '\t' .. seq)
  redis.call('SADD', P .. 'inflight_daemons', daemon)
end
return seqs
"""

# ARGV: P, daemon, client, seq, '1' written ('0': given back, kept again).
_SETTLE = r"""
local P, daemon, client, seq = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('ZREM', P .. 'inflight:' .. daemon, client .. '\t' .. seq) == 1
    and ARGV[5] == '0' then
  redis.call('ZADD', P .. 'undelivered:' .. client, seq, seq)
end
return 1
"""


def queue_time(at: float) -> str:
    """A time as the queue's scripts got it (txredisapi's encoding of a float)."""
    return format(at, "f")


def message_digest(route: str, client_id: str, text: str) -> str:
    """The C{sent:DIGEST} key's digest (C{broker/queue.py}'s)."""
    data = "\0".join((route, client_id, text)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def _message_json(client: str, route: str, direction: str, sender: str, body: str,
                  at: float, item_id: str | None) -> str:
    """A message as the queue's Python side encoded it for the scripts."""
    return json.dumps({"client_id": client, "route": route, "direction": direction,
                       "sender": sender, "body": body, "at": at, "item_id": item_id},
                      ensure_ascii=False)


class QueueKeys:
    """
    The shared queue's keys in a real Redis, written as its scripts wrote
    them. Each call is one script (as each of the queue's steps was).

    @param call: runs one Redis command, a Deferred of its reply (the
        broker link's C{call}).
    @param prefix: the key prefix (C{[broker] prefix}).
    """

    def __init__(self, call: Callable[..., Any], prefix: str) -> None:
        self._call = call
        self.prefix = prefix

    def _run(self, script: str, *args: Any) -> Any:
        return self._call("EVAL", script, "0", self.prefix, *(str(a) for a in args))

    def ask(self, item_id: str, route: str, client: str, text: str, at: float,
            fallback_after: float | None = None) -> Any:
        """
        A visitor's message: its item (queued; its fallback due
        C{fallback_after} seconds later, None for no fallback, 0 for one due
        at once: nobody online) and its line in the thread.
        @return: a Deferred firing with the message's seq.
        """
        due = "" if fallback_after is None else queue_time(fallback_after)
        return self._run(_ASK, item_id, route, client, text, queue_time(at),
                         _message_json(client, route, "in", "client", text, at, item_id), due,
                         message_digest(route, client, text), math.ceil(RESEND_WINDOW))

    def claim(self, item_id: str, operator: str, at: float, lease: float = 120.0) -> Any:
        """An operator holds the item until C{at + lease} (C{[operator] lease})."""
        return self._run(_CLAIM, item_id, operator, repr(float(queue_time(at)) + lease))

    def answer(self, item_id: str, operator: str, body: str, at: float,
               taken_by: str = "") -> Any:
        """
        The item answered: the reply kept for its client, or taken at once
        by daemon C{taken_by} (its client connected there) and not settled.
        @return: a Deferred firing with the reply's seq.
        """
        return self._run(_ANSWER, item_id, operator, queue_time(at), body, taken_by)

    def fallback(self, item_id: str, body: str, at: float, keep: bool = True) -> Any:
        """
        The fallback (from C{system}), kept for the client; the item stays
        open (C{keep_after_fallback}) or expires. @return: a Deferred
        firing with the message's seq.
        """
        return self._run(_FALLBACK, item_id, queue_time(at), body, "1" if keep else "0")

    def push(self, client: str, route: str, sender: str, body: str, at: float,
             taken_by: str = "") -> Any:
        """
        An operator's message outside any item (the queue stored a push to
        a client connected nowhere with route C{""}). @return: a Deferred
        firing with its seq.
        """
        return self._run(_PUSH, client,
                         _message_json(client, route, "out", sender, body, at, None),
                         taken_by, queue_time(at))

    def take(self, daemon: str, client: str, at: float) -> Any:
        """
        Daemon C{daemon} takes what is kept for C{client} to write it.
        @return: a Deferred firing with the seqs taken.
        """
        return self._call("EVAL", _TAKE, "0", self.prefix, daemon, queue_time(at), client)

    def settle(self, daemon: str, client: str, seq: int | str, written: bool = True) -> Any:
        """Daemon C{daemon} wrote what it took (or gives it back: kept again)."""
        return self._call("EVAL", _SETTLE, "0", self.prefix, daemon, client, str(seq),
                          "1" if written else "0")
