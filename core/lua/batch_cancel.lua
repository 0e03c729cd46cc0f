-- batch_cancel: stop a batch now: its queued jobs leave the queue at once, its running jobs are
-- flagged so that their workers stop them at their next lease renewal (recorded as cancelled),
-- its state becomes cancelled, and `finally` runs once no job is pending.
-- KEYS[1] lanes  KEYS[2] ready  KEYS[3] wake
-- ARGV[1] key base  ARGV[2] batch id
-- Returns {queued jobs removed, running jobs told to stop, the state it had, 1}, or {-1, 0, "", 0}
-- when there is no such batch.  A batch already cancelled or finished is left as it is
-- ({0, 0, state, 0}).
local base, bid = ARGV[1], ARGV[2]
local bk = base .. 'batch:' .. bid
if redis.call('EXISTS', bk) == 0 then
  return {-1, 0, '', 0}
end
local rec = redis.call('HMGET', bk, 'state', 'pending')
local state = rec[1] or 'pending'
local pending = tonumber(rec[2] or '0')
if state == 'cancelled' or state == 'succeeded' or state == 'finished_with_failures'
    or (state == 'failed' and pending <= 0) then
  return {0, 0, state, 0}
end
local now = now_ms()
redis.call('HSET', bk, 'state', 'cancelled', 'cancelled_at', now)
local removed = b_remove_queued(base, KEYS[1], KEYS[2], bid, bk)
local told = 0
for _, id in ipairs(redis.call('SMEMBERS', bk .. ':running')) do
  local jk = base .. 'job:' .. id
  local r = redis.call('HMGET', jk, 'state', 'cancel')
  if r[1] == 'reserved' then
    if not r[2] then
      redis.call('HSET', jk, 'cancel', '1', 'cancel_at', now)
    end
    told = told + 1
  end
end
b_event(base, 'batch_cancelled', bid, bk, removed .. ' queued job(s) removed, ' .. told .. ' running told to stop')
b_maybe_finish(base, KEYS[1], KEYS[2], KEYS[3], bid, bk)
return {removed, told, state, 1}
