-- forget_queue: drop a queue nobody uses any more from the list of known queues, atomically
-- with its last check, so a dispatch arriving at the same moment either lands first (and the
-- queue stays) or after (and dispatch.lua lists the queue again).
-- KEYS[1] the known-queues set  KEYS[2] idle-since hash  KEYS[3] ready  KEYS[4] delayed
-- KEYS[5] reserved  KEYS[6] failed  KEYS[7] workers  KEYS[8] batches  KEYS[9] lanes
-- KEYS[10] stats  KEYS[11] wake
-- ARGV[1] queue name  ARGV[2] retention ms (0: forget now if unused)
-- A queue is unused with no job ready, delayed, reserved or failed, no batch record and no live
-- worker.  The idle-since hash remembers when it was first seen unused and its `dispatched`
-- counter then, so a queue used in between (even briefly) starts its retention again.
-- Returns {state, ready, delayed, reserved, failed, workers, batches, idle since ms or -1};
-- state 0 = in use, 1 = unused for less than the retention, 2 = forgotten.
local q = ARGV[1]
local retention = tonumber(ARGV[2])
local now = now_ms()
local counts = {
  redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]),
  redis.call('ZCARD', KEYS[5]),
  redis.call('ZCARD', KEYS[6]),
  redis.call('ZCOUNT', KEYS[7], now, '+inf'),
  redis.call('ZCARD', KEYS[8]),
}
local used = false
for _, n in ipairs(counts) do
  if n > 0 then
    used = true
  end
end
local function reply(state, since)
  return {state, counts[1], counts[2], counts[3], counts[4], counts[5], counts[6], since}
end
if used then
  redis.call('HDEL', KEYS[2], q)
  return reply(0, -1)
end
local dispatched = redis.call('HGET', KEYS[10], 'dispatched') or '0'
if retention > 0 then
  local mark = redis.call('HGET', KEYS[2], q)
  local since, seen = nil, nil
  if mark then
    since, seen = string.match(mark, '^(%d+):(%d+)$')
  end
  if not since or seen ~= dispatched then
    redis.call('HSET', KEYS[2], q, now .. ':' .. dispatched)
    return reply(1, now)
  end
  since = tonumber(since)
  if now - since < retention then
    return reply(1, since)
  end
end
redis.call('SREM', KEYS[1], q)
redis.call('HDEL', KEYS[2], q)
-- its bookkeeping goes with it: a queue used again later starts from zero
redis.call('DEL', KEYS[7], KEYS[9], KEYS[10], KEYS[11])
return reply(2, -1)
