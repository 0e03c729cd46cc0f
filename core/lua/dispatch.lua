-- dispatch: add jobs to one queue, ready at once or delayed.
-- KEYS[1] lanes  KEYS[2] ready  KEYS[3] delayed  KEYS[4] wake  KEYS[5] stats
-- KEYS[6] the known-queues set ("<prefix>:queues")
-- ARGV[1] key base of the queue ("<prefix>:{q:<queue>}:")
-- then for each job: id, envelope JSON, lane, delay ms, result sink ("" for none), sink field,
-- sink ttl s, merge key ("" when the job is not unique: it is never merged with another),
-- unique-for ms (how long the key still dedupes after the job completed; 0 = only while it is
-- pending or running), batch id ("" for none)
-- Returns, per job, the id of the job that represents it: its own id when added, or the id of
-- the pending/running job (or the job completed within its unique-for window) it duplicates.
local base = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local added, ready = 0, 0
local out = {}
for i = 2, #ARGV, 10 do
  local id, data, lane, delay = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local ukey, ufor = ARGV[i + 7], ARGV[i + 8]
  local jk = base .. 'job:' .. id
  local dup = false
  if redis.call('EXISTS', jk) == 1 then
    dup = id
  elseif ukey ~= '' then
    local uk = base .. 'unique:' .. ukey
    local holder = redis.call('GET', uk)
    if holder then
      local st = redis.call('HGET', base .. 'job:' .. holder, 'state')
      -- gone: completed within its unique-for window; failed: a new dispatch may run it again
      if st ~= 'failed' then
        dup = holder
      end
    end
    if not dup then
      redis.call('SET', uk, id)
    end
  end
  if dup then
    out[#out + 1] = dup
    redis.call('HINCRBY', KEYS[5], 'deduplicated', 1)
  else
    out[#out + 1] = id
    added = added + 1
    redis.call('HSET', jk, 'data', data, 'lane', lane, 'enqueued_at', now,
      'attempts', 0, 'releases', 0, 'exceptions', 0, 'lost', 0)
    if ukey ~= '' then
      redis.call('HSET', jk, 'unique', ukey, 'unique_for', ufor)
    end
    local bid = ARGV[i + 9]
    if bid ~= '' then
      local bk = base .. 'batch:' .. bid
      redis.call('HSET', jk, 'batch', bid)
      -- A batch that declared its total (an eval run: the dataset's size) keeps it until more
      -- jobs than declared arrive; an ordinary batch's total grows with every job added.
      local declared = redis.call('HGET', bk, 'declared')
      if redis.call('HINCRBY', bk, 'dispatched', 1) > tonumber(declared or '-1') then
        redis.call('HINCRBY', bk, 'total', 1)
      end
      redis.call('HINCRBY', bk, 'pending', 1)
      local st = redis.call('HGET', bk, 'state')
      if st == 'succeeded' or st == 'finished_with_failures' then
        -- jobs added to a finished batch open a new round
        redis.call('HSET', bk, 'state', 'running')
        redis.call('HDEL', bk, 'finished_at')
      end
    end
    if ARGV[i + 4] ~= '' then
      redis.call('HSET', jk, 'sink', ARGV[i + 4], 'sink_field', ARGV[i + 5], 'sink_ttl', ARGV[i + 6])
    end
    if delay > 0 then
      redis.call('HSET', jk, 'state', 'delayed')
      redis.call('ZADD', KEYS[3], now + delay, id)
    else
      redis.call('HSET', jk, 'state', 'ready', 'ready_at', now)
      if redis.call('RPUSH', base .. 'lane:' .. lane, id) == 1 then
        redis.call('RPUSH', KEYS[1], lane)
      end
      redis.call('ZADD', KEYS[2], now, id)
      ready = ready + 1
    end
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[5], 'dispatched', added)
  -- Listed in the same script that adds its jobs: a queue forgotten a moment before (see
  -- forget_queue.lua) is listed again, and one with jobs is never left out.
  redis.call('SADD', KEYS[6], string.match(base, '{q:(.+)}:$'))
end
if ready > 0 and redis.call('LLEN', KEYS[4]) < 16 then
  -- One token per call: the worker that takes it passes the word on while work remains.
  redis.call('RPUSH', KEYS[4], '1')
end
return out
