-- clear_queue: remove a queue's ready jobs (all, or one batch's only) in one step.
-- A removed job of a batch counts as a cancelled one, and its batch is cancelled, as by
-- batch_cancel.lua: its state becomes cancelled, its queued jobs are kept in :cancelled (for
-- `batch retry`), running ones finish, and `finally` runs once nothing is pending.  Jobs
-- outside any batch are deleted.  Batch callbacks (the "_cb" lane) are engine work and stay.
-- KEYS[1] lanes  KEYS[2] ready  KEYS[3] delayed  KEYS[4] wake  KEYS[5] stats
-- ARGV[1] key base  ARGV[2] batch id or ""  ARGV[3] "1" to remove delayed jobs too  ARGV[4] queue
-- Returns {ready jobs removed, delayed jobs removed, batches cancelled}, or {-1} when ARGV[2]
-- names no batch of this queue.
local base, only, with_delayed, queue = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4]
if only ~= '' and redis.call('EXISTS', base .. 'batch:' .. only) == 0 then
  return {-1}
end
local now = now_ms()
local touched = {}  -- batch ids, in the order met
local seen = {}

local function cancel_batch(bid)
  -- the first time a clear meets the batch: it is cancelled, as batch_cancel.lua does
  if seen[bid] then
    return
  end
  seen[bid] = true
  touched[#touched + 1] = bid
  local bk = base .. 'batch:' .. bid
  local st = redis.call('HGET', bk, 'state')
  if st ~= 'cancelled' and st ~= 'failed' then
    redis.call('HSET', bk, 'state', 'cancelled', 'cancelled_at', now)
  end
end

local function delete_job(id)
  -- a job outside any batch goes, with the merge key it holds (else a later dispatch with the
  -- same key would be merged into the job that no longer exists)
  local jk = base .. 'job:' .. id
  local ukey = redis.call('HGET', jk, 'unique')
  if ukey and redis.call('GET', base .. 'unique:' .. ukey) == id then
    redis.call('DEL', base .. 'unique:' .. ukey)
  end
  redis.call('DEL', jk)
end

local ready_removed, delayed_removed = 0, 0

-- ready jobs, lane by lane (a batch's lane is named after the batch)
for _, lane in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local is_batch = lane ~= '_cb' and redis.call('EXISTS', base .. 'batch:' .. lane) == 1
  if lane == '_cb' then
    -- batch callbacks stay
  elseif only ~= '' then
    if lane == only then
      cancel_batch(lane)
      ready_removed = ready_removed + b_remove_queued(base, KEYS[1], KEYS[2], lane, base .. 'batch:' .. lane)
    end
  elseif is_batch then
    cancel_batch(lane)
    ready_removed = ready_removed + b_remove_queued(base, KEYS[1], KEYS[2], lane, base .. 'batch:' .. lane)
  else
    local lk = base .. 'lane:' .. lane
    for _, id in ipairs(redis.call('LRANGE', lk, 0, -1)) do
      ready_removed = ready_removed + redis.call('ZREM', KEYS[2], id)
      delete_job(id)
    end
    redis.call('DEL', lk)
    redis.call('LREM', KEYS[1], 0, lane)
  end
end

if with_delayed then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    local jk = base .. 'job:' .. id
    local rec = redis.call('HMGET', jk, 'batch', 'lane')
    local bid = rec[1]
    if bid and bid ~= '' and redis.call('EXISTS', base .. 'batch:' .. bid) == 1 then
      if only == '' or bid == only then
        cancel_batch(bid)
        local bk = base .. 'batch:' .. bid
        redis.call('ZREM', KEYS[3], id)
        redis.call('HSET', jk, 'state', 'cancelled')
        redis.call('SADD', bk .. ':cancelled', id)
        redis.call('HINCRBY', bk, 'pending', -1)
        delayed_removed = delayed_removed + 1
      end
    elseif only == '' and rec[2] ~= '_cb' then
      redis.call('ZREM', KEYS[3], id)
      delete_job(id)
      delayed_removed = delayed_removed + 1
    end
  end
end

-- (a batch with nothing queued is left as it is: a clear takes queued jobs, it cancels no
-- batch that has none)
for _, bid in ipairs(touched) do
  local bk = base .. 'batch:' .. bid
  b_event(base, 'batch_cancelled', bid, bk, 'cleared from queue ' .. queue)
  b_maybe_finish(base, KEYS[1], KEYS[2], KEYS[4], bid, bk)
end
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[4])
end
local removed = ready_removed + delayed_removed
if removed > 0 then
  redis.call('HINCRBY', KEYS[5], 'cleared', removed)
end
add_event(events_key(base), {'kind', 'queue_cleared', 'queue', queue, 'batch', only, 'ready', ready_removed,
  'delayed', delayed_removed, 'batches', #touched,
  'message', 'cleared ' .. removed .. ' queued job(s)' .. (only ~= '' and (' of batch ' .. only) or '')}, now / 1000)
return {ready_removed, delayed_removed, #touched}
