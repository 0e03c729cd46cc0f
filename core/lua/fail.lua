-- fail: record a reserved job as failed for good, keep it in the failed store (and its indexes),
-- and write the failure to its result sink if it has one, so a producer waiting on it learns at once.
-- KEYS[1] reserved  KEYS[2] failed  KEYS[3] stats  KEYS[4] lanes  KEYS[5] ready  KEYS[6] wake
-- ARGV[1] key base  ARGV[2] owner  ARGV[3] id  ARGV[4] failure JSON  ARGV[5] retention ms
-- ARGV[6] "1" when the attempt raised (counts as an exception)
-- ARGV[7] the job's last checkpoint JSON ("" to keep what is stored)
-- ARGV[8] the failure kind, counted per minute (telemetry) when not ""
-- ARGV[9] job name  ARGV[10] exception class (or the kind)  ARGV[11] the failure kind
-- ARGV[12] the event to append to the stream ("" for none)  ARGV[13] queue  ARGV[14] its message
-- Returns 1, or 0 when the caller no longer held the lease.
local base = ARGV[1]
local id = ARGV[3]
local jk = base .. 'job:' .. id
if redis.call('HGET', jk, 'owner') ~= ARGV[2] then
  return 0
end
local now = now_ms()
local retention = tonumber(ARGV[5])
local kind = ARGV[11] or ''
redis.call('ZREM', KEYS[1], id)
if ARGV[7] and ARGV[7] ~= '' then
  redis.call('HSET', jk, 'checkpoint', ARGV[7])
end
if ARGV[6] == '1' then
  redis.call('HINCRBY', jk, 'exceptions', 1)
end
local bid = f_record(base, id, jk, KEYS[2], ARGV[4], ARGV[9] or '', ARGV[10] or '', now, retention)
redis.call('HINCRBY', KEYS[3], kind == 'cancelled' and 'cancelled' or 'failed', 1)
if ARGV[8] and ARGV[8] ~= '' and kind ~= 'cancelled' then
  local timeout = ARGV[8] == 'timeout'
  tm_count(base, now, 'failed', 1, timeout and 'timeouts', 1)
  if timeout then
    redis.call('HINCRBY', KEYS[3], 'timeouts', 1)
  end
end
if bid then
  b_not_running(base, bid, id, KEYS[6])
  b_job_done(base, KEYS[4], KEYS[5], KEYS[6], bid, id, false, kind == 'cancelled')
end
if ARGV[12] and ARGV[12] ~= '' then
  add_event(events_key(base), {'kind', ARGV[12], 'queue', ARGV[13], 'job', ARGV[9], 'id', id, 'message', ARGV[14]},
    now / 1000)
end
return 1
