-- batch_cancel: stop a batch now: its queued jobs leave the queue at once (running ones may
-- finish), its state becomes cancelled, and `finally` runs once no job is pending.
-- KEYS[1] lanes  KEYS[2] ready  KEYS[3] wake
-- ARGV[1] key base  ARGV[2] batch id
-- Returns the number of queued jobs removed, or -1 when there is no such batch.
local base, bid = ARGV[1], ARGV[2]
local bk = base .. 'batch:' .. bid
if redis.call('EXISTS', bk) == 0 then
  return -1
end
local state = redis.call('HGET', bk, 'state')
if state == 'cancelled' then
  return 0
end
redis.call('HSET', bk, 'state', 'cancelled', 'cancelled_at', b_now())
local removed = b_remove_queued(base, KEYS[1], KEYS[2], bid, bk)
b_event(base, 'batch_cancelled', bid, bk, removed .. ' queued job(s) removed')
if state == 'succeeded' or state == 'finished_with_failures' then
  return removed
end
b_maybe_finish(base, KEYS[1], KEYS[2], KEYS[3], bid, bk)
return removed
