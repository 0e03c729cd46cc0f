-- adaptive: one decision of an adaptive concurrency limiter (AIMD) for one key.  The arithmetic
-- is the pure function in core/adaptive.py (``on_release``), line for line; a test runs both on
-- the same events and compares the states.
-- KEYS[1] the slots ZSET (member -> lease deadline ms)   KEYS[2] the state HASH
-- ARGV[1] "acquire", "renew" or "release"   ARGV[2] the slot's member   ARGV[3] hold ms
-- ARGV[4] release outcome: "ok", "throttled" or "" (neither: an error that says nothing of load)
-- ARGV[5] ms the released slot was granted (a 429 of a call granted before the last decrease
--         is a late echo of the burst that caused it and does not lower the limit again)
-- ARGV[6..12] floor, ceiling, start (slots), decrease (factor), cooldown ms, increase_after
--         (successes per +1 slot; 0 = the current limit), probe_slowdown
-- ARGV[13] ms the state is kept after its last use   ARGV[14] now in ms, for tests ("" = TIME)
-- ARGV[15] release: slots in flight just after the released one was granted (a success counts
--         towards a raise only when the limit was what bounded the calls, not a lack of demand,
--         and only when it was granted after the last decrease)
-- The limit is kept in thousandths of a slot, so both sides compute with whole numbers.
-- acquire returns {granted 0/1, now ms, allowed, in flight, new state 0/1};
-- release returns {allowed, in flight, decreased 0/1, the level last throttled}; renew returns 1.
local slots, state = KEYS[1], KEYS[2]
local op = ARGV[1]
local hold = tonumber(ARGV[3])
local floor_m = tonumber(ARGV[6]) * 1000
local ceil_m = tonumber(ARGV[7]) * 1000
local start_m = tonumber(ARGV[8]) * 1000
local decrease = tonumber(ARGV[9])
local cooldown = tonumber(ARGV[10])
local inc_after = tonumber(ARGV[11])
local slowdown = tonumber(ARGV[12])
local ttl = tonumber(ARGV[13])
local now
if ARGV[14] ~= nil and ARGV[14] ~= '' then
  now = tonumber(ARGV[14])
else
  now = now_ms()
end

local function extend(by)
  if redis.call('PTTL', slots) < by then redis.call('PEXPIRE', slots, by) end
end

if op == 'renew' then
  redis.call('ZADD', slots, now + hold, ARGV[2])
  extend(hold * 2)
  return 1
end

local s = redis.call('HMGET', state, 'limit', 'ok', 'last_decrease', 'throttled_at')
local fresh = s[1] == false
local limit = tonumber(s[1]) or start_m
local ok = tonumber(s[2]) or 0
local last = tonumber(s[3]) or 0
local at = tonumber(s[4]) or 0
limit = math.max(floor_m, math.min(ceil_m, limit))
local allowed = math.floor(limit / 1000)

if op == 'acquire' then
  local member = ARGV[2]
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  local n = redis.call('ZCARD', slots)
  local granted = 0
  if redis.call('ZSCORE', slots, member) then
    granted = 1
  elseif n < allowed then
    granted = 1
    n = n + 1
  end
  if granted == 1 then
    redis.call('ZADD', slots, now + hold, member)
    extend(hold * 2)
  end
  redis.call('HSET', state, 'limit', limit, 'floor', floor_m / 1000, 'ceiling', ceil_m / 1000)
  if fresh then redis.call('HSET', state, 'ok', 0, 'last_decrease', 0, 'throttled_at', 0) end
  redis.call('PEXPIRE', state, ttl)
  return {granted, now, allowed, n, fresh and 1 or 0}
end

-- release
redis.call('ZREM', slots, ARGV[2])
local outcome = ARGV[4]
local granted_at = tonumber(ARGV[5]) or 0
local decreased = 0
-- per-minute counters for the past hour, in 60 fields that wrap: "b<minute mod 60>" =
-- "<minute> <ok> <throttled> <decreases>"
local minute = math.floor(now / 60000)
local field = 'b' .. (minute % 60)
local b_ok, b_thr, b_dec = 0, 0, 0
local prev = redis.call('HGET', state, field)
if prev then
  local m, o, t, d = string.match(prev, '^(%d+) (%d+) (%d+) (%d+)$')
  if m and tonumber(m) == minute then b_ok, b_thr, b_dec = tonumber(o), tonumber(t), tonumber(d) end
end
local in_use = tonumber(ARGV[15]) or 0
if outcome == 'ok' then
  b_ok = b_ok + 1
  if in_use >= allowed and granted_at >= last then ok = ok + 1 end
  local need = inc_after
  if need <= 0 then need = math.max(1, allowed) end
  -- one step below the level that was throttled last: probe it slowly
  if at > 0 and allowed == at - 1 then need = need * slowdown end
  if ok >= need then
    limit = math.min(ceil_m, limit + 1000)
    ok = 0
  end
elseif outcome == 'throttled' then
  b_thr = b_thr + 1
  if last == 0 or (now - last >= cooldown and granted_at >= last) then
    at = allowed
    limit = math.max(floor_m, math.floor(limit * decrease))
    last = now
    decreased = 1
    b_dec = b_dec + 1
  end
  ok = 0
end
redis.call('HSET', state, 'limit', limit, 'ok', ok, 'last_decrease', last, 'throttled_at', at,
  'floor', floor_m / 1000, 'ceiling', ceil_m / 1000,
  field, string.format('%d %d %d %d', minute, b_ok, b_thr, b_dec))
redis.call('PEXPIRE', state, ttl)
return {math.floor(limit / 1000), redis.call('ZCOUNT', slots, now, '+inf'), decreased, at}
