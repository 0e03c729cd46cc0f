-- limit: one atomic decision of a named limiter for one key.
-- KEYS[1] the limiter's ZSET for this key
-- ARGV[1] "rate" or "concurrency"  ARGV[2] limit
-- rate:        ARGV[3] window ms  ARGV[4] a unique member for this grant
-- concurrency: ARGV[3] hold ms (renewed like a lease)  ARGV[4] job id
-- Returns 0 when granted, else the ms until a slot frees (rate) or the earliest lapse (concurrency).
local now = now_ms()
local limit = tonumber(ARGV[2])
local span = tonumber(ARGV[3])
if ARGV[1] == 'rate' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - span)
  if redis.call('ZCARD', KEYS[1]) < limit then
    redis.call('ZADD', KEYS[1], now, ARGV[4])
    redis.call('PEXPIRE', KEYS[1], span)
    return 0
  end
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + span - now)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[4]) or redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + span, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], span * 2)
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(first[2]) - now)
