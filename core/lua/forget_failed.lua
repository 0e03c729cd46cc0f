-- forget_failed: delete failed jobs from the failed store, their records and their index entries.
-- KEYS[1] failed
-- ARGV[1] key base  ARGV[2..] job ids
-- Returns the ids forgotten (those not in the store, e.g. already retried or forgotten, are left alone).
local base = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], id) then
    local jk = base .. 'job:' .. id
    f_unindex(base, id, jk)
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', jk)
    out[#out + 1] = id
  end
end
return out
