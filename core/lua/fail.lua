-- fail: record a reserved job as failed for good, keep it in the failed store, and write
-- the failure to its result sink if it has one, so a producer waiting on it learns at once.
-- KEYS[1] reserved  KEYS[2] failed  KEYS[3] stats  KEYS[4] lanes  KEYS[5] ready  KEYS[6] wake
-- ARGV[1] key base  ARGV[2] owner  ARGV[3] id  ARGV[4] failure JSON  ARGV[5] retention ms
-- ARGV[6] "1" when the attempt raised (counts as an exception)
-- ARGV[7] the job's last checkpoint JSON ("" to keep what is stored)
-- ARGV[8] the failure kind, counted per minute (telemetry) when not ""
-- Returns 1, or 0 when the caller no longer held the lease.
local base = ARGV[1]
local id = ARGV[3]
local jk = base .. 'job:' .. id
local rec = redis.call('HMGET', jk, 'owner', 'sink', 'sink_field', 'sink_ttl', 'unique', 'batch')
if rec[1] ~= ARGV[2] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local retention = tonumber(ARGV[5])
redis.call('ZREM', KEYS[1], id)
if rec[5] and redis.call('GET', base .. 'unique:' .. rec[5]) == id then
  redis.call('DEL', base .. 'unique:' .. rec[5])
end
if ARGV[7] and ARGV[7] ~= '' then
  redis.call('HSET', jk, 'checkpoint', ARGV[7])
end
if ARGV[6] == '1' then
  redis.call('HINCRBY', jk, 'exceptions', 1)
end
redis.call('HSET', jk, 'state', 'failed', 'owner', '', 'failure', ARGV[4], 'failed_at', now)
redis.call('PEXPIRE', jk, retention)
redis.call('ZADD', KEYS[2], now, id)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - retention)
redis.call('HINCRBY', KEYS[3], 'failed', 1)
if ARGV[8] and ARGV[8] ~= '' then
  local mk = base .. 'm:' .. math.floor(now / 60000)
  redis.call('HINCRBY', mk, 'failed', 1)
  if ARGV[8] == 'timeout' then
    redis.call('HINCRBY', mk, 'timeouts', 1)
    redis.call('HINCRBY', KEYS[3], 'timeouts', 1)
  end
  redis.call('EXPIRE', mk, 90000)
end
if rec[2] then
  local rk = base .. 'results:' .. rec[2]
  local outcome = '{"error":' .. ARGV[4] .. '}'
  if redis.call('HSETNX', rk, rec[3], outcome) == 1 then
    redis.call('RPUSH', rk .. ':done', rec[3] .. '\t' .. outcome)
  end
  redis.call('EXPIRE', rk, rec[4])
  redis.call('EXPIRE', rk .. ':done', rec[4])
end
if rec[6] then
  b_job_done(base, KEYS[4], KEYS[5], KEYS[6], rec[6], id, false)
end
return 1
