-- batch_summary: the batches not finished yet in the console's order (running first, then
-- pending; newest first in each) and the counts a summary shows, in one read however many
-- batches the queue keeps.  Read-only.
-- KEYS[1] <base>batches:active  KEYS[2] <base>batches:with_failures
-- ARGV[1] <base>  ARGV[2] how many batches to return at most (the first ones in that order)
-- Returns {running, pending, finished with failures, id, created ms, rank, id, created ms, rank, ...}
-- with rank 0 for running and 1 for pending.
local entries = redis.call('ZREVRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local groups = {{}, {}}
for i = 1, #entries, 2 do
  local state = redis.call('HGET', ARGV[1] .. 'batch:' .. entries[i], 'state')
  local g = nil
  if state == 'running' then
    g = groups[1]
  elseif state == 'pending' then
    g = groups[2]
  end
  if g then
    g[#g + 1] = entries[i]
    g[#g + 1] = entries[i + 1]
  end
end
local out = {#groups[1] / 2, #groups[2] / 2, redis.call('ZCARD', KEYS[2])}
local limit = tonumber(ARGV[2])
for rank, g in ipairs(groups) do
  for i = 1, #g, 2 do
    if (#out - 3) / 3 >= limit then
      return out
    end
    out[#out + 1] = g[i]
    out[#out + 1] = g[i + 1]
    out[#out + 1] = rank - 1
  end
end
return out
