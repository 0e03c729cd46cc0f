-- pop_with_lease: claim up to COUNT ready jobs of one queue under a lease.
-- First promotes due delayed jobs and puts back jobs whose lease lapsed (their worker died),
-- so every worker doubles as the scheduler and the sweeper and no separate process is needed.
-- Lanes (batches, tenants, the default lane "_") are served round-robin.  A batch created with
-- max_running (an eval run: its concurrency) hands out a job only while fewer of its jobs than
-- that run; the rest wait at the head of their lane until one ends (b_not_running wakes a worker).
-- KEYS[1] lanes  KEYS[2] ready  KEYS[3] delayed  KEYS[4] reserved  KEYS[5] wake  KEYS[6] stats
-- ARGV[1] key base  ARGV[2] count  ARGV[3] lease ms  ARGV[4] owner  ARGV[5] maintenance batch size
-- ARGV[6] "1" when the queue is paused for this caller (maintenance only, no pops); "w" for a pop
--         a worker queued behind its wait on the wake list: none either while its hold key
--         ("<base>hold:<owner>", QueueKeys.hold) says the worker paused or stops meanwhile
-- Returns {ms until the next delayed job is due or -1, then per job: id, envelope, lane,
--          attempts, releases, exceptions, checkpoint JSON or "", "1" when an operator asked
--          to cancel it (it was re-delivered after its worker stopped) or ""}
local base = ARGV[1]
local count = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local owner = ARGV[4]
local maint = tonumber(ARGV[5])
local now = now_ms()

local function make_ready(id, at_head)
  local jk = base .. 'job:' .. id
  local lane = redis.call('HGET', jk, 'lane')
  if not lane then
    return false
  end
  local lk = base .. 'lane:' .. lane
  local n
  if at_head then
    n = redis.call('LPUSH', lk, id)
  else
    n = redis.call('RPUSH', lk, id)
  end
  if n == 1 then
    redis.call('RPUSH', KEYS[1], lane)
  end
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('HSET', jk, 'state', 'ready', 'ready_at', now, 'owner', '')
  return true
end

local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, maint)
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[3], id)
  make_ready(id, false)
end

local lapsed = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, maint)
for _, id in ipairs(lapsed) do
  redis.call('ZREM', KEYS[4], id)
  local lapsed_batch = redis.call('HGET', base .. 'job:' .. id, 'batch')
  if lapsed_batch then
    b_not_running(base, lapsed_batch, id)
  end
  -- Back at the head of its lane: it has waited longest.
  if make_ready(id, true) then
    redis.call('HINCRBY', base .. 'job:' .. id, 'lost', 1)
    redis.call('HINCRBY', KEYS[6], 'lost', 1)
  end
end

-- A paused queue (`evalharness pause --queue`, the key QueueKeys.paused): maintenance above
-- still runs, no job is handed out, and the wake tokens go so idle workers stay blocked until
-- queue_pause.lua pushes new ones on continue.
local queue_paused = redis.call('EXISTS', base .. 'paused') == 1
if queue_paused then
  redis.call('DEL', KEYS[5])
end

local out = {-1}
local got = 0
local held = ARGV[6] == '1' or (ARGV[6] == 'w' and redis.call('EXISTS', base .. 'hold:' .. owner) == 1)
if not held and not queue_paused then
  -- One lane (the common case: plain jobs, or one batch) gives all it can in one LPOP; several
  -- are served round-robin, one job per lane per turn.
  local single = redis.call('LLEN', KEYS[1]) == 1
  local taken = {}  -- every id popped, for one ZREM of the ready index
  local leases = {}  -- score/id pairs, for one ZADD of the reserved index
  local deadline = now + lease
  local stalled = 0  -- turns in a row whose lane gave nothing, its batch at max_running
  -- per batch met in this call: {state, max_running or false, its running count (with a
  -- max_running), whether it is listed active}; read once, kept up to date by this script
  local bcache = {}
  while got < count do
    local lane, ids, lk
    if single then
      lane = redis.call('LINDEX', KEYS[1], 0)
      if not lane then
        break
      end
      lk = base .. 'lane:' .. lane
      local want = count - got
      -- a batch's own lane: take no more than it may start (checked again per job below)
      local room = b_room(base, lane)
      if room and room < want then
        want = room
      end
      if want <= 0 then
        break
      end
      ids = redis.call('LPOP', lk, want)
      if redis.call('LLEN', lk) == 0 then
        redis.call('LREM', KEYS[1], 0, lane)
      end
      if not ids then
        ids = {}
      end
    else
      lane = redis.call('LMOVE', KEYS[1], KEYS[1], 'LEFT', 'RIGHT')
      if not lane then
        break
      end
      lk = base .. 'lane:' .. lane
      local id = redis.call('LPOP', lk)
      if redis.call('LLEN', lk) == 0 then
        -- The lane just rotated to the tail; drop it while it is empty.
        redis.call('RPOP', KEYS[1])
      end
      ids = {id}
      if not id then
        ids = {}
      end
    end
    local capped = false
    for n, id in ipairs(ids) do
      local jk = base .. 'job:' .. id
      local rec = redis.call('HMGET', jk, 'data', 'releases', 'exceptions', 'checkpoint', 'batch', 'cancel', 'attempts',
        'progress', 'timeout')
      local skip = false
      local bc
      if rec[1] and rec[5] then
        local bk = base .. 'batch:' .. rec[5]
        bc = bcache[rec[5]]
        if not bc then
          local b = redis.call('HMGET', bk, 'state', 'max_running')
          local limit = b[2] and tonumber(b[2]) or false
          bc = {b[1], limit, limit and redis.call('SCARD', bk .. ':running'), false}
          bcache[rec[5]] = bc
        end
        local st = bc[1]
        if bc[2] and st ~= 'cancelled' and st ~= 'failed' and bc[3] >= bc[2] then
          -- its batch runs as many as it may: this job and the rest of what was popped go back
          -- to the head of the lane, in order, and the lane is listed again if it had emptied
          capped = true
          local back = {}
          for i = #ids, n, -1 do
            back[#back + 1] = ids[i]
          end
          if redis.call('LPUSH', lk, unpack(back)) == #back then
            redis.call('RPUSH', KEYS[1], lane)
          end
          break
        end
        taken[#taken + 1] = id
        if st == 'cancelled' or st == 'failed' then
          -- a job of a stopped batch (delayed or re-delivered when it stopped): do not run it
          skip = true
          redis.call('HSET', jk, 'state', 'cancelled')
          redis.call('SADD', bk .. ':cancelled', id)
          redis.call('HINCRBY', bk, 'pending', -1)
          b_maybe_finish(base, KEYS[1], KEYS[2], KEYS[5], rec[5], bk)
        elseif st == 'pending' then
          redis.call('HSET', bk, 'state', 'running', 'started_at', now)
          bc[1] = 'running'
        end
        if not skip and st and not bc[4] then
          b_active(base, rec[5], bk)
          bc[4] = true
        end
      else
        taken[#taken + 1] = id
      end
      if rec[1] and not skip then
        local attempts = tonumber(rec[7] or '0') + 1
        -- renewed_at and lease_ms let a reader tell an overdue renewal; progress and the
        -- worker-reported timeout belong to one attempt
        redis.call('HSET', jk, 'state', 'reserved', 'owner', owner, 'started_at', now, 'renewed_at', now,
          'lease_ms', lease, 'attempts', attempts)
        if rec[8] or rec[9] then
          redis.call('HDEL', jk, 'progress', 'progress_note', 'timeout')
        end
        leases[#leases + 1] = deadline
        leases[#leases + 1] = id
        if rec[5] then
          b_running(base, rec[5], id)
          if bc[3] then
            bc[3] = bc[3] + 1
          end
        end
        out[#out + 1] = id
        out[#out + 1] = rec[1]
        out[#out + 1] = lane
        out[#out + 1] = attempts
        out[#out + 1] = rec[2] or '0'
        out[#out + 1] = rec[3] or '0'
        out[#out + 1] = rec[4] or ''
        out[#out + 1] = rec[6] or ''
        got = got + 1
      end
    end
    if single then
      if capped then
        break
      end
    elseif capped then
      -- every listed lane gave nothing in a row: they all wait for a running job to end
      stalled = stalled + 1
      if stalled >= redis.call('LLEN', KEYS[1]) then
        break
      end
    else
      stalled = 0
    end
  end
  -- in slices: unpack has a limit on how many values it spreads
  for i = 1, #taken, 1000 do
    redis.call('ZREM', KEYS[2], unpack(taken, i, math.min(i + 999, #taken)))
  end
  for i = 1, #leases, 2000 do
    redis.call('ZADD', KEYS[4], unpack(leases, i, math.min(i + 1999, #leases)))
  end
  if redis.call('ZCARD', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[5])
  elseif got == count then
    -- Work remains: wake another idle worker.
    wake(KEYS[5])
  end
end

local nxt = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if nxt[2] then
  out[1] = math.max(0, tonumber(nxt[2]) - now)
end
return out
