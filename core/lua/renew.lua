-- renew: extend the leases the caller holds, in one call for all of its jobs on a queue, carry
-- each job's reported progress to its record, and tell the caller which jobs an operator asked
-- to cancel (so a worker learns of a cancel at its next renewal, with no extra call).
-- KEYS[1] reserved
-- ARGV[1] key base  ARGV[2] owner  ARGV[3] lease ms
-- then per job: id, progress 0..1 ("" when unchanged), progress note, timeout s ("" when unchanged)
-- Returns {ids whose lease the caller no longer holds, ids flagged for cancel}.
local base = ARGV[1]
local owner = ARGV[2]
local now = now_ms()
local deadline = now + tonumber(ARGV[3])
local lost = {}
local cancel = {}
for i = 4, #ARGV, 4 do
  local id = ARGV[i]
  local jk = base .. 'job:' .. id
  local rec = redis.call('HMGET', jk, 'owner', 'cancel')
  if rec[1] == owner then
    redis.call('ZADD', KEYS[1], 'XX', deadline, id)
    redis.call('HSET', jk, 'renewed_at', now, 'lease_ms', ARGV[3])
    redis.call('HINCRBY', jk, 'renewals', 1)
    if ARGV[i + 1] and ARGV[i + 1] ~= '' then
      redis.call('HSET', jk, 'progress', ARGV[i + 1], 'progress_note', ARGV[i + 2] or '')
    end
    if ARGV[i + 3] and ARGV[i + 3] ~= '' then
      redis.call('HSET', jk, 'timeout', ARGV[i + 3])
    end
    if rec[2] then
      cancel[#cancel + 1] = id
    end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancel}
