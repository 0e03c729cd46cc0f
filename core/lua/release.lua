-- release: put a reserved job back, now or after a delay.
-- KEYS[1] lanes  KEYS[2] ready  KEYS[3] delayed  KEYS[4] reserved  KEYS[5] wake  KEYS[6] stats
-- ARGV[1] key base  ARGV[2] owner  ARGV[3] id  ARGV[4] delay ms
-- ARGV[5] why: "rate_limited" (no try used), "retry" (after an exception) or "interrupted"
--         (the worker is shutting down; the attempt is given back)
-- ARGV[6] last error JSON ("" for none)
-- ARGV[7] the job's last checkpoint JSON ("" to keep what is stored)
-- ARGV[8] "1" to count it per minute (telemetry); ARGV[9] "timeout" when the attempt timed out
-- Returns 1, or 0 when the caller no longer held the lease.
local base = ARGV[1]
local id = ARGV[3]
local delay = tonumber(ARGV[4])
local why = ARGV[5]
local jk = base .. 'job:' .. id
if redis.call('HGET', jk, 'owner') ~= ARGV[2] then
  return 0
end
local now = now_ms()
redis.call('ZREM', KEYS[4], id)
redis.call('HSET', jk, 'owner', '')
local bid = redis.call('HGET', jk, 'batch')
if bid then
  b_not_running(base, bid, id, KEYS[5])
end
if why == 'rate_limited' then
  redis.call('HINCRBY', jk, 'releases', 1)
  redis.call('HINCRBY', KEYS[6], 'released', 1)
elseif why == 'interrupted' then
  redis.call('HINCRBY', jk, 'attempts', -1)
  redis.call('HINCRBY', KEYS[6], 'interrupted', 1)
else
  redis.call('HINCRBY', jk, 'exceptions', 1)
  redis.call('HINCRBY', KEYS[6], 'retried', 1)
end
if ARGV[8] == '1' and why ~= 'interrupted' then
  local timeout = ARGV[9] == 'timeout'
  tm_count(base, now, why == 'rate_limited' and 'rate_limited' or 'retries', 1, timeout and 'timeouts', 1)
  if timeout then
    redis.call('HINCRBY', KEYS[6], 'timeouts', 1)
  end
end
if ARGV[6] ~= '' then
  redis.call('HSET', jk, 'last_error', ARGV[6])
end
if ARGV[7] and ARGV[7] ~= '' then
  redis.call('HSET', jk, 'checkpoint', ARGV[7])
end
if delay > 0 then
  redis.call('HSET', jk, 'state', 'delayed')
  redis.call('ZADD', KEYS[3], now + delay, id)
else
  local lane = redis.call('HGET', jk, 'lane')
  if redis.call('RPUSH', base .. 'lane:' .. lane, id) == 1 then
    redis.call('RPUSH', KEYS[1], lane)
  end
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('HSET', jk, 'state', 'ready', 'ready_at', now)
  wake(KEYS[5])
end
return 1
