-- dispatch: add jobs to one queue, ready at once or delayed.
-- KEYS[1] lanes  KEYS[2] ready  KEYS[3] delayed  KEYS[4] wake  KEYS[5] stats
-- KEYS[6] the known-queues set ("<prefix>:queues")
-- ARGV[1] key base of the queue ("<prefix>:{q:<queue>}:")
-- ARGV[2] the producer's clock in ms: the enqueue and ready time of jobs ready at once (so a
--         plain dispatch reads no clock here); delayed jobs are timed by the server's clock,
--         the one pop_with_lease compares their due time with
-- then groups, in the order of the jobs:
--   "p", lane, N, then N pairs of id and envelope JSON: plain jobs of one lane (fresh ids, ready
--        at once, no sink, not unique, no batch: nothing to check), one RPUSH and one ZADD for all
--   "x", id, envelope JSON, lane, delay ms, result sink ("" for none), sink field, sink ttl s,
--        merge key ("" when the job is not unique: it is never merged with another), unique-for
--        ms (how long the key still dedupes after the job completed; 0 = only while it is
--        pending or running), batch id ("" for none): one job that is checked against an
--        existing job of the same id (a caller-chosen id may repeat)
-- A plain dispatch to a lane with jobs already waiting is one HSET, RPUSH, ZADD and HINCRBY.
-- Returns, per job, the id of the job that represents it: its own id when added, or the id of
-- the pending/running job (or the job completed within its unique-for window) it duplicates.
local base = ARGV[1]
local now = tonumber(ARGV[2])
local server_now = nil
local added = 0
local woken = false
local out = {}
-- Jobs of "x" groups ready at once go to their lanes in one RPUSH per lane (first-seen order)
-- and to the ready index in one ZADD, before the next "p" group and at the end; per batch, the
-- counters move once per call by its jobs here.
local lanes, scored = {}, {}
local batches = {}
local function push_ready()
  for _, lane in ipairs(lanes) do
    local ids = lanes[lane]
    for j = 1, #ids, 1000 do
      local last = math.min(j + 999, #ids)
      -- the lane was empty (its first slice made it exactly that long): list it, once
      if redis.call('RPUSH', base .. 'lane:' .. lane, unpack(ids, j, last)) == last and j == 1 then
        redis.call('RPUSH', KEYS[1], lane)
        woken = true
      end
    end
    lanes[lane] = nil
  end
  for j = 1, #scored, 2000 do
    redis.call('ZADD', KEYS[2], unpack(scored, j, math.min(j + 1999, #scored)))
  end
  lanes, scored = {}, {}
end
local i = 3
while i <= #ARGV do
  if ARGV[i] == 'p' then
    push_ready()
    local lane = ARGV[i + 1]
    local n = tonumber(ARGV[i + 2])
    local ids, pscored = {}, {}
    i = i + 3
    for k = 1, n do
      local id = ARGV[i]
      redis.call('HSET', base .. 'job:' .. id, 'data', ARGV[i + 1], 'lane', lane, 'enqueued_at', now, 'attempts', 0,
        'releases', 0, 'exceptions', 0, 'lost', 0, 'state', 'ready', 'ready_at', now)
      ids[k] = id
      pscored[2 * k - 1] = now
      pscored[2 * k] = id
      out[#out + 1] = id
      i = i + 2
    end
    if redis.call('RPUSH', base .. 'lane:' .. lane, unpack(ids)) == n then
      redis.call('RPUSH', KEYS[1], lane)
      woken = true
    end
    redis.call('ZADD', KEYS[2], unpack(pscored))
    added = added + n
  else
    local id, data, lane = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local delay, sink, sfield, sttl = tonumber(ARGV[i + 4]), ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
    local ukey, ufor, bid = ARGV[i + 8], ARGV[i + 9], ARGV[i + 10]
    i = i + 11
    local jk = base .. 'job:' .. id
    local dup = false
    if redis.call('EXISTS', jk) == 1 then
      dup = id
    elseif ukey ~= '' then
      local uk = base .. 'unique:' .. ukey
      local holder = redis.call('GET', uk)
      if holder then
        local st = redis.call('HGET', base .. 'job:' .. holder, 'state')
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
      local fields = {'data', data, 'lane', lane, 'enqueued_at', now, 'attempts', 0, 'releases', 0, 'exceptions', 0,
        'lost', 0}
      if ukey ~= '' then
        fields[#fields + 1] = 'unique'
        fields[#fields + 1] = ukey
        fields[#fields + 1] = 'unique_for'
        fields[#fields + 1] = ufor
      end
      if bid ~= '' then
        fields[#fields + 1] = 'batch'
        fields[#fields + 1] = bid
        if not batches[bid] then
          batches[#batches + 1] = bid
          batches[bid] = 0
        end
        batches[bid] = batches[bid] + 1
      end
      if sink ~= '' then
        fields[#fields + 1] = 'sink'
        fields[#fields + 1] = sink
        fields[#fields + 1] = 'sink_field'
        fields[#fields + 1] = sfield
        fields[#fields + 1] = 'sink_ttl'
        fields[#fields + 1] = sttl
      end
      fields[#fields + 1] = 'state'
      if delay > 0 then
        if not server_now then
          server_now = now_ms()
        end
        fields[#fields + 1] = 'delayed'
        redis.call('HSET', jk, unpack(fields))
        redis.call('ZADD', KEYS[3], server_now + delay, id)
      else
        fields[#fields + 1] = 'ready'
        fields[#fields + 1] = 'ready_at'
        fields[#fields + 1] = now
        redis.call('HSET', jk, unpack(fields))
        local ids = lanes[lane]
        if not ids then
          ids = {}
          lanes[lane] = ids
          lanes[#lanes + 1] = lane
        end
        ids[#ids + 1] = id
        scored[#scored + 1] = now
        scored[#scored + 1] = id
      end
    end
  end
end
push_ready()
for _, bid in ipairs(batches) do
  local n = batches[bid]
  local bk = base .. 'batch:' .. bid
  -- jobs beyond a declared total count in the total (all of them without a declared total)
  local declared = tonumber(redis.call('HGET', bk, 'declared') or '-1')
  local dispatched = redis.call('HINCRBY', bk, 'dispatched', n)
  local beyond = math.min(n, dispatched - math.max(declared, dispatched - n))
  if beyond > 0 then
    redis.call('HINCRBY', bk, 'total', beyond)
  end
  redis.call('HINCRBY', bk, 'pending', n)
  local st = redis.call('HGET', bk, 'state')
  if st == 'succeeded' or st == 'finished_with_failures' then
    redis.call('HSET', bk, 'state', 'running')
    redis.call('HDEL', bk, 'finished_at')
  end
end
if added > 0 then
  if redis.call('HINCRBY', KEYS[5], 'dispatched', added) == added then
    redis.call('SADD', KEYS[6], string.match(base, '{q:(.+)}:$'))
  end
end
if woken then
  redis.call('RPUSH', KEYS[4], '1')
end
return out
