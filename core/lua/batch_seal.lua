-- batch_seal: the batch's producer will add no more jobs (an eval run that stopped early, for
-- example at its batch timeout): jobs it declared but never dispatched no longer hold the batch
-- open, so it finishes once the dispatched ones are done (now, when none is pending).
-- KEYS[1] lanes  KEYS[2] ready  KEYS[3] wake
-- ARGV[1] key base  ARGV[2] batch id
-- Returns the number of declared jobs that were never dispatched, or -1 when there is no such batch.
local base, bid = ARGV[1], ARGV[2]
local bk = base .. 'batch:' .. bid
if redis.call('EXISTS', bk) == 0 then
  return -1
end
local left = b_undispatched(bk, redis.call('HGET', bk, 'state'))
redis.call('HSET', bk, 'sealed', '1')
b_maybe_finish(base, KEYS[1], KEYS[2], KEYS[3], bid, bk)
return left
