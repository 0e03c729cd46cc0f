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
local i = 3
while i <= #ARGV do
  if ARGV[i] == 'p' then
    local lane = ARGV[i + 1]
    local n = tonumber(ARGV[i + 2])
    local ids, scored = {}, {}
    i = i + 3
    for k = 1, n do
      local id = ARGV[i]
      redis.call('HSET', base .. 'job:' .. id, 'data', ARGV[i + 1], 'lane', lane, 'enqueued_at', now, 'attempts', 0,
        'releases', 0, 'exceptions', 0, 'lost', 0, 'state', 'ready', 'ready_at', now)
      ids[k] = id
      scored[2 * k - 1] = now
      scored[2 * k] = id
      out[#out + 1] = id
      i = i + 2
    end
    -- a group is at most one chunk (DISPATCH_CHUNK in queue.py): within what unpack spreads
    if redis.call('RPUSH', base .. 'lane:' .. lane, unpack(ids)) == n then
      -- the lane was empty: list it and wake a worker (see below)
      redis.call('RPUSH', KEYS[1], lane)
      woken = true
    end
    redis.call('ZADD', KEYS[2], unpack(scored))
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
      if delay > 0 then
        if not server_now then
          server_now = now_ms()
        end
        redis.call('HSET', jk, 'data', data, 'lane', lane, 'enqueued_at', now, 'attempts', 0, 'releases', 0,
          'exceptions', 0, 'lost', 0, 'state', 'delayed')
        redis.call('ZADD', KEYS[3], server_now + delay, id)
      else
        redis.call('HSET', jk, 'data', data, 'lane', lane, 'enqueued_at', now, 'attempts', 0, 'releases', 0,
          'exceptions', 0, 'lost', 0, 'state', 'ready', 'ready_at', now)
        if redis.call('RPUSH', base .. 'lane:' .. lane, id) == 1 then
          redis.call('RPUSH', KEYS[1], lane)
          -- The lane was empty: an idle worker may be blocked on the wake list.  Jobs added to a
          -- lane that already waits find a worker that is busy (it pops again when a slot frees)
          -- or one already woken (the one that takes the token passes the word on while work
          -- remains, see pop_with_lease.lua).  The pop that empties the queue clears the tokens.
          woken = true
        end
        redis.call('ZADD', KEYS[2], now, id)
      end
      if ukey ~= '' then
        redis.call('HSET', jk, 'unique', ukey, 'unique_for', ufor)
      end
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
      if sink ~= '' then
        redis.call('HSET', jk, 'sink', sink, 'sink_field', sfield, 'sink_ttl', sttl)
      end
    end
  end
end
if added > 0 then
  -- Listed in the same script that adds its jobs: a queue forgotten a moment before (see
  -- forget_queue.lua, which deletes the counters with the listing) is listed again, and one with
  -- jobs is never left out.  Counters that already counted a dispatch mean it is listed.
  if redis.call('HINCRBY', KEYS[5], 'dispatched', added) == added then
    redis.call('SADD', KEYS[6], string.match(base, '{q:(.+)}:$'))
  end
end
if woken then
  -- One token per call: the worker that takes it passes the word on while work remains.
  redis.call('RPUSH', KEYS[4], '1')
end
return out
