-- retry_failed: dispatch a failed job again under a new id, recording which retried which.
-- KEYS[1] lanes  KEYS[2] ready  KEYS[3] failed  KEYS[4] wake  KEYS[5] stats
-- ARGV[1] key base  ARGV[2] failed job id  ARGV[3] new job id  ARGV[4] new envelope JSON
-- Returns 1, or 0 when the failed job is not (or no longer) in the failed store.
local base = ARGV[1]
local old, new = ARGV[2], ARGV[3]
local ok = redis.call('ZSCORE', KEYS[3], old)
local ojk = base .. 'job:' .. old
if not ok or redis.call('HGET', ojk, 'state') ~= 'failed' then
  return 0
end
local now = now_ms()
local rec = redis.call('HMGET', ojk, 'lane', 'sink', 'sink_field', 'sink_ttl', 'checkpoint', 'batch', 'unique', 'unique_for')
local lane = rec[1] or '_'
local jk = base .. 'job:' .. new
redis.call('HSET', jk, 'data', ARGV[4], 'lane', lane, 'enqueued_at', now, 'attempts', 0, 'releases', 0,
  'exceptions', 0, 'lost', 0, 'retry_of', old, 'state', 'ready', 'ready_at', now)
if rec[2] then
  redis.call('HSET', jk, 'sink', rec[2], 'sink_field', rec[3], 'sink_ttl', rec[4])
  -- the retry's outcome replaces the failure in the result sink
  redis.call('HDEL', base .. 'results:' .. rec[2], rec[3])
end
if rec[5] then
  redis.call('HSET', jk, 'checkpoint', rec[5])
end
if rec[6] then
  -- a job of a batch: the batch counts the retry as it would for `batch retry`
  local bk = base .. 'batch:' .. rec[6]
  local had_batch = redis.call('EXISTS', bk) == 1
  redis.call('HSET', jk, 'batch', rec[6])
  if redis.call('SREM', bk .. ':failed', old) == 1 then
    redis.call('HINCRBY', bk, 'failed', -1)
    redis.call('HINCRBY', bk, 'processed', -1)
  end
  redis.call('HINCRBY', bk, 'pending', 1)
  b_reopen(bk)
  if had_batch then
    redis.call('ZADD', base .. 'batches:active', 'NX', redis.call('HGET', bk, 'created_at') or now, rec[6])
  end
  redis.call('HDEL', bk, 'finished_at', 'cancelled_at', 'catch_done')
end
if rec[7] then
  -- the retry holds the idempotency key from now on
  redis.call('HSET', jk, 'unique', rec[7], 'unique_for', rec[8] or '0')
  redis.call('SET', base .. 'unique:' .. rec[7], new)
end
f_unindex(base, old, ojk)
redis.call('HSET', ojk, 'state', 'retried', 'retried_by', new, 'retried_at', now)
redis.call('ZREM', KEYS[3], old)
if redis.call('RPUSH', base .. 'lane:' .. lane, new) == 1 then
  redis.call('RPUSH', KEYS[1], lane)
end
redis.call('ZADD', KEYS[2], now, new)
redis.call('HINCRBY', KEYS[5], 'dispatched', 1)
wake(KEYS[4])
return 1
