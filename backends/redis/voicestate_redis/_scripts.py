"""The Lua scripts: every write of a call is one script, so its checks and its writes are atomic.

Each script gets the call's keys, which share one hash tag: ``{call id}`` on one server; on a
Cluster ``{b<n>}``, the call's index bucket, which the listing index keys (``KEYS[6]``,
``KEYS[7]``) share too, so every script runs on one node (README.md). On a Cluster the
writers' ``PUBLISH`` is replaced by ``SPUBLISH`` (sharded pub/sub).

Values the writers set are stored as the strings the client sent (Python's ``repr`` of a
float round-trips exactly; Lua's ``tostring`` would not), compared with ``tonumber``.

KEYS, for every script: 1 metadata hash, 2 event list, 3 id -> seq hash, 4 snapshot hash,
5 tombstone string (the first event's chain value; it outlives the call by the tombstone TTL).
"""

from __future__ import annotations

PRELUDE = r"""
local M, E, I, S, X = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

-- The call exists and has not expired by the writer's clock (an expired one is purged now).
local function live(now)
  local v = redis.call('HMGET', M, 'seq', 'expires_at')
  if not v[1] then return false end
  if v[2] and tonumber(v[2]) <= now then
    redis.call('DEL', M, E, I, S)
    return false
  end
  return true
end
"""

# The writers' part (APPEND, WRITE_AT): only what they use, as every function defined here
# costs its closure on every run.
WRITER = r"""
local M, E, I, S, X = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

-- The writers' one read of the metadata: nil if the call does not exist or has expired by
-- the writer's clock (an expired one is purged now). tomb_ms: the tombstone TTL the keys'
-- expiry was last set with (absent: no expiry set), so that a write that changes neither
-- skips the five PEXPIREATs.
local function read_meta(now)
  local v = redis.call('HMGET', M, 'seq', 'expires_at', 'head', 'epoch', 'ended', 'lease_until',
                       'owner', 'pending_to', 'active_at', 'tomb_ms')
  if not v[1] then return nil end
  if v[2] and tonumber(v[2]) <= now then
    redis.call('DEL', M, E, I, S)
    return nil
  end
  return {seq = v[1], expires = v[2] or nil, head = v[3], epoch = v[4], ended = v[5],
          lease = v[6] or '0', owner = v[7] or nil, pending = v[8] or nil, active = v[9] or '0',
          tomb = v[10] or nil}
end

-- RPUSH / HSET in chunks: unpack() of a very long list would overflow Lua's C stack.
local function chunked(cmd, key, items, first, last)
  local i = first or 1
  last = last or #items
  while i <= last do
    local j = math.min(i + 3999, last)
    redis.call(cmd, key, unpack(items, i, j))
    i = j + 1
  end
end

-- The metadata after a write of events ending at (seq, epoch, head); old: read_meta's table
-- (nil: the call is created now); u: the update or nil. Only fields that are present are
-- deleted, and the keys' expiry is set only when it changes. Returns what the writer
-- publishes: the new metadata (but started_at and tenant, which never change), so a
-- watcher needs no read to learn it.
local function store_meta(old, seq, epoch, head, final, u, tomb_ms)
  local created = old == nil
  old = old or {}
  local ended = final or old.ended == '1'
  local owner, pending, lease, active, expires
  if u then
    owner, pending, lease, active, expires = u.owner, u.pending, u.lease, u.at, u.expires
    -- within one epoch the lease only grows
    if not created and tonumber(old.epoch) == tonumber(epoch) and tonumber(old.lease) > tonumber(lease) then
      lease = old.lease
    end
  elseif created then
    owner, pending, lease, active, expires = nil, nil, '0', '0', nil
  else
    owner, pending, lease, active, expires = old.owner, old.pending, old.lease, old.active, old.expires
  end
  if ended then owner, pending, lease = nil, nil, '0' end
  local f = {'seq', seq, 'epoch', epoch, 'head', head, 'ended', ended and '1' or '0',
             'lease_until', lease, 'active_at', active}
  local drop = {}
  if created then
    f[#f + 1] = 'started_at'; f[#f + 1] = (u and u.at) or '0'
    if u and u.tenant then f[#f + 1] = 'tenant'; f[#f + 1] = u.tenant end
  end
  if owner then f[#f + 1] = 'owner'; f[#f + 1] = owner elseif old.owner then drop[#drop + 1] = 'owner' end
  if pending then
    f[#f + 1] = 'pending_to'; f[#f + 1] = pending
  elseif old.pending then
    drop[#drop + 1] = 'pending_to'
  end
  local expiry = created or expires ~= old.expires or (expires and tomb_ms ~= old.tomb)
  if expiry then
    if expires then
      f[#f + 1] = 'expires_at'; f[#f + 1] = expires
      f[#f + 1] = 'tomb_ms'; f[#f + 1] = tomb_ms
    else
      if old.expires then drop[#drop + 1] = 'expires_at' end
      if old.tomb then drop[#drop + 1] = 'tomb_ms' end
    end
  end
  if #drop > 0 then redis.call('HDEL', M, unpack(drop)) end
  redis.call('HSET', M, unpack(f))
  local note = cmsgpack.pack({tostring(seq), tostring(epoch), head, ended and '1' or '0', tostring(lease),
                              tostring(active), owner or '', pending or '', expires or ''})
  if not expiry then return note end
  if expires then
    local at = math.ceil(tonumber(expires) * 1000)
    local ms = string.format('%.0f', at)
    redis.call('PEXPIREAT', M, ms)
    redis.call('PEXPIREAT', E, ms)
    redis.call('PEXPIREAT', I, ms)
    redis.call('PEXPIREAT', S, ms)
    redis.call('PEXPIREAT', X, string.format('%.0f', at + tonumber(tomb_ms)))
  else
    redis.call('PERSIST', M)
    redis.call('PERSIST', E)
    redis.call('PERSIST', I)
    redis.call('PERSIST', S)
    redis.call('PERSIST', X)
  end
  return note
end

local function index(call_id)
  redis.call('ZADD', KEYS[6], 0, call_id)
  if KEYS[7] then redis.call('ZADD', KEYS[7], 0, call_id) end
end
"""

# ARGV[1]: a msgpack array (Redis's cmsgpack; strings as raw, absent values as false):
# 1 call id, 2 channel, 3 now (a float), 4 tombstone ms, 5 expected seq, 6 expected epoch,
# 7 expected head, 8 lapsed_by, 9 last epoch, 10 last chain, 11 any final, 12 first chain,
# 13 an update?, 14..19 the update (owner, pending_to, lease_until, expires_at, at, tenant),
# 20.. the n event ids. ARGV[2 .. n + 1]: the n list elements. Replies 1 when appended.
# One event (the usual append) is checked and indexed with one HSETNX, undone on a conflict.
APPEND = (
    WRITER
    + r"""
local h = cmsgpack.unpack(ARGV[1])
local exp_seq, tomb_ms, n = h[5], h[4], #ARGV - 1
local u = nil
if h[13] then
  u = {owner = h[14] or nil, pending = h[15] or nil, lease = h[16], expires = h[17] or nil, at = h[18],
       tenant = h[19] or nil}
end
local old = read_meta(h[3])
local indexed = false
if old then
  -- 1. an id the call already holds: report its seq, write nothing
  local dups = {}
  if n == 1 then
    if redis.call('HSETNX', I, h[20], exp_seq + 1) == 0 then
      dups = {h[20], redis.call('HGET', I, h[20])}
    else
      indexed = true
    end
  else
    local i = 20
    while i <= 19 + n do
      local j = math.min(i + 3999, 19 + n)
      local got = redis.call('HMGET', I, unpack(h, i, j))
      for k = 1, j - i + 1 do
        if got[k] then dups[#dups + 1] = h[i + k - 1]; dups[#dups + 1] = got[k] end
      end
      i = j + 1
    end
  end
  if #dups > 0 then return {'duplicate', dups} end
  -- 2-5. seq, head, epoch and not ended, lapsed lease
  local eh, ee, lapsed = h[7], h[6], h[8]
  if tonumber(old.seq) ~= exp_seq
     or (eh and old.head ~= eh)
     or (ee and (tonumber(old.epoch) ~= ee or old.ended == '1'))
     or (u and lapsed and tonumber(old.lease) > tonumber(lapsed)) then
    if indexed then redis.call('HDEL', I, h[20]) end
    return {'conflict', redis.call('HGETALL', M)}
  end
else
  if exp_seq ~= 0 then return {'conflict', false} end
  redis.call('DEL', E, I, S)
  redis.call('SET', X, h[12])
  index(h[1])
end
chunked('RPUSH', E, ARGV, 2, n + 1)
if not indexed then
  local idseq = {}
  for k = 1, n do
    idseq[2 * k - 1] = h[19 + k]
    idseq[2 * k] = exp_seq + k
  end
  chunked('HSET', I, idseq)
end
redis.call('PUBLISH', h[2], store_meta(old, exp_seq + n, h[9], h[10], h[11], u, tomb_ms))
return 1
"""
)

# ARGV: 1 call id, 2 channel, 3 now, 4 tombstone ms, 5..11 the update (flag, then owner,
# pending_to, lease_until, expires_at, at, tenant as '' for absent or '=' + value), 12 n,
# then n sextets (seq, id, chain, epoch, final, element).
WRITE_AT = (
    WRITER
    + r"""
local function opt(a)
  if a == '' then return nil end
  return string.sub(a, 2)
end
local now, tomb_ms, n = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[12])
local old = read_meta(now)
local function ev(k, j) return ARGV[12 + 6 * (k - 1) + j] end
if n == 0 then
  if old then return tonumber(old.seq) end
  return 0
end
local hw = 0
if old then
  hw = tonumber(old.seq)
  for k = 1, n do
    local s = tonumber(ev(k, 1))
    if s <= hw then
      -- the first event that overlaps: another chain value there means a stale copy
      local el = redis.call('LINDEX', E, s - 1)
      if (not el) or string.sub(el, 2, 1 + string.byte(el, 1)) ~= ev(k, 3) then
        redis.call('DEL', M, E, I, S)
        redis.call('PEXPIRE', X, tomb_ms)
        old, hw = nil, 0
      end
      break
    end
  end
end
if not old then
  if tonumber(ev(1, 1)) ~= 1 then return 0 end
  local t = redis.call('GET', X)
  if t and t == ev(1, 3) then return 0 end  -- a late write of a deleted call
  redis.call('DEL', E, I, S)
  redis.call('SET', X, ev(1, 3))
  index(ARGV[1])
end
local els, idseq = {}, {}
local last, final = 0, false
for k = 1, n do
  local s = tonumber(ev(k, 1))
  if s > hw + #els then
    if s ~= hw + #els + 1 then break end
    els[#els + 1] = ev(k, 6)
    idseq[#idseq + 1] = ev(k, 2)
    idseq[#idseq + 1] = s
    last = k
    if ev(k, 5) == '1' then final = true end
  end
end
if #els == 0 then return hw end
local u = nil
if ARGV[5] == '1' then
  u = {owner = opt(ARGV[6]), pending = opt(ARGV[7]), lease = ARGV[8], expires = opt(ARGV[9]), at = ARGV[10],
       tenant = opt(ARGV[11])}
end
chunked('RPUSH', E, els)
chunked('HSET', I, idseq)
redis.call('PUBLISH', ARGV[2], store_meta(old, hw + #els, ev(last, 4), ev(last, 3), final, u, tomb_ms))
return hw + #els
"""
)

# ARGV: 1 now, 2 epoch, 3 lease_until
RENEW = (
    PRELUDE
    + r"""
if not live(tonumber(ARGV[1])) then return false end
local v = redis.call('HMGET', M, 'epoch', 'ended')
if tonumber(v[1]) == tonumber(ARGV[2]) and v[2] ~= '1' then
  redis.call('HSET', M, 'lease_until', ARGV[3])
end
return redis.call('HGETALL', M)
"""
)

# ARGV: 1 now, 2 from (0-based), 3 to (0-based, -1: the end)
LOAD = (
    PRELUDE
    + r"""
if not live(tonumber(ARGV[1])) then return {} end
return redis.call('LRANGE', E, ARGV[2], ARGV[3])
"""
)

# ARGV: 1 now, 2 tombstone ms, 3 channel
DELETE = (
    PRELUDE
    + r"""
if not live(tonumber(ARGV[1])) then return 0 end
redis.call('DEL', M, E, I, S)
redis.call('PEXPIRE', X, ARGV[2])
redis.call('PUBLISH', ARGV[3], '0')
return 1
"""
)

# ARGV: 1 now, 2 seq, 3 chain, 4 data
PUT_SNAPSHOT = (
    PRELUDE
    + r"""
if not live(tonumber(ARGV[1])) then return 0 end
local cur = redis.call('HGET', S, 'seq')
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', S, 'seq', ARGV[2], 'chain', ARGV[3], 'data', ARGV[4])
local t = redis.call('PEXPIRETIME', M)
if t > 0 then redis.call('PEXPIREAT', S, t) else redis.call('PERSIST', S) end
return 1
"""
)

# ARGV: 1 now
GET_SNAPSHOT = (
    PRELUDE
    + r"""
if not live(tonumber(ARGV[1])) then return false end
local v = redis.call('HMGET', S, 'seq', 'chain', 'data')
if not v[1] then return false end
return v
"""
)

# KEYS: pairs (index, metadata hash); ARGV: the call ids. Drops the ids whose call is gone.
PRUNE = r"""
local removed = 0
for k = 1, #ARGV do
  if redis.call('EXISTS', KEYS[2 * k]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[2 * k - 1], ARGV[k])
  end
end
return removed
"""
