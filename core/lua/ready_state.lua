-- ready_state: the ready jobs of one queue that could start now, for telemetry, `status` and the
-- balancer.  A job of a batch at its max_running (an eval run's samples queued behind the ones
-- running) is ready but held: it starts when one of its batch ends, so it is no demand for more
-- workers and its wait is not a wait for a worker.
-- KEYS[1] lanes  KEYS[2] ready  ARGV[1] key base
-- Returns {ready jobs that could start now, ms timestamp the oldest of them became ready or -1,
--          ready jobs held by their batch's max_running}
local base = ARGV[1]
local total = redis.call('ZCARD', KEYS[2])
if total == 0 then
  return {0, -1, 0}
end
local held = 0
local heads = {}  -- the ids at the head of each lane that may start
local capped = false
for _, lane in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local room = b_room(base, lane)
  local lk = base .. 'lane:' .. lane
  if room then
    local n = redis.call('LLEN', lk)
    if room < 0 then
      room = 0
    end
    if n > room then
      held = held + n - room
      capped = true
    end
    if room > 0 then
      heads[#heads + 1] = redis.call('LINDEX', lk, 0)
    end
  else
    heads[#heads + 1] = redis.call('LINDEX', lk, 0)
  end
end
if held > total then
  held = total
end
local oldest = -1
if not capped then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if first[2] then
    oldest = tonumber(first[2])
  end
else
  for _, id in ipairs(heads) do
    local at = id and redis.call('ZSCORE', KEYS[2], id)
    if at and (oldest < 0 or tonumber(at) < oldest) then
      oldest = tonumber(at)
    end
  end
end
return {total - held, oldest, held}
