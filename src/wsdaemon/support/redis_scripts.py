"""
The Redis conversation store's Lua scripts, how their arguments are laid
out, and how they are called (EVALSHA, EVAL again after Redis forgot them).

Redis runs a script to its end before anything else, so a commit checked
and written in one script is all or nothing however many daemons commit at
once, and nothing is half written when Redis goes away: a script either
ran (its reply may be lost: L{wsdaemon.errors.BrokerOutcomeUnknown}) or did
not.

Keys, under the prefix C{P} (docs/conversations.md, section 5; one Redis
server, not Cluster: the scripts build keys from the prefix, as the
operator queue's do):

    P c:ID          hash: the conversation's columns (those of the SQLite
                    row, L{wsdaemon.conversations.codec}); a column that is
                    None is absent
    P c:ID:m        zset: messages (JSON of the codec's row) scored by seq
    P c:ID:n        zset: notes (JSON) scored by note_id
    P c:live        zset: open and snoozed conversation ids by opened_at
                    (ties: by id, as SQLite's index orders them)
    P c:migrated    string: when the operator queue's keys were taken over
    P c:migrating   string: who is taking them over now (expires)
    P c:team:raised hash: operator -> commits that raised its load so far
                    (a commit raising a capped operator's load says how
                    many it had seen, and is refused when those it had not
                    seen could overfill the operator's room: its capacity
                    as its C{P c:team} entry holds it,
                    L{wsdaemon.support.redis_team})
    P events        stream (the broker's): one entry per commit

Timers are not stored: they are functions of a conversation's state
(L{wsdaemon.conversations.transition.due_times}), derived again by whoever
loads it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wsdaemon.conversations.codec import (
    CONVERSATION_COLUMNS,
    conversation_from_row,
    conversation_row,
    message_row,
    note_row,
)
from wsdaemon.conversations.effects import Commit
from wsdaemon.conversations.model import Conversation

__all__ = ["COMMIT", "LIVE_PAGE", "READ_HASHES", "TEAM", "THREADS", "UNLOCK", "RedisCalls",
           "ScriptRunner", "conversation_from_hash", "write_args"]

#: What a commit refused because an operator's room may be full names
#: (with the operator after it) instead of conversations (no conversation
#: id looks like it).
TEAM = "~team:"


class RedisCalls(Protocol):
    """
    What the store needs of the broker's link (L{wsdaemon.broker.link.RedisLink}
    provides it): one command, a Deferred of its reply, failing with
    L{wsdaemon.errors.BrokerUnavailable} or
    L{wsdaemon.errors.BrokerOutcomeUnknown} when Redis cannot be reached.
    """

    def call(self, *args: Any) -> Deferred[Any]: ...


# ARGV: P, mode ('commit': check versions and numbers, append the event;
# 'migrate': leave alone a conversation that exists, with its messages and
# notes, no event), events kept (MAXLEN ~), the loads it raises ('', or
# JSON {operator: [raises seen, its load after, its capacity in the view
# (0: none; -1: past it on purpose, never refused)]}: refused when the load
# after plus the raises not seen exceeds the capacity, other than 0, that
# the operator's C{c:team} entry holds (the view's when it has none: a
# capacity lowered on another daemon counts at once); each counted, the
# counts after in the event), conversations,
# messages, notes (counts); then per conversation: id, version, status, opened_at, its
# field/value pairs as a JSON list of strings (one argument, not fifty:
# the client's encoding of arguments is what a big write costs); per
# message and note: conversation id, number,
# JSON; last, the event's JSON. Returns {'ok', conversations written},
# {'stale', ids...} or {'stale', TEAM .. operator} (its room may be full).
COMMIT = r"""
local P, mode, kept, team = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local nconv, nmsg, nnote = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local i = 8
local convs = {}
for c = 1, nconv do
  convs[c] = {id = ARGV[i], version = tonumber(ARGV[i + 1]), status = ARGV[i + 2],
              opened = ARGV[i + 3], fields = ARGV[i + 4]}
  i = i + 5
end
local records = {{first = i, count = nmsg, suffix = ':m'},
                 {first = i + 3 * nmsg, count = nnote, suffix = ':n'}}
local event = ARGV[i + 3 * (nmsg + nnote)]

local function key(id) return P .. 'c:' .. id end
-- The capacity the team's entry holds (set where it last changed), or nil.
local function stored_capacity(operator)
  local raw = redis.call('HGET', P .. 'c:team', operator)
  if not raw then return nil end
  local ok, entry = pcall(cjson.decode, raw)
  if not ok or type(entry) ~= 'table' then return nil end
  local cap = tonumber(entry['capacity'])
  if cap == nil or cap < 0 then return nil end
  return cap
end
local skip = {}
if mode == 'migrate' then
  for _, c in ipairs(convs) do
    if redis.call('EXISTS', key(c.id)) == 1 then skip[c.id] = true end
  end
else
  local stale, named = {}, {}
  local function clash(id)
    if not named[id] then named[id] = true; stale[#stale + 1] = id end
  end
  for _, c in ipairs(convs) do
    local stored = tonumber(redis.call('HGET', key(c.id), 'version') or '0')
    if stored ~= c.version - 1 then clash(c.id) end
  end
  for _, r in ipairs(records) do
    for j = 0, r.count - 1 do
      local id, n = ARGV[r.first + 3 * j], ARGV[r.first + 3 * j + 1]
      if redis.call('ZCOUNT', key(id) .. r.suffix, n, n) > 0 then clash(id) end
    end
  end
  if #stale > 0 then return {'stale', unpack(stale)} end
  if team ~= '' then
    local counts = {}
    for operator, seen in pairs(cjson.decode(team)) do
      local stored = tonumber(redis.call('HGET', P .. 'c:team:raised', operator) or '0')
      if seen[3] >= 0 then
        local cap = stored_capacity(operator) or seen[3]
        if cap > 0 and seen[2] + stored - seen[1] > cap then
          return {'stale', '~team:' .. operator}
        end
      end
      counts[operator] = stored + 1
    end
    for operator, n in pairs(counts) do
      redis.call('HSET', P .. 'c:team:raised', operator, n)
    end
    event = string.sub(event, 1, -2) .. ',"team_raised":' .. cjson.encode(counts) .. '}'
  end
end

local written = 0
for _, c in ipairs(convs) do
  if not skip[c.id] then
    written = written + 1
    redis.call('DEL', key(c.id))
    redis.call('HSET', key(c.id), unpack(cjson.decode(c.fields)))
    if c.status == 'resolved' then
      redis.call('ZREM', P .. 'c:live', c.id)
    else
      redis.call('ZADD', P .. 'c:live', c.opened, c.id)
    end
  end
end
for _, r in ipairs(records) do
  for j = 0, r.count - 1 do
    local id = ARGV[r.first + 3 * j]
    if not skip[id] then
      redis.call('ZADD', key(id) .. r.suffix, ARGV[r.first + 3 * j + 1], ARGV[r.first + 3 * j + 2])
    end
  end
end
if mode ~= 'migrate' then
  redis.call('XADD', P .. 'events', 'MAXLEN', '~', kept, '*', 'e', event)
end
return {'ok', written}
"""

# ARGV: P, the cursor's score ('' for the first page), its id, page size.
# Returns {count, last id, last score, JSON, the raises counted (JSON)}:
# up to a page of conversations
# after the cursor, in (opened_at, id) order, as a JSON list of their hashes
# (each a list: field, value, ...). One string, not a nested reply of fifty
# thousand: the client parses it at C speed. A cursor, not a rank:
# conversations that resolve between two pages shift nothing.
LIVE_PAGE = r"""
local P, s, last, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local live = P .. 'c:live'
local start, bound = 0, nil
if s ~= '' then
  start = redis.call('ZCOUNT', live, '-inf', '(' .. s)
  bound = tonumber(s)
end
local out, last_id, last_score = {}, '', ''
while #out < limit do
  local chunk = redis.call('ZRANGE', live, start, start + limit - 1, 'WITHSCORES')
  if #chunk == 0 then break end
  for j = 1, #chunk, 2 do
    local id, score = chunk[j], chunk[j + 1]
    local seen = bound ~= nil and tonumber(score) == bound and id <= last
    if #out < limit and not seen then
      local row = redis.call('HGETALL', P .. 'c:' .. id)
      if #row > 0 then
        out[#out + 1] = row
        last_id, last_score = id, score
      end
    end
  end
  start = start + limit
end
local team = cjson.encode(redis.call('HGETALL', P .. 'c:team:raised'))
if #out == 0 then return {0, '', '', '[]', team} end
return {#out, last_id, last_score, cjson.encode(out), team}
"""

# ARGV: P, field count, fields, then key names (under P). Returns each
# key's values of those fields (false: absent).
READ_HASHES = r"""
local P, n = ARGV[1], tonumber(ARGV[2])
local fields = {unpack(ARGV, 3, 2 + n)}
local out = {}
for i = 3 + n, #ARGV do
  out[#out + 1] = redis.call('HMGET', P .. ARGV[i], unpack(fields))
end
return out
"""

# ARGV: P, budget, rank, then the operator queue's client ids. Returns
# {next client, next rank, thread, ...}: each client's messages in seq
# order, the first client's from that rank, as threads {client, seq, JSON,
# pending, ...} (pending '1' while no daemon has written it yet: kept for
# it, or taken and not settled), at most `budget` messages in all; where
# it stopped (the client's place among those asked for, 1 first, and the
# rank in its thread), or 0 when every thread was read to its end.
THREADS = r"""
local P, budget, rank = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local daemons = redis.call('SMEMBERS', P .. 'inflight_daemons')
local out = {0, 0}
local used = 0
for i = 4, #ARGV do
  local client, room = ARGV[i], budget - used
  if room <= 0 then
    out[1], out[2] = i - 3, rank
    return out
  end
  local conv = P .. 'conv:' .. client
  local seqs = redis.call('ZRANGE', conv, rank, rank + room - 1)
  local thread = {client}
  for _, seq in ipairs(seqs) do
    local json = redis.call('HGET', P .. 'messages', seq)
    if json then
      local pending = redis.call('ZSCORE', P .. 'undelivered:' .. client, seq) ~= false
      for _, daemon in ipairs(daemons) do
        if not pending then
          pending = redis.call('ZSCORE', P .. 'inflight:' .. daemon,
                               client .. '\t' .. seq) ~= false
        end
      end
      thread[#thread + 1] = seq
      thread[#thread + 1] = json
      thread[#thread + 1] = pending and '1' or '0'
    end
  end
  out[#out + 1] = thread
  used = used + #seqs
  if #seqs == room and redis.call('ZCARD', conv) > rank + room then
    out[1], out[2] = i - 3, rank + room
    return out
  end
  rank = 0
end
return out
"""


# ARGV: P, the lock's key (under P), the owner's token. Deletes the lock
# only if it is still the owner's (it may have expired and been taken).
UNLOCK = r"""
if redis.call('GET', ARGV[1] .. ARGV[2]) == ARGV[3] then
  return redis.call('DEL', ARGV[1] .. ARGV[2])
end
return 0
"""


class ScriptRunner:
    """
    Runs the scripts by their SHA1 (EVALSHA), sending the text again
    (EVAL) when Redis answers NOSCRIPT: after a restart, a SCRIPT FLUSH, or
    on another server behind the same address.
    """

    def __init__(self, link: RedisCalls) -> None:
        self._link = link

    def run(self, script: str, *args: Any) -> Deferred[Any]:
        sha = hashlib.sha1(script.encode("utf-8")).hexdigest()  # noqa: S324 - Redis's name
        words = [_word(a) for a in args]
        d = self._link.call("EVALSHA", sha, "0", *words)

        def unknown(failure: Failure) -> Deferred[Any] | Failure:
            if str(failure.value).startswith("NOSCRIPT"):
                return self._link.call("EVAL", script, "0", *words)
            return failure

        d.addErrback(unknown)
        return d


def _word(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _json(row: Any) -> str:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


def write_args(commit: Commit, mode: str, events_kept: int,
               news: Mapping[str, Any] | None = None) -> list[str]:
    """
    L{COMMIT}'s arguments after the prefix: C{commit}'s records flattened,
    and (mode C{commit}) the event every daemon reads: which conversations
    changed to which version, which messages and notes are new, and
    C{news}' fields (what other daemons carry out: L{wsdaemon.support.redis_feed}).
    News with C{team_raise} ({operator: [raises seen, load after,
    capacity (-1: not checked)]}) makes the script check and count them
    (not in the event: the script adds the counts after).
    """
    news = dict(news or {})
    team = news.pop("team_raise", None)
    args: list[str] = [mode, str(events_kept), "" if not team else _json(team),
                       str(len(commit.conversations)), str(len(commit.messages)),
                       str(len(commit.notes))]
    for conversation in commit.conversations:
        fields = [word for column, value in conversation_row(conversation).items()
                  if value is not None for word in (column, _word(value))]
        args += [conversation.conversation_id, str(conversation.version),
                 str(conversation.status), _word(conversation.opened_at), _json(fields)]
    for message in commit.messages:
        args += [message.conversation_id, str(message.seq), _json(message_row(message))]
    for note in commit.notes:
        args += [note.conversation_id, str(note.note_id), _json(note_row(note))]
    args.append(_json({
        **news,
        "type": "conversations",
        "conversations": [[c.conversation_id, c.version, str(c.status)]
                          for c in commit.conversations],
        "messages": [[m.conversation_id, m.seq] for m in commit.messages],
        "notes": [[n.conversation_id, n.note_id] for n in commit.notes],
    }))
    return args


_INTEGERS = frozenset({"version", "last_seq", "unanswered", "delivered_upto",
                       "visitor_read_upto", "unread_floor", "note_count", "notices"})
_REALS = frozenset({"created_at", "opened_at", "last_activity_at", "first_response_at",
                    "resolved_at", "waiting_since", "snoozed_until", "assigned_at"})


#: Each column and what turns its stored text back into its value (None: text).
_CONVERT: tuple[tuple[str, Callable[[str], Any] | None], ...] = tuple(
    (column, int if column in _INTEGERS else float if column in _REALS else None)
    for column in CONVERSATION_COLUMNS)


def conversation_from_hash(pairs: Iterable[Any]) -> Conversation:
    """
    @param pairs: a C{c:ID} hash as HGETALL gives it (field, value, ...).
    """
    fields = iter(pairs)
    stored = dict(zip(fields, fields, strict=True))
    row: dict[str, Any] = {}
    for column, convert in _CONVERT:
        value = stored.get(column)
        row[column] = value if value is None or convert is None else convert(value)
    return conversation_from_row(row)
