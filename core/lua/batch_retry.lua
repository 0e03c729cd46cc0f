-- batch_retry: queue a batch's failed jobs again (under new ids, recording which retried which)
-- and the jobs a cancel removed (under their own ids), and reopen the batch.  Retrying again
-- before those finish finds nothing new to retry, so nothing is counted twice.
-- KEYS[1] lanes  KEYS[2] ready  KEYS[3] wake  KEYS[4] failed store
-- ARGV[1] key base  ARGV[2] batch id
-- Returns the number of jobs queued again, or -1 when there is no such batch.
local base, bid = ARGV[1], ARGV[2]
local bk = base .. 'batch:' .. bid
if redis.call('EXISTS', bk) == 0 then
  return -1
end
local now = now_ms()
local lk = base .. 'lane:' .. bid
local n = 0
local nfailed = 0
local failed = redis.call('SMEMBERS', bk .. ':failed')
for _, old in ipairs(failed) do
  local ojk = base .. 'job:' .. old
  local data = redis.call('HGET', ojk, 'data')
  if data then
    local env = cjson.decode(data)
    local new = old .. '-r' .. redis.call('HINCRBY', bk, 'retry_seq', 1)
    env['id'] = new
    env['retry_of'] = old
    redis.call('HSET', base .. 'job:' .. new, 'data', cjson.encode(env), 'lane', bid, 'enqueued_at', now,
      'attempts', 0, 'releases', 0, 'exceptions', 0, 'lost', 0, 'state', 'ready', 'ready_at', now,
      'batch', bid, 'retry_of', old)
    local sink = redis.call('HMGET', ojk, 'sink', 'sink_field', 'sink_ttl')
    if sink[1] then
      redis.call('HSET', base .. 'job:' .. new, 'sink', sink[1], 'sink_field', sink[2], 'sink_ttl', sink[3])
      redis.call('HDEL', base .. 'results:' .. sink[1], sink[2])
    end
    if redis.call('ZREM', KEYS[4], old) == 1 then
      f_unindex(base, old, ojk)
    end
    redis.call('HSET', ojk, 'state', 'retried', 'retried_by', new, 'retried_at', now)
    redis.call('RPUSH', lk, new)
    redis.call('ZADD', KEYS[2], now, new)
    n = n + 1
    nfailed = nfailed + 1
  end
end
-- (failed jobs whose records expired cannot run again: they stay counted as failed)
local cancelled = redis.call('SMEMBERS', bk .. ':cancelled')
for _, id in ipairs(cancelled) do
  local jk = base .. 'job:' .. id
  if redis.call('EXISTS', jk) == 1 then
    redis.call('HSET', jk, 'state', 'ready', 'ready_at', now, 'owner', '')
    redis.call('RPUSH', lk, id)
    redis.call('ZADD', KEYS[2], now, id)
    redis.call('HINCRBY', bk, 'pending', 1)
    n = n + 1
  end
end
redis.call('DEL', bk .. ':cancelled')
for _, old in ipairs(failed) do
  if redis.call('HGET', base .. 'job:' .. old, 'state') == 'retried' then
    redis.call('SREM', bk .. ':failed', old)
  end
end
if nfailed > 0 then
  redis.call('HINCRBY', bk, 'failed', -nfailed)
  redis.call('HINCRBY', bk, 'processed', -nfailed)
  redis.call('HINCRBY', bk, 'pending', nfailed)
end
if n > 0 or nfailed > 0 then
  b_reopen(bk)
  b_active(base, bid, bk)
  redis.call('HDEL', bk, 'finished_at', 'cancelled_at', 'catch_done')
  if redis.call('LLEN', lk) > 0 and redis.call('LPOS', KEYS[1], bid) == false then
    redis.call('RPUSH', KEYS[1], bid)
  end
  wake(KEYS[3])
  b_event(base, 'batch_retried', bid, bk, n .. ' job(s) queued again')
end
return n
