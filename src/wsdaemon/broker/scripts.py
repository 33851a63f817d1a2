"""
The operator queue's transitions, as Lua scripts run atomically by Redis.

Every decision that two daemons could race on (claim, release, answer,
lease expiry, fallback) is one script: Redis runs a script to its end before
anything else, so an item is claimed by one operator at a time and answered
exactly once however many daemons ask at the same instant. Each script also
appends what changed to the shared event stream in the same step, so a state
change and its announcement cannot part (a daemon dying between the two
would otherwise leave a reply stored but never delivered).

Keys, under the configured prefix C{P}:

    P item:ID           hash: one item (route, client_id, text, created_at,
                        state, operator, answered_at, fallback_sent,
                        lease_until, order, version)
    P open              zset: open items by arrival order
    P leases            zset: claimed items by lease end
    P fallbacks         zset: items by when their fallback is due
    P messages          hash: message seq -> MessageRecord JSON
    P conv / conv:C     zset: every message seq / one client's
    P undelivered:C     zset: seqs of outgoing messages for client C that
                        no daemon has taken yet
    P inflight:D        zset: "client<TAB>seq" taken by daemon D to write to
                        its connections (scored by D's clock when it asked),
                        until D says done (or gives it back); the sweep
                        gives back a dead daemon's entries (one not heard
                        for three heartbeats by a sweeper connected long
                        enough to hear it), and a live one's taken two
                        call timeouts before its last heartbeat (the taker
                        never heard back)
    P inflight_daemons  set: daemons that may have entries in inflight:D
    P daemons           hash: daemon id -> "operators expires_at"
    P settled           hash: daemon id -> its clock at its last heartbeat,
                        which settled everything it had written before
    P presence:D        hash: client id -> connections on daemon D
    P routes:D          hash: "client<TAB>route" -> connections on daemon D
    P events            stream: what changed, read by every daemon
    P sent:DIGEST       string: the item a client message made, for the
                        resend window (DIGEST: of its route, client, text),
                        so that a resend is not queued twice

Keys are built inside the scripts from the prefix (ARGV[1]): this is for one
Redis server (with replicas if you like), not Redis Cluster.
"""

from __future__ import annotations

__all__ = ["SCRIPTS"]

_PRELUDE = r"""
local P = ARGV[1]
local function item_key(id) return P .. 'item:' .. id end
local function now_arg(i) return tonumber(ARGV[i]) end

-- Read once per script run: every item event asks whether its client is
-- online, which needs the live daemons.
local live_cache = nil
local function live_daemons(now)
  if live_cache then return live_cache end
  local found = {}
  local entries = redis.call('HGETALL', P .. 'daemons')
  for i = 1, #entries, 2 do
    local count, expires = string.match(entries[i + 1], '^(%d+) ([%d%.]+)$')
    if expires and tonumber(expires) > now then
      found[entries[i]] = tonumber(count)
    else
      redis.call('HDEL', P .. 'daemons', entries[i])
      redis.call('HDEL', P .. 'settled', entries[i])
    end
  end
  live_cache = found
  return found
end

local function operators_online(now)
  local total = 0
  for _, count in pairs(live_daemons(now)) do total = total + count end
  return total
end

local function client_online(client, now)
  for daemon, _ in pairs(live_daemons(now)) do
    if redis.call('HEXISTS', P .. 'presence:' .. daemon, client) == 1 then return true end
  end
  return false
end

local function item_table(id, now)
  local fields = redis.call('HGETALL', item_key(id))
  if #fields == 0 then return nil end
  local t = {item_id = id}
  for i = 1, #fields, 2 do t[fields[i]] = fields[i + 1] end
  t.online = client_online(t.client_id, now)
  return t
end

local function emit(json)
  redis.call('XADD', P .. 'events', 'MAXLEN', '~', 100000, '*', 'e', json)
end

local function emit_item(kind, id, now, why)
  local t = item_table(id, now)
  emit(cjson.encode({type = kind, item = t, why = why}))
  return t
end

local function bump(id)
  redis.call('HINCRBY', item_key(id), 'version', 1)
end

-- A message is taken by one daemon to write to its client's connections
-- there: never written by two daemons, never lost if the taker dies.
local function take(daemon, client, seq, now)
  redis.call('ZADD', P .. 'inflight:' .. daemon, now, client .. '\t' .. seq)
  redis.call('SADD', P .. 'inflight_daemons', daemon)
end

-- Store an outgoing message for a client. mode: 'keep' (until a daemon
-- takes it), 'take' (taken at once by daemon `taker`, whose client is
-- connected there), 'done' (already written: a broadcast's transcript line).
local function store_out(client, json, mode, taker, now)
  local seq = redis.call('INCR', P .. 'msgseq')
  redis.call('HSET', P .. 'messages', seq, json)
  redis.call('ZADD', P .. 'conv:' .. client, seq, seq)
  redis.call('ZADD', P .. 'conv', seq, seq)
  if mode == 'take' then
    take(taker, client, seq, now)
    emit('{"type":"deliver","seq":' .. seq .. ',"taken":' .. cjson.encode(taker) ..
         ',"message":' .. json .. '}')
  elseif mode == 'keep' then
    redis.call('ZADD', P .. 'undelivered:' .. client, seq, seq)
    emit('{"type":"deliver","seq":' .. seq .. ',"message":' .. json .. '}')
  end
  return seq
end

-- What daemon wrote (written '1') or found nobody to write to ('0': given
-- back): client, seq, written triples in ARGV from index `first`.
local function settle(daemon, first)
  for i = first, #ARGV, 3 do
    local client, seq, written = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if redis.call('ZREM', P .. 'inflight:' .. daemon, client .. '\t' .. seq) == 1
        and written == '0' then
      redis.call('ZADD', P .. 'undelivered:' .. client, seq, seq)
    end
  end
end

-- An item claimed by someone else whose lease still runs: the refusal.
local function held_by_another(id, operator, now)
  local k = item_key(id)
  if redis.call('HGET', k, 'state') ~= 'claimed' then return nil end
  local holder = redis.call('HGET', k, 'operator')
  if holder ~= operator and tonumber(redis.call('HGET', k, 'lease_until')) > now then
    return {'err', 'item ' .. id .. ' is claimed by ' .. holder}
  end
  return nil
end

-- Open items per client and per route, for the caps (kept by enqueue and
-- by every step that closes an item).
local function count_open(client, route, delta)
  if redis.call('HINCRBY', P .. 'open_by_client', client, delta) <= 0 then
    redis.call('HDEL', P .. 'open_by_client', client)
  end
  if redis.call('HINCRBY', P .. 'open_by_route', route, delta) <= 0 then
    redis.call('HDEL', P .. 'open_by_route', route)
  end
end

local function closed(id)
  local k = item_key(id)
  count_open(redis.call('HGET', k, 'client_id'), redis.call('HGET', k, 'route'), -1)
end

local function closed_error(id)
  local state = redis.call('HGET', item_key(id), 'state')
  if state then return {'err', 'item ' .. id .. ' is ' .. state .. ': no longer open'} end
  return {'err', 'no open item ' .. id .. ' (answered, expired or unknown)'}
end
"""

# ARGV: P, id, route, client, text, now, fallback_after, when_offline, in-message JSON,
# max open per client, per route, in all (0: no cap), digest ('' for none), resend window
# (seconds), '1' if the first send's item counts even closed (its sender was told it could
# not be confirmed). Returns {'ok', item, position, fallback due now}, {'resent', the item
# the first send made, its position (0: closed), 0} or {'refused', which cap, its value}.
_ENQUEUE = r"""
local id, route, client, text = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now, fallback_after, when_offline = now_arg(6), now_arg(7), ARGV[8]
-- The same message again within the window, while the first is open (or
-- after its sender could not be told whether the first one was stored):
-- the first one's item, nothing stored.
local sent = nil
if ARGV[13] ~= '' then sent = P .. 'sent:' .. ARGV[13] end
if sent then
  local first = redis.call('GET', sent)
  if first then
    local t = item_table(first, now)
    if t and (ARGV[15] == '1' or t.state == 'queued' or t.state == 'claimed') then
      local rank = redis.call('ZRANK', P .. 'open', first)
      return {'resent', cjson.encode(t), rank and rank + 1 or 0, 0}
    end
  end
end
local caps = {
  {'client', tonumber(ARGV[10]), function()
    return tonumber(redis.call('HGET', P .. 'open_by_client', client) or '0') end},
  {'route', tonumber(ARGV[11]), function()
    return tonumber(redis.call('HGET', P .. 'open_by_route', route) or '0') end},
  {'total', tonumber(ARGV[12]), function() return redis.call('ZCARD', P .. 'open') end},
}
for _, cap in ipairs(caps) do
  if cap[2] > 0 and cap[3]() >= cap[2] then return {'refused', cap[1], cap[2]} end
end
count_open(client, route, 1)
local order = redis.call('INCR', P .. 'itemseq')
redis.call('HSET', item_key(id), 'route', route, 'client_id', client, 'text', text,
           'created_at', ARGV[6], 'state', 'queued', 'operator', '', 'answered_at', '',
           'fallback_sent', '0', 'lease_until', '0', 'order', order, 'version', 1)
redis.call('ZADD', P .. 'open', order, id)
local seq = redis.call('INCR', P .. 'msgseq')
redis.call('HSET', P .. 'messages', seq, ARGV[9])
redis.call('ZADD', P .. 'conv:' .. client, seq, seq)
redis.call('ZADD', P .. 'conv', seq, seq)
local due = nil
if when_offline == '1' and operators_online(now) == 0 then
  due = now
elseif fallback_after > 0 then
  due = now + fallback_after
end
if due then redis.call('ZADD', P .. 'fallbacks', due, id) end
local position = redis.call('ZRANK', P .. 'open', id) + 1
if sent then redis.call('SET', sent, id, 'EX', math.ceil(tonumber(ARGV[14]))) end
local t = emit_item('item', id, now, 'queued')
return {'ok', cjson.encode(t), position, due == now and 1 or 0}
"""

# ARGV: P, id, operator, now, lease
_CLAIM = r"""
local id, operator, now, lease = ARGV[2], ARGV[3], now_arg(4), now_arg(5)
local k = item_key(id)
local state = redis.call('HGET', k, 'state')
if state ~= 'queued' and state ~= 'claimed' then return closed_error(id) end
local refused = held_by_another(id, operator, now)
if refused then return refused end
local lease_until = now + lease
redis.call('HSET', k, 'state', 'claimed', 'operator', operator, 'lease_until', lease_until)
redis.call('ZADD', P .. 'leases', lease_until, id)
bump(id)
return {'ok', cjson.encode(emit_item('updated', id, now, 'claimed by ' .. operator))}
"""

# ARGV: P, id, operator, now
_RELEASE = r"""
local id, operator, now = ARGV[2], ARGV[3], now_arg(4)
local k = item_key(id)
local state = redis.call('HGET', k, 'state')
if state ~= 'queued' and state ~= 'claimed' then return closed_error(id) end
if state ~= 'claimed' or redis.call('HGET', k, 'operator') ~= operator then
  return {'err', 'item ' .. id .. ' is not claimed by you'}
end
redis.call('HSET', k, 'state', 'queued', 'operator', '', 'lease_until', '0')
redis.call('ZREM', P .. 'leases', id)
bump(id)
return {'ok', cjson.encode(emit_item('updated', id, now, operator .. ' released it'))}
"""

# ARGV: P, id, operator, now, reply body, taker (this daemon if the client
# is connected here, else '')
_ANSWER = r"""
local id, operator, now, body, taker = ARGV[2], ARGV[3], now_arg(4), ARGV[5], ARGV[6]
local k = item_key(id)
local state = redis.call('HGET', k, 'state')
if state ~= 'queued' and state ~= 'claimed' then return closed_error(id) end
local refused = held_by_another(id, operator, now)
if refused then return refused end
redis.call('HSET', k, 'state', 'answered', 'operator', operator, 'answered_at', ARGV[4],
           'lease_until', '0')
for _, set in ipairs({'open', 'leases', 'fallbacks'}) do redis.call('ZREM', P .. set, id) end
closed(id)
bump(id)
local client = redis.call('HGET', k, 'client_id')
local reply = cjson.encode({client_id = client, route = redis.call('HGET', k, 'route'),
  direction = 'out', sender = operator, body = body, at = now, item_id = id})
local t = emit_item('updated', id, now, 'answered by ' .. operator)
local seq = store_out(client, reply, taker ~= '' and 'take' or 'keep', taker, now)
return {'ok', cjson.encode(t), seq}
"""

# ARGV: P, now, keep_after_fallback, fallback message, limit, grace (seconds: a live
# daemon's message taken more than this before its last heartbeat, and not settled, is
# given back), '1' if the sweeper may take a daemon whose heartbeat ran out for a dead one
# (its own link has been up long enough for every live daemon to have heartbeated)
_SWEEP = r"""
local now, keep, text, limit = now_arg(2), ARGV[3], ARGV[4], tonumber(ARGV[5])
local grace, judge_gone = tonumber(ARGV[6]), ARGV[7] == '1'
local released, fallbacks = 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', P .. 'leases', id)
  local k = item_key(id)
  if redis.call('HGET', k, 'state') == 'claimed'
      and tonumber(redis.call('HGET', k, 'lease_until')) <= now then
    redis.call('HSET', k, 'state', 'queued', 'operator', '', 'lease_until', '0')
    bump(id)
    emit_item('updated', id, now, 'its lease expired')
    released = released + 1
  end
end
local due = redis.call('ZRANGEBYSCORE', P .. 'fallbacks', '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  redis.call('ZREM', P .. 'fallbacks', id)
  local k = item_key(id)
  local state = redis.call('HGET', k, 'state')
  local open = state == 'queued' or state == 'claimed'
  if open and redis.call('HGET', k, 'fallback_sent') == '0' then
    redis.call('HSET', k, 'fallback_sent', '1')
    if keep == '0' then
      redis.call('HSET', k, 'state', 'expired', 'lease_until', '0')
      redis.call('ZREM', P .. 'open', id)
      redis.call('ZREM', P .. 'leases', id)
      closed(id)
    end
    bump(id)
    local client = redis.call('HGET', k, 'client_id')
    emit_item('updated', id, now, 'fallback sent')
    store_out(client, cjson.encode({client_id = client, route = redis.call('HGET', k, 'route'),
      direction = 'out', sender = 'system', body = text, at = now, item_id = id}), 'keep', '', now)
    fallbacks = fallbacks + 1
  end
end
-- Taken but never settled: the taker died, or never heard back from the
-- script that took it for it (Redis went away in between). Give it back.
-- A live taker's heartbeat settles everything it wrote before it, and it
-- writes what it took within a call timeout of asking or never: what it
-- took well before that heartbeat and is still here, it never wrote. (Not
-- "taken long ago by our clock": a taker whose settlement waited for Redis
-- to come back would then write the same reply twice.) A daemon whose
-- heartbeat ran out is dead only for a sweeper that has been connected long
-- enough to have heard it were it alive: after an outage every heartbeat
-- has run out, and the first sweep would give back what live daemons wrote.
local live = live_daemons(now)
for _, daemon in ipairs(redis.call('SMEMBERS', P .. 'inflight_daemons')) do
  local key = P .. 'inflight:' .. daemon
  local upto = nil
  if not live[daemon] then
    if judge_gone then upto = '+inf' end
  else
    local settled = redis.call('HGET', P .. 'settled', daemon)
    if settled then upto = '(' .. (tonumber(settled) - grace) end
  end
  for _, entry in ipairs(upto and redis.call('ZRANGEBYSCORE', key, '-inf', upto) or {}) do
    redis.call('ZREM', key, entry)
    local client, seq = string.match(entry, '^(.*)\t(%d+)$')
    local json = redis.call('HGET', P .. 'messages', seq)
    if client and json then
      redis.call('ZADD', P .. 'undelivered:' .. client, seq, seq)
      emit('{"type":"deliver","seq":' .. seq .. ',"message":' .. json .. '}')
    end
  end
  if redis.call('ZCARD', key) == 0 then
    redis.call('SREM', P .. 'inflight_daemons', daemon)
  end
end
return {released, fallbacks}
"""

# ARGV: P, client, message JSON, mode (keep, take, done), taker, now
_STORE_MESSAGE = r"""
return store_out(ARGV[2], ARGV[3], ARGV[4], ARGV[5], now_arg(6))
"""

# ARGV: P, daemon, now, then client, seq pairs ('*' as seq: everything kept
# for that client). Returns client, seq, JSON triples of what this daemon took.
_TAKE = r"""
local daemon, now = ARGV[2], now_arg(3)
local out = {}
for i = 4, #ARGV, 2 do
  local client, wanted = ARGV[i], ARGV[i + 1]
  local key = P .. 'undelivered:' .. client
  local seqs = {wanted}
  if wanted == '*' then seqs = redis.call('ZRANGE', key, 0, -1) end
  for _, seq in ipairs(seqs) do
    if redis.call('ZREM', key, seq) == 1 then
      local json = redis.call('HGET', P .. 'messages', seq)
      if json then
        take(daemon, client, seq, now)
        out[#out + 1] = client
        out[#out + 1] = seq
        out[#out + 1] = json
      end
    end
  end
end
return out
"""

# ARGV: P, daemon, then client, seq, written ('1': done; '0': give it back,
# nobody was there to write it to) triples.
_SETTLE = r"""
settle(ARGV[2], 3)
return 1
"""

# ARGV: P, client ('' for every client), before seq ('' for none), limit (0: all)
_TRANSCRIPT = r"""
local key = P .. 'conv'
if ARGV[2] ~= '' then key = key .. ':' .. ARGV[2] end
local before, limit = ARGV[3], tonumber(ARGV[4])
local seqs
if limit > 0 then
  -- The newest `limit` before `before`, oldest first.
  seqs = redis.call('ZREVRANGEBYSCORE', key, before == '' and '+inf' or '(' .. before, '-inf',
                    'LIMIT', 0, limit)
  local n = #seqs
  for i = 1, math.floor(n / 2) do seqs[i], seqs[n - i + 1] = seqs[n - i + 1], seqs[i] end
else
  seqs = redis.call('ZRANGE', key, 0, -1)
end
local out = {}
for _, seq in ipairs(seqs) do
  local json = redis.call('HGET', P .. 'messages', seq)
  if json then
    local client = cjson.decode(json).client_id
    local pending = redis.call('ZSCORE', P .. 'undelivered:' .. client, seq)
    out[#out + 1] = seq
    out[#out + 1] = json
    out[#out + 1] = pending and '0' or '1'
  end
end
return out
"""

# ARGV: P, now
_OPEN_ITEMS = r"""
local now = now_arg(2)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'open', 0, -1)) do
  local t = item_table(id, now)
  if t then out[#out + 1] = t end
end
if #out == 0 then return '[]' end
return cjson.encode(out)
"""

# ARGV: P, daemon, operators here, now, ttl, then the settlements it has not sent yet
# (as for settle). Returns operators online in all.
_HEARTBEAT = r"""
local daemon, now, ttl = ARGV[2], now_arg(4), now_arg(5)
redis.call('HSET', P .. 'daemons', daemon, ARGV[3] .. ' ' .. string.format('%.3f', now + ttl))
-- In the same step: everything this daemon wrote before `now` is settled.
settle(daemon, 6)
redis.call('HSET', P .. 'settled', daemon, ARGV[4])
for _, kind in ipairs({'presence:', 'routes:'}) do
  redis.call('EXPIRE', P .. kind .. daemon, math.ceil(ttl) + 1)
end
return operators_online(now)
"""

# ARGV: P, daemon, ttl, then client, route, delta triples.
_PRESENCE = r"""
local daemon, ttl = ARGV[2], math.ceil(tonumber(ARGV[3])) + 1
local clients, routes = P .. 'presence:' .. daemon, P .. 'routes:' .. daemon
for i = 4, #ARGV, 3 do
  local client, route, delta = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if redis.call('HINCRBY', clients, client, delta) <= 0 then redis.call('HDEL', clients, client) end
  local pair = client .. '\t' .. route
  if redis.call('HINCRBY', routes, pair, delta) <= 0 then redis.call('HDEL', routes, pair) end
end
redis.call('EXPIRE', clients, ttl)
redis.call('EXPIRE', routes, ttl)
return 1
"""

# ARGV: P, daemon, ttl, then client, route, count triples: replace this daemon's presence.
_PRESENCE_RESET = r"""
local daemon, ttl = ARGV[2], math.ceil(tonumber(ARGV[3])) + 1
local clients, routes = P .. 'presence:' .. daemon, P .. 'routes:' .. daemon
redis.call('DEL', clients, routes)
for i = 4, #ARGV, 3 do
  local client, route, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  redis.call('HINCRBY', clients, client, count)
  redis.call('HINCRBY', routes, client .. '\t' .. route, count)
end
redis.call('EXPIRE', clients, ttl)
redis.call('EXPIRE', routes, ttl)
return 1
"""

# ARGV: P, now. Returns "client<TAB>route", count pairs over every live daemon.
_CLIENTS = r"""
local now = now_arg(2)
local merged = {}
for daemon, _ in pairs(live_daemons(now)) do
  local entries = redis.call('HGETALL', P .. 'routes:' .. daemon)
  for i = 1, #entries, 2 do
    merged[entries[i]] = (merged[entries[i]] or 0) + tonumber(entries[i + 1])
  end
end
local out = {}
for pair, count in pairs(merged) do
  out[#out + 1] = pair
  out[#out + 1] = tostring(count)
end
return out
"""

SCRIPTS: dict[str, str] = {
    name: _PRELUDE + body for name, body in {
        "enqueue": _ENQUEUE, "claim": _CLAIM, "release": _RELEASE, "answer": _ANSWER,
        "sweep": _SWEEP, "store_message": _STORE_MESSAGE, "take": _TAKE, "settle": _SETTLE,
        "transcript": _TRANSCRIPT, "open_items": _OPEN_ITEMS, "heartbeat": _HEARTBEAT,
        "presence": _PRESENCE, "presence_reset": _PRESENCE_RESET, "clients": _CLIENTS,
    }.items()
}
