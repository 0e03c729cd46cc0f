-- The prelude, after the lines core/prelude.py renders from the Python constants (WAKE_CAP,
-- MINUTE_TTL, EVENTS_MAXLEN, RT_BOUNDS): what the scripts share, each written once.  First the
-- clock, the wake-up push, the result sink, the minute counters and the event stream; then the
-- batch helpers (b_*) and the failed-store indexes (f_*).  Every script is loaded with the
-- definitions it calls, directly or through another one (script_source in core/queue.py), so
-- keep one definition per paragraph, after what it calls.

-- The Redis server's clock in ms: every lease, delay and retention uses it, not the hosts'.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- One wake-up token for an idle worker blocked on the queue's wake list, unless WAKE_CAP are
-- waiting already (each woken worker passes the word on while work remains).
local function wake(wake_key)
  if redis.call('LLEN', wake_key) < WAKE_CAP then
    redis.call('RPUSH', wake_key, '1')
  end
end

-- Tokens until one per ready job is waiting, at most WAKE_CAP (a paused queue continues).
local function wake_fill(wake_key, ready)
  for _ = 1, math.min(ready, WAKE_CAP) - redis.call('LLEN', wake_key) do
    redis.call('RPUSH', wake_key, '1')
  end
end

-- Write a job's outcome JSON to its result sink: the first write of a field wins, and the field
-- travels with its outcome on the sink's :done list, which the producer blocks on (no extra
-- read).  Both keys are kept `ttl` seconds from this write (QueueKeys.results, results_done).
-- A caller that writes many outcomes passes `later` (a table) and calls sink_expire(later) once
-- at the end: each sink's keys get the expiry of its last write, as with one EXPIRE per write.
local function sink_write(base, sink, field, ttl, outcome, later)
  local rk = base .. 'results:' .. sink
  if redis.call('HSETNX', rk, field, outcome) == 1 then
    redis.call('RPUSH', rk .. ':done', field .. '\t' .. outcome)
  end
  if later then
    if not later[rk] then
      later[#later + 1] = rk
    end
    later[rk] = ttl
  else
    redis.call('EXPIRE', rk, ttl)
    redis.call('EXPIRE', rk .. ':done', ttl)
  end
end

local function sink_expire(later)
  for _, rk in ipairs(later) do
    redis.call('EXPIRE', rk, later[rk])
    redis.call('EXPIRE', rk .. ':done', later[rk])
  end
end

-- Count into the telemetry hash of the minute `now` (ms) falls in (QueueKeys.minute): field `a`
-- by `n`, and `b` by `m` when given; the hash is kept MINUTE_TTL seconds.  Returns its key.
local function tm_count(base, now, a, n, b, m)
  local mk = base .. 'm:' .. math.floor(now / 60000)
  redis.call('HINCRBY', mk, a, n)
  if b then
    redis.call('HINCRBY', mk, b, m)
  end
  redis.call('EXPIRE', mk, MINUTE_TTL)
  return mk
end

-- The prefix-wide event stream ("<prefix>:events", GlobalKeys.events) of any key of a queue.
local function events_key(key)
  return string.match(key, '^(.*):{q:') .. ':events'
end

-- Append an event: `fields` (name, value, ...) and its time `at` (epoch seconds), to a stream
-- capped near EVENTS_MAXLEN entries.
local function add_event(stream, fields, at)
  fields[#fields + 1] = 'at'
  fields[#fields + 1] = string.format('%.3f', at)
  redis.call('XADD', stream, 'MAXLEN', '~', EVENTS_MAXLEN, '*', unpack(fields))
end

-- ---- Batches (b_*), for the scripts that change one.
-- A batch lives in its queue's hash tag: <base>batch:<id> (HASH), <base>batch:<id>:failed and
-- <base>batch:<id>:cancelled (SETs of job ids), <base>batches (ZSET id -> created ms).
-- Its jobs run in the lane named after the batch, so batches sharing a queue are served
-- round-robin.  Callbacks run as jobs named evalharness.batch_callback, enqueued by the one
-- script execution that observes the transition, so each runs exactly once per transition.

local function b_event(base, kind, bid, bk, extra)
  local r = redis.call('HMGET', bk, 'name', 'queue', 'state', 'total', 'failed')
  local fields = {'kind', kind, 'batch', bid, 'name', r[1] or '', 'queue', r[2] or '', 'state', r[3] or '',
    'total', r[4] or '0', 'failed', r[5] or '0'}
  local at = now_ms() / 1000
  if extra then
    fields[#fields + 1] = 'message'
    fields[#fields + 1] = extra
  end
  add_event(events_key(base), fields, at)
end

local function b_callback(base, lanes_key, ready_key, wake_key, bid, bk, stage)
  local cbs = redis.call('HGET', bk, 'cb:' .. stage)
  if not cbs or cbs == '' then
    return
  end
  local now = now_ms()
  local seq = redis.call('HINCRBY', bk, 'cb_seq', 1)
  local id = 'cb-' .. bid .. '-' .. stage .. '-' .. seq
  local queue = redis.call('HGET', bk, 'queue')
  local env = cjson.encode({id = id, name = 'evalharness.batch_callback',
    payload = {batch = bid, stage = stage, queue = queue}, queue = queue,
    enqueued_at = now / 1000, tags = {}})
  local jk = base .. 'job:' .. id
  redis.call('HSET', jk, 'data', env, 'lane', '_cb', 'enqueued_at', now, 'attempts', 0, 'releases', 0,
    'exceptions', 0, 'lost', 0, 'state', 'ready', 'ready_at', now)
  -- callbacks go ahead of other work: their own lane, first in the rotation
  if redis.call('RPUSH', base .. 'lane:_cb', id) == 1 then
    redis.call('LPUSH', lanes_key, '_cb')
  end
  redis.call('ZADD', ready_key, now, id)
  wake(wake_key)
end

-- Jobs a batch declared (create with a total) that were not dispatched yet and still may be:
-- none once the batch is sealed (its producer will add no more), cancelled or failed.
local function b_undispatched(bk, state)
  local r = redis.call('HMGET', bk, 'declared', 'dispatched', 'sealed')
  if not r[1] or r[3] == '1' or state == 'cancelled' or state == 'failed' then
    return 0
  end
  local left = tonumber(r[1]) - tonumber(r[2] or '0')
  if left > 0 then
    return left
  end
  return 0
end

-- A retry reopens a batch: one that was cancelled or failed stays sealed, since the jobs it
-- declared and never dispatched will not come any more.
local function b_reopen(bk)
  local state = redis.call('HGET', bk, 'state')
  -- bk is <base>batch:<id>, the base ending with the queue's hash tag
  local base, bid = string.match(bk, '^([^{]*{[^}]*}:)batch:(.*)$')
  if base then
    redis.call('ZREM', base .. 'batches:with_failures', bid)
  end
  if state == 'cancelled' or state == 'failed' then
    redis.call('HSET', bk, 'sealed', '1')
  end
  redis.call('HSET', bk, 'state', 'running')
end

-- Batches not finished yet: <base>batches:active (ZSET id -> created ms), so the console's
-- active list reads those and not every batch.  Added at creation and by whatever reopens or
-- runs a batch (a retry, a pop of one of its jobs), removed when the batch finishes.
local function b_active(base, bid, bk)
  redis.call('ZADD', base .. 'batches:active', 'NX', redis.call('HGET', bk, 'created_at') or now_ms(), bid)
end

-- The batch has no pending job left: finish it once (per round; a retry opens a new round).
-- A batch whose declared jobs are not all dispatched yet is not finished, whatever ran so far.
local function b_maybe_finish(base, lanes_key, ready_key, wake_key, bid, bk)
  local pending = tonumber(redis.call('HGET', bk, 'pending') or '0')
  if pending > 0 then
    return
  end
  local state = redis.call('HGET', bk, 'state')
  if b_undispatched(bk, state) > 0 then
    return
  end
  if redis.call('HSETNX', bk, 'finished_at', now_ms()) == 0 then
    return
  end
  redis.call('ZREM', base .. 'batches:active', bid)
  if state ~= 'cancelled' and state ~= 'failed' then
    if tonumber(redis.call('HGET', bk, 'failed') or '0') > 0 then
      state = 'finished_with_failures'
    else
      state = 'succeeded'
    end
    redis.call('HSET', bk, 'state', state)
  end
  if state == 'finished_with_failures' then
    -- counted by the console's summary without reading every finished batch
    redis.call('ZADD', base .. 'batches:with_failures', now_ms(), bid)
  end
  if state == 'succeeded' then
    b_callback(base, lanes_key, ready_key, wake_key, bid, bk, 'then')
  end
  b_callback(base, lanes_key, ready_key, wake_key, bid, bk, 'finally')
  b_event(base, 'batch_finished', bid, bk, nil)
end

-- Take the batch's ready jobs out of the queue at once (kept, for a retry, in :cancelled).
local function b_remove_queued(base, lanes_key, ready_key, bid, bk)
  local lk = base .. 'lane:' .. bid
  local ids = redis.call('LRANGE', lk, 0, -1)
  for _, id in ipairs(ids) do
    redis.call('ZREM', ready_key, id)
    redis.call('HSET', base .. 'job:' .. id, 'state', 'cancelled')
    redis.call('SADD', bk .. ':cancelled', id)
  end
  redis.call('DEL', lk)
  redis.call('LREM', lanes_key, 0, bid)
  if #ids > 0 then
    redis.call('HINCRBY', bk, 'pending', -#ids)
  end
  return #ids
end

-- The batch's jobs running now: <base>batch:<id>:running (SET of job ids), added by the pop that
-- reserves one and removed by whatever ends the reservation (ack, fail, release, lapse), so the
-- running count is exact and a cancel finds the jobs to tell to stop without a scan.
local function b_running(base, bid, id)
  redis.call('SADD', base .. 'batch:' .. bid .. ':running', id)
end

-- A job of the batch stopped running.  When the batch runs at most max_running at once and was
-- at that limit, a job of it that waits can start now: a worker is woken for it, unless the
-- caller pops next itself (wake_key nil: an ack sent with a pop, a lapse found by a pop).
local function b_not_running(base, bid, id, wake_key)
  local rk = base .. 'batch:' .. bid .. ':running'
  if redis.call('SREM', rk, id) == 1 and wake_key then
    local limit = redis.call('HGET', base .. 'batch:' .. bid, 'max_running')
    if limit and redis.call('SCARD', rk) == tonumber(limit) - 1 then
      wake(wake_key)
    end
  end
end

-- How many more jobs the batch `bid` may start now under its max_running, or nil for no limit
-- (also for a lane that is not a batch's).
local function b_room(base, bid)
  local bk = base .. 'batch:' .. bid
  local limit = redis.call('HGET', bk, 'max_running')
  if not limit then
    return nil
  end
  return tonumber(limit) - redis.call('SCARD', bk .. ':running')
end

-- Completions per minute, O(1): the count of the current minute and of the one before
-- (rate_min, rate_this, rate_prev), from which a reader estimates the last 60 seconds.  `n`
-- completions at once (default 1).
local function b_count_rate(bk, n)
  n = n or 1
  local minute = math.floor(now_ms() / 60000)
  local r = redis.call('HMGET', bk, 'rate_min', 'rate_this')
  local last = tonumber(r[1] or '-1')
  if last == minute then
    redis.call('HINCRBY', bk, 'rate_this', n)
  else
    redis.call('HSET', bk, 'rate_min', minute, 'rate_prev', last == minute - 1 and (r[2] or '0') or '0', 'rate_this', n)
  end
end

-- A job of batch `bid` finished: ok, or failed for good.  A job an operator cancelled
-- (`cancelled`) counts as failed but does not fail a batch that allows no failures.
local function b_job_done(base, lanes_key, ready_key, wake_key, bid, id, ok, cancelled)
  local bk = base .. 'batch:' .. bid
  if redis.call('EXISTS', bk) == 0 then
    return
  end
  redis.call('HINCRBY', bk, 'pending', -1)
  redis.call('HINCRBY', bk, 'processed', 1)
  b_count_rate(bk)
  local state = redis.call('HGET', bk, 'state')
  if ok then
    if redis.call('HGET', bk, 'cb:progress') and redis.call('HSETNX', bk, 'progress_queued', '1') == 1 then
      b_callback(base, lanes_key, ready_key, wake_key, bid, bk, 'progress')
    end
  else
    redis.call('HINCRBY', bk, 'failed', 1)
    redis.call('SADD', bk .. ':failed', id)
    if redis.call('HSETNX', bk, 'catch_done', '1') == 1 then
      b_callback(base, lanes_key, ready_key, wake_key, bid, bk, 'catch')
    end
    if not cancelled and redis.call('HGET', bk, 'allow_failures') ~= '1' and state ~= 'cancelled' and state ~= 'failed' then
      redis.call('HSET', bk, 'state', 'failed', 'cancelled_at', now_ms())
      b_remove_queued(base, lanes_key, ready_key, bid, bk)
      b_event(base, 'batch_failed', bid, bk, 'a job failed and the batch does not allow failures')
    end
  end
  b_maybe_finish(base, lanes_key, ready_key, wake_key, bid, bk)
end

-- `n` jobs of batch `bid` succeeded in one call (an ack of several): what `n` calls of
-- b_job_done(.., ok) do, with the batch's counters, its rate and its finish checked once.
local function b_jobs_ok(base, lanes_key, ready_key, wake_key, bid, n)
  local bk = base .. 'batch:' .. bid
  if redis.call('EXISTS', bk) == 0 then
    return
  end
  redis.call('HINCRBY', bk, 'pending', -n)
  redis.call('HINCRBY', bk, 'processed', n)
  b_count_rate(bk, n)
  if redis.call('HGET', bk, 'cb:progress') and redis.call('HSETNX', bk, 'progress_queued', '1') == 1 then
    b_callback(base, lanes_key, ready_key, wake_key, bid, bk, 'progress')
  end
  b_maybe_finish(base, lanes_key, ready_key, wake_key, bid, bk)
end

-- ---- The failed store's indexes (f_*), for the scripts that put jobs into it or take them
-- out, so a filtered page never scans the store.
-- A failed job is indexed under its batch, its job name and its exception class (or its failure
-- kind when it has no class): <base>failed:<facet>:<value> (ZSET id -> failed ms), and each
-- facet's values are listed in <base>failed_values:<facet> (ZSET value -> latest failed ms).
-- Every write trims what is older than the store's retention and pushes the key's expiry out by
-- the retention, so an index never outlives the records it points to by more than that.

local F_FACETS = {'batch', 'f_name', 'f_exc'}
local F_NAMES = {'batch', 'name', 'exc'}

local function f_index(base, id, jk, at, now, retention)
  local vals = redis.call('HMGET', jk, unpack(F_FACETS))
  local cutoff = now - retention
  for i, facet in ipairs(F_NAMES) do
    local v = vals[i]
    if v and v ~= '' then
      local ik = base .. 'failed:' .. facet .. ':' .. v
      redis.call('ZADD', ik, at, id)
      redis.call('ZREMRANGEBYSCORE', ik, '-inf', cutoff)
      redis.call('PEXPIRE', ik, retention)
      local vk = base .. 'failed_values:' .. facet
      local latest = tonumber(redis.call('ZSCORE', vk, v) or '0')
      if at > latest then
        redis.call('ZADD', vk, at, v)
      end
      redis.call('ZREMRANGEBYSCORE', vk, '-inf', cutoff)
      redis.call('PEXPIRE', vk, retention)
    end
  end
end

local function f_unindex(base, id, jk)
  local vals = redis.call('HMGET', jk, unpack(F_FACETS))
  for i, facet in ipairs(F_NAMES) do
    local v = vals[i]
    if v and v ~= '' then
      redis.call('ZREM', base .. 'failed:' .. facet .. ':' .. v, id)
    end
  end
end

-- Record a job as failed for good (it is no longer reserved or queued): the failed store, its
-- indexes, its idempotency key released, and its failure written to its result sink.
-- Returns the job's batch id, or false.
local function f_record(base, id, jk, failed_key, failure, name, exc, now, retention)
  local rec = redis.call('HMGET', jk, 'sink', 'sink_field', 'sink_ttl', 'unique', 'batch')
  if rec[4] and redis.call('GET', base .. 'unique:' .. rec[4]) == id then
    redis.call('DEL', base .. 'unique:' .. rec[4])
  end
  redis.call('HSET', jk, 'state', 'failed', 'owner', '', 'failure', failure, 'failed_at', now,
    'f_name', name, 'f_exc', exc)
  redis.call('PEXPIRE', jk, retention)
  redis.call('ZADD', failed_key, now, id)
  redis.call('ZREMRANGEBYSCORE', failed_key, '-inf', now - retention)
  f_index(base, id, jk, now, now, retention)
  if rec[1] then
    sink_write(base, rec[1], rec[2], rec[3], '{"error":' .. failure .. '}')
  end
  return rec[5]
end
