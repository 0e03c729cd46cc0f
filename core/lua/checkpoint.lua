-- checkpoint: save a running job's partial state, if the caller still holds its lease.
-- KEYS[1] reserved (unused, keeps the script's keys on the queue's slot)
-- ARGV[1] key base  ARGV[2] owner  ARGV[3] id  ARGV[4] state JSON
-- Returns 1, or 0 when the caller no longer held the lease.
local jk = ARGV[1] .. 'job:' .. ARGV[3]
if redis.call('HGET', jk, 'owner') ~= ARGV[2] then
  return 0
end
redis.call('HSET', jk, 'checkpoint', ARGV[4])
return 1
