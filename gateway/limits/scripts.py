"""The two Lua scripts: ACQUIRE (check everything, then record everything) and SETTLE.

Per window subject (rpm/tpm), two keys, expiring one to two windows after their last write:
  <prefix>w:<subject>   ZSET   member -> admission time (ms, Redis server clock)
  <prefix>t:<subject>   HASH   member -> tokens charged; `_sum` -> total of the members;
                               `_exp` -> when (ms) both keys' TTLs, as last set, run out
Per budget subject and period, two keys, expiring a day after the period ends (never for `total`):
  <prefix>b:<subject>:<period_start>   HASH   `spent` -> settled nano-dollars; `held` -> total of
                                              outstanding reservations; member -> its reservation
  <prefix>r:<subject>:<period_start>   ZSET   member -> reservation expiry (ms), so a reservation of a
                                              gateway that died mid-request is dropped, not leaked

Members are limiter-generated (`<random>.<counter>`), never a client-chosen request id: a client
reusing one id must not collapse its requests into one window entry.

Times come from Redis' TIME so every replica sees the same clock. Scripts are effect-replicated
(Redis >= 5 default, the only mode in 7), so calling TIME before writing is allowed.

Numbers passed back into commands go through string.format('%d'): Lua's default number-to-string
conversion would print large integers in exponent form, which HINCRBY rejects.

Arguments travel as one space-separated string and the answer comes back as one: encoding thirty
arguments and parsing a twenty-element array cost the gateway more CPU per call than the split costs
Redis. Keys still go in KEYS, as scripts should declare them.
"""

from __future__ import annotations

_SPLIT = """
local function split(s)
  local out = {}
  for v in string.gmatch(s, '%S+') do out[#out + 1] = v end
  return out
end
"""

_CHECK = """
local MAX = 9007199254740991
local function refuse(what)
  error({err = 'ERR limiter figure out of range: ' .. what})
end
-- A[i] as an integer in [lo, MAX], digits only: `1e5` would pass tonumber but not HINCRBY.
local function int(A, i, lo)
  local s = A[i]
  local n = s and string.match(s, '^%-?%d+$') and tonumber(s)
  if not n or n < lo or n > MAX then refuse('argument ' .. i .. ' = ' .. tostring(s)) end
  return n
end
local function within(sum, what)
  if sum > MAX then refuse(what) end
end
"""

_DROP = """
local function drop(zkey, hkey, sumfield, maxscore)
  while true do
    local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', maxscore, 'LIMIT', 0, 500)
    if #old == 0 then return end
    local amounts = redis.call('HMGET', hkey, unpack(old))
    local total = 0
    for i = 1, #amounts do total = total + (tonumber(amounts[i]) or 0) end
    redis.call('ZREM', zkey, unpack(old))
    redis.call('HDEL', hkey, unpack(old))
    if total ~= 0 then redis.call('HINCRBY', hkey, sumfield, string.format('%d', -total)) end
    if #old < 500 then return end
  end
end
"""

# KEYS: per window subject: window zset, token hash; then per budget: budget hash, reservation zset.
# ARGV[1], space-separated: member, est_tokens, reserve_nano, least_nano, reservation_ttl_ms,
#       window_ms, n_windows, (rpm, tpm) per window (-1 = no limit), n_budgets,
#       (limit_nano, period_end_s, expire_at_s, seed) per budget; seed: nano-dollars, '-' (none) or
#       '?' (ask: when the budget has no `spent`, answer status 4 instead of counting from zero).
#       Every budget holds the same amount: reserve_nano, or the room the tightest budget has left
#       when that is less, down to least_nano (<= reserve_nano); less room than that is a refusal.
# Returns, space-separated: status, index, retry_ms, now_ms, held_nano (what an admitted request
#       holds; the least it needed when refused), (requests, tokens, reset_ms) per window,
#       (spent, held) per budget; status 0 = admitted, 1 = rpm, 2 = tpm, 3 = budget; retry_ms -1 = never.
#       Status 4 (nothing written): `now_ms` is followed by the 1-based indexes of the budgets to seed.
# A figure out of range (or a sum that would leave the exact range) is an error reply sent before
# this request writes anything, so a bad figure is that request's error and leaves no partial entry.
ACQUIRE = (
    _SPLIT
    + _DROP
    + _CHECK
    + """
local A = split(ARGV[1])
local member = A[1]
local est = int(A, 2, 0)
local reserve = int(A, 3, 0)
local least = int(A, 4, 0)
if least > reserve then refuse('least reservation above the reservation') end
local ttl = int(A, 5, 0)
local window = int(A, 6, 0)
local nw = int(A, 7, 0)
for i = 1, nw do int(A, 6 + 2 * i, -1); int(A, 7 + 2 * i, -1) end
local bbase = 8 + 2 * nw
local nb = int(A, bbase, 0)
local missing = {}
for j = 1, nb do
  local a = bbase + 4 * (j - 1)
  int(A, a + 1, 0); int(A, a + 2, 0); int(A, a + 3, 0)
  local seed = A[a + 4]
  if seed == '?' then
    if redis.call('HEXISTS', KEYS[2 * nw + 2 * j - 1], 'spent') == 0 then missing[#missing + 1] = j end
  elseif seed ~= '-' then
    int(A, a + 4, 0)
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if #missing > 0 then
  return string.format('4 0 0 %d ', now) .. table.concat(missing, ' ')
end

local status, index, retry = 0, 0, 0
local out = {}

-- ms until an entry admitted at `score` leaves the window
local function until_out(score) return tonumber(score) + window - now end

local function expiry_of(zkey, rank)
  local e = redis.call('ZRANGE', zkey, rank, rank, 'WITHSCORES')
  if #e == 0 then return 0 end
  return until_out(e[2])
end

local exps = {}
for i = 1, nw do
  local zk, hk = KEYS[2 * i - 1], KEYS[2 * i]
  local rpm, tpm = tonumber(A[6 + 2 * i]), tonumber(A[7 + 2 * i])
  -- The oldest entry says both whether anything left the window and when the window next frees up.
  local first = redis.call('ZRANGE', zk, 0, 0, 'WITHSCORES')
  if #first > 0 and tonumber(first[2]) <= now - window then
    drop(zk, hk, '_sum', now - window)
    first = redis.call('ZRANGE', zk, 0, 0, 'WITHSCORES')
  end
  local count = 0
  if #first > 0 then count = redis.call('ZCARD', zk) end
  local h = redis.call('HMGET', hk, '_sum', '_exp')
  local used = tonumber(h[1]) or 0
  exps[i] = tonumber(h[2]) or 0
  if count == 0 then
    -- An empty window's zset is written afresh below: give both keys their TTL again.
    exps[i] = 0
    if used ~= 0 then
      -- The two keys disagree (one was evicted under memory pressure): start the window afresh.
      redis.call('DEL', hk)
      used = 0
    end
  end
  within(used + est, 'window tokens')
  local reset = 0
  if count > 0 then reset = until_out(first[2]) end
  if status == 0 and rpm >= 0 and count + 1 > rpm then
    status, index = 1, i
    if rpm == 0 then retry = -1 else retry = expiry_of(zk, count - rpm) end
    reset = retry
  elseif status == 0 and tpm >= 0 and used + est > tpm then
    status, index = 2, i
    if est > tpm then
      retry = -1
    else
      -- Oldest first: the entry whose expiry frees enough tokens for this request. Bounded, so a
      -- flood of denials stays cheap; past the bound the answer is a lower bound (retry, re-told).
      local need, freed = used + est - tpm, 0
      local entries = redis.call('ZRANGE', zk, 0, 127, 'WITHSCORES')
      local ids = {}
      for k = 1, #entries, 2 do ids[#ids + 1] = entries[k] end
      local toks = redis.call('HMGET', hk, unpack(ids))
      for k = 1, #ids do
        retry = until_out(entries[2 * k])
        freed = freed + (tonumber(toks[k]) or 0)
        if freed >= need then break end
      end
    end
    reset = retry
  end
  out[#out + 1] = count
  out[#out + 1] = used
  out[#out + 1] = reset
end

local seeds = {}
local grant = reserve
for j = 1, nb do
  local bk, rk = KEYS[2 * nw + 2 * j - 1], KEYS[2 * nw + 2 * j]
  local a = bbase + 4 * (j - 1)
  local limit, period_end, seed = tonumber(A[a + 1]), tonumber(A[a + 2]), A[a + 4]
  drop(rk, bk, 'held', now)
  local v = redis.call('HMGET', bk, 'spent', 'held')
  local spent, held = tonumber(v[1]), tonumber(v[2]) or 0
  if spent == nil then
    spent = 0
    if seed ~= '-' and seed ~= '?' then spent, seeds[j] = tonumber(seed), seed end
  end
  within(spent + held + reserve, 'budget spend')
  if status == 0 and spent + held + least > limit then
    status, index, grant = 3, j, least
    if spent + least <= limit then
      -- Only in-flight reservations block it; they settle within a request's time.
      retry = 1000
    elseif period_end > 0 and least <= limit then
      retry = period_end * 1000 - now
    else
      retry = -1
    end
  elseif status == 0 and spent + held + grant > limit then
    grant = limit - spent - held
  end
  out[#out + 1] = spent
  out[#out + 1] = held
end

-- Every check passed: from here on it writes. A seed is kept even when the request is refused.
for j, seed in pairs(seeds) do
  local bk = KEYS[2 * nw + 2 * j - 1]
  redis.call('HSET', bk, 'spent', seed)
  local expire_at = tonumber(A[bbase + 4 * (j - 1) + 3])
  if expire_at > 0 then redis.call('EXPIREAT', bk, expire_at) end
end

if status == 0 then
  -- Keys live two windows and are refreshed once less than a window is left, so an entry always
  -- outlives its window. When that is due comes from `_exp`, read with `_sum`: no TTL reads per call.
  -- A key evicted and written afresh has no `_exp`, so it gets its TTL on the spot.
  local floor = window + 1000
  for i = 1, nw do
    local zk, hk = KEYS[2 * i - 1], KEYS[2 * i]
    redis.call('ZADD', zk, now, member)
    if exps[i] - now < floor then
      redis.call('HSET', hk, member, A[2], '_exp', string.format('%d', now + floor + window))
      redis.call('PEXPIRE', zk, floor + window)
      redis.call('PEXPIRE', hk, floor + window)
    else
      redis.call('HSET', hk, member, A[2])
    end
    if est ~= 0 then redis.call('HINCRBY', hk, '_sum', A[2]) end
    if out[3 * i - 2] == 0 then out[3 * i] = window end
    out[3 * i - 2] = out[3 * i - 2] + 1
    out[3 * i - 1] = out[3 * i - 1] + est
  end
  if grant > 0 then
    local amount = string.format('%d', grant)
    for j = 1, nb do
      local bk, rk = KEYS[2 * nw + 2 * j - 1], KEYS[2 * nw + 2 * j]
      local expire_at = tonumber(A[bbase + 4 * (j - 1) + 3])
      redis.call('HSET', bk, member, amount)
      redis.call('HINCRBY', bk, 'held', amount)
      redis.call('ZADD', rk, now + ttl, member)
      if expire_at > 0 then
        if redis.call('TTL', bk) == -1 then redis.call('EXPIREAT', bk, expire_at) end
        if redis.call('TTL', rk) == -1 then redis.call('EXPIREAT', rk, expire_at) end
      end
    end
  end
end

local res = {status, index, retry, now, grant}
for k = 1, #out do res[#res + 1] = out[k] end
for k = 1, #res do res[k] = string.format('%d', res[k]) end
return table.concat(res, ' ')
"""
)

# KEYS: per window subject: token hash; then per budget: budget hash, reservation zset.
# ARGV[1], space-separated: member, token_delta, n_windows, n_budgets, actual_nano ('-' = unknown:
#       charge the reservation), reserve_nano, then (expire_at_s, seed) per budget; seed as in ACQUIRE,
#       where '?' means: a budget without `spent` (Redis lost it) is not charged, since the reseed that
#       the next acquire asks for reads this request's cost from the spend records.
# Checked in full before the first write, as ACQUIRE is.
SETTLE = (
    _SPLIT
    + _CHECK
    + """
local A = split(ARGV[1])
local member = A[1]
local delta = int(A, 2, -MAX)
local nw, nb = int(A, 3, 0), int(A, 4, 0)
local actual = A[5]
if actual ~= '-' then int(A, 5, 0) end
local charge = actual
if charge == '-' then charge = A[6] end
local amount = int(A, 6, 0)
if actual ~= '-' then amount = tonumber(actual) end
if delta ~= 0 then
  for i = 1, nw do
    local h = redis.call('HMGET', KEYS[i], member, '_sum')
    if h[1] then
      within(math.abs(tonumber(h[2] or 0) + delta), 'window tokens')
      within(math.abs(tonumber(h[1]) + delta), 'window tokens')
    end
  end
end
local charged = {}
for j = 1, nb do
  local bk = KEYS[nw + 2 * j - 1]
  int(A, 5 + 2 * j, 0)
  local seed = A[6 + 2 * j]
  if seed ~= '-' and seed ~= '?' then int(A, 6 + 2 * j, 0) end
  local spent = tonumber(redis.call('HGET', bk, 'spent'))
  if spent == nil and seed ~= '?' then
    spent = 0
    if seed ~= '-' then spent = tonumber(seed) end
  end
  if spent ~= nil then within(spent + amount, 'budget spend') end
  charged[j] = spent ~= nil
end

for i = 1, nw do
  -- An entry already out of the window needs no correction: it no longer counts.
  if delta ~= 0 and redis.call('HEXISTS', KEYS[i], member) == 1 then
    redis.call('HINCRBY', KEYS[i], member, A[2])
    redis.call('HINCRBY', KEYS[i], '_sum', A[2])
  end
end
for j = 1, nb do
  local bk, rk = KEYS[nw + 2 * j - 1], KEYS[nw + 2 * j]
  local expire_at, seed = tonumber(A[5 + 2 * j]), A[6 + 2 * j]
  local held = redis.call('HGET', bk, member)
  if held then
    redis.call('HDEL', bk, member)
    redis.call('HINCRBY', bk, 'held', string.format('%d', -tonumber(held)))
    redis.call('ZREM', rk, member)
  end
  if charged[j] then
    if seed ~= '-' and seed ~= '?' then redis.call('HSETNX', bk, 'spent', seed) end
    if amount ~= 0 then redis.call('HINCRBY', bk, 'spent', charge) end
  end
  if expire_at > 0 and redis.call('TTL', bk) == -1 then redis.call('EXPIREAT', bk, expire_at) end
end
return 0
"""
)

# KEYS: budget hash. ARGV: nano-dollars, expire_at_s. Raises `spent` to at least the figure (never
# lowers it: Redis may hold settled spend the database has not been told of yet). Returns the result.
RAISE_SPENT = (
    _CHECK
    + """
local A = {ARGV[1], ARGV[2]}
local floor, expire_at = int(A, 1, 0), int(A, 2, 0)
local cur = tonumber(redis.call('HGET', KEYS[1], 'spent'))
if cur == nil or cur < floor then
  redis.call('HSET', KEYS[1], 'spent', A[1])
  cur = floor
end
if expire_at > 0 and redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIREAT', KEYS[1], expire_at) end
return string.format('%d', cur)
"""
)
