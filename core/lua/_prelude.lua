-- The prelude, after the lines core/prelude.py renders from the Python constants (WAKE_CAP,
-- MINUTE_TTL, EVENTS_MAXLEN, RT_BOUNDS): the clock, the wake-up push, the result sink, the minute
-- counters and the event stream, each written once.  Every script is loaded with the
-- definitions it calls (script_source in core/scripts.py), so keep one per paragraph.

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
local function sink_write(base, sink, field, ttl, outcome)
  local rk = base .. 'results:' .. sink
  if redis.call('HSETNX', rk, field, outcome) == 1 then
    redis.call('RPUSH', rk .. ':done', field .. '\t' .. outcome)
  end
  redis.call('EXPIRE', rk, ttl)
  redis.call('EXPIRE', rk .. ':done', ttl)
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
