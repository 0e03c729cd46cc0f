-- renew: extend the leases the caller holds, in one call for all of its jobs on a queue.
-- KEYS[1] reserved
-- ARGV[1] key base  ARGV[2] owner  ARGV[3] lease ms  ARGV[4..] job ids
-- Returns the ids whose lease the caller no longer holds.
local base = ARGV[1]
local owner = ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[3])
local lost = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', base .. 'job:' .. id, 'owner') == owner then
    redis.call('ZADD', KEYS[1], 'XX', deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
