-- cancel_job: an operator cancels one job.  A running job is flagged: its worker learns at its
-- next lease renewal and stops it (recorded as failed, kind `cancelled`, with its checkpoint).
-- A queued or delayed job leaves the queue at once and is recorded the same way.
-- KEYS[1] lanes  KEYS[2] ready  KEYS[3] delayed  KEYS[4] reserved  KEYS[5] failed  KEYS[6] stats
-- KEYS[7] wake
-- ARGV[1] key base  ARGV[2] job id  ARGV[3] failure JSON (used for a job that had not started)
-- ARGV[4] retention ms  ARGV[5] job name  ARGV[6] exception class recorded
-- Returns {what, state}: what = "told" (running, flagged now), "already" (running, flagged before),
-- "removed" (was queued or delayed; recorded cancelled), "finished" (failed, retried, cancelled
-- with its batch...: nothing changed) or "missing" (no such job: completed, forgotten or expired).
local base, id = ARGV[1], ARGV[2]
local jk = base .. 'job:' .. id
local rec = redis.call('HMGET', jk, 'state', 'lane', 'cancel', 'data')
if not rec[4] then
  return {'missing', ''}
end
local state = rec[1] or 'ready'
local now = now_ms()
if state == 'reserved' and redis.call('ZSCORE', KEYS[4], id) then
  if rec[3] then
    return {'already', state}
  end
  redis.call('HSET', jk, 'cancel', '1', 'cancel_at', now)
  return {'told', state}
end
local queued = false
if state == 'ready' and redis.call('ZREM', KEYS[2], id) == 1 then
  local lane = rec[2] or '_'
  local lk = base .. 'lane:' .. lane
  redis.call('LREM', lk, 0, id)
  if redis.call('LLEN', lk) == 0 then
    redis.call('LREM', KEYS[1], 0, lane)
  end
  queued = true
elseif state == 'delayed' and redis.call('ZREM', KEYS[3], id) == 1 then
  queued = true
end
if not queued then
  return {'finished', state}
end
redis.call('HSET', jk, 'cancel', '1', 'cancel_at', now)
local bid = f_record(base, id, jk, KEYS[5], ARGV[3], ARGV[5], ARGV[6], now, tonumber(ARGV[4]))
redis.call('HINCRBY', KEYS[6], 'cancelled', 1)
if bid then
  b_job_done(base, KEYS[1], KEYS[2], KEYS[7], bid, id, false, true)
end
return {'removed', state}
