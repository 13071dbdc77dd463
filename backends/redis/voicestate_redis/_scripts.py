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

local function opt(a)
  if a == '' then return nil end
  return string.sub(a, 2)
end

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

-- RPUSH / HSET in chunks: unpack() of a very long list would overflow Lua's C stack.
local function chunked(cmd, key, items)
  local i = 1
  while i <= #items do
    local last = math.min(i + 3999, #items)
    redis.call(cmd, key, unpack(items, i, last))
    i = last + 1
  end
end

local function ms(t)
  return string.format('%.0f', math.ceil(tonumber(t) * 1000))
end

-- The metadata after a write of events ending at (seq, epoch, head); u: the update or nil.
local function store_meta(created, seq, epoch, head, final, u, tomb_ms)
  local old = {}
  if not created then
    local v = redis.call('HMGET', M, 'epoch', 'ended', 'owner', 'pending_to', 'lease_until',
                         'active_at', 'expires_at')
    old = {epoch = v[1], ended = v[2], owner = v[3] or nil, pending = v[4] or nil,
           lease = v[5] or '0', active = v[6] or '0', expires = v[7] or nil}
  end
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
  if owner then f[#f + 1] = 'owner'; f[#f + 1] = owner else drop[#drop + 1] = 'owner' end
  if pending then f[#f + 1] = 'pending_to'; f[#f + 1] = pending else drop[#drop + 1] = 'pending_to' end
  if expires then f[#f + 1] = 'expires_at'; f[#f + 1] = expires else drop[#drop + 1] = 'expires_at' end
  if not created and #drop > 0 then redis.call('HDEL', M, unpack(drop)) end
  redis.call('HSET', M, unpack(f))
  if expires then
    local at = ms(expires)
    redis.call('PEXPIREAT', M, at)
    redis.call('PEXPIREAT', E, at)
    redis.call('PEXPIREAT', I, at)
    redis.call('PEXPIREAT', S, at)
    redis.call('PEXPIREAT', X, string.format('%.0f', tonumber(at) + tonumber(tomb_ms)))
  else
    redis.call('PERSIST', M)
    redis.call('PERSIST', E)
    redis.call('PERSIST', I)
    redis.call('PERSIST', S)
    redis.call('PERSIST', X)
  end
end

local function update_from(base)
  if ARGV[base] ~= '1' then return nil end
  return {owner = opt(ARGV[base + 1]), pending = opt(ARGV[base + 2]), lease = ARGV[base + 3],
          expires = opt(ARGV[base + 4]), at = ARGV[base + 5], tenant = opt(ARGV[base + 6])}
end

local function index(call_id)
  redis.call('ZADD', KEYS[6], 0, call_id)
  if KEYS[7] then redis.call('ZADD', KEYS[7], 0, call_id) end
end
"""

# ARGV: 1 call id, 2 channel, 3 now, 4 tombstone ms, 5 expected seq, 6 expected epoch (opt),
# 7 expected head (opt), 8..14 the update (flag, owner, pending_to, lease_until, expires_at, at,
# tenant), 15 lapsed_by (opt), 16 last epoch, 17 last chain, 18 any final, 19 first chain,
# 20 n, then n pairs (event id, element).
APPEND = (
    PRELUDE
    + r"""
local now, tomb_ms, n = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[20])
local exp_seq = tonumber(ARGV[5])
local exists = live(now)
local ids = {}
for k = 1, n do ids[k] = ARGV[19 + 2 * k] end
if exists then
  -- 1. an id the call already holds: report its seq, write nothing
  local got = redis.call('HMGET', I, unpack(ids))
  local dups = {}
  for k = 1, n do
    if got[k] then dups[#dups + 1] = ids[k]; dups[#dups + 1] = got[k] end
  end
  if #dups > 0 then return {'duplicate', dups} end
  -- 2-5. seq, head, epoch and not ended, lapsed lease
  local v = redis.call('HMGET', M, 'seq', 'head', 'epoch', 'ended', 'lease_until')
  local eh, ee, lapsed = opt(ARGV[7]), opt(ARGV[6]), opt(ARGV[15])
  if tonumber(v[1]) ~= exp_seq
     or (eh and v[2] ~= eh)
     or (ee and (tonumber(v[3]) ~= tonumber(ee) or v[4] == '1'))
     or (ARGV[8] == '1' and lapsed and tonumber(v[5] or '0') > tonumber(lapsed)) then
    return {'conflict', redis.call('HGETALL', M)}
  end
else
  if exp_seq ~= 0 then return {'conflict', false} end
  redis.call('DEL', E, I, S)
  redis.call('SET', X, ARGV[19])
  index(ARGV[1])
end
local els, idseq = {}, {}
for k = 1, n do
  els[k] = ARGV[20 + 2 * k]
  idseq[#idseq + 1] = ids[k]
  idseq[#idseq + 1] = exp_seq + k
end
chunked('RPUSH', E, els)
chunked('HSET', I, idseq)
store_meta(not exists, exp_seq + n, ARGV[16], ARGV[17], ARGV[18] == '1', update_from(8), tomb_ms)
redis.call('PUBLISH', ARGV[2], exp_seq + n)
return {'ok'}
"""
)

# ARGV: 1 call id, 2 channel, 3 now, 4 tombstone ms, 5..11 the update, 12 n,
# then n sextets (seq, id, chain, epoch, final, element).
WRITE_AT = (
    PRELUDE
    + r"""
local now, tomb_ms, n = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[12])
local exists = live(now)
local function ev(k, j) return ARGV[12 + 6 * (k - 1) + j] end
if n == 0 then
  if exists then return tonumber(redis.call('HGET', M, 'seq')) end
  return 0
end
local hw = 0
if exists then
  hw = tonumber(redis.call('HGET', M, 'seq'))
  for k = 1, n do
    local s = tonumber(ev(k, 1))
    if s <= hw then
      -- the first event that overlaps: another chain value there means a stale copy
      local el = redis.call('LINDEX', E, s - 1)
      if (not el) or string.sub(el, 2, 1 + string.byte(el, 1)) ~= ev(k, 3) then
        redis.call('DEL', M, E, I, S)
        redis.call('PEXPIRE', X, tomb_ms)
        exists, hw = false, 0
      end
      break
    end
  end
end
if not exists then
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
chunked('RPUSH', E, els)
chunked('HSET', I, idseq)
store_meta(not exists, hw + #els, ev(last, 4), ev(last, 3), final, update_from(5), tomb_ms)
redis.call('PUBLISH', ARGV[2], hw + #els)
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
