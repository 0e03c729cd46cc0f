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
local lanes = redis.call('LRANGE', KEYS[1], 0, -1)
local rooms = {}  -- per lane: how many of its jobs may start now, or false for no limit
for i, lane in ipairs(lanes) do
  local room = b_room(base, lane)
  rooms[i] = room and math.max(room, 0) or false
  if room then
    held = held + math.max(redis.call('LLEN', base .. 'lane:' .. lane) - rooms[i], 0)
  end
end
if held == 0 then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {total, first[2] and tonumber(first[2]) or -1, 0}
end
-- the oldest job that may start is at the head of a lane with room
local oldest = -1
for i, lane in ipairs(lanes) do
  if rooms[i] ~= 0 then
    local id = redis.call('LINDEX', base .. 'lane:' .. lane, 0)
    local at = id and redis.call('ZSCORE', KEYS[2], id)
    if at and (oldest < 0 or tonumber(at) < oldest) then
      oldest = tonumber(at)
    end
  end
end
held = math.min(held, total)
return {total - held, oldest, held}
