-- ack: finish jobs that succeeded, if the caller still holds their lease, and store the
-- result of each job that was dispatched with a result sink (first write wins).
-- KEYS[1] reserved  KEYS[2] stats
-- ARGV[1] key base  ARGV[2] owner  then pairs: job id, result JSON ("" for none)
-- Returns the ids whose lease the caller no longer held (they were not acknowledged).
local base = ARGV[1]
local owner = ARGV[2]
local stale = {}
local done = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local jk = base .. 'job:' .. id
  local rec = redis.call('HMGET', jk, 'owner', 'sink', 'sink_field', 'sink_ttl', 'unique', 'unique_for')
  if rec[1] == owner then
    if rec[2] then
      local rk = base .. 'results:' .. rec[2]
      local result = ARGV[i + 1]
      if result == '' then
        result = 'null'
      end
      if redis.call('HSETNX', rk, rec[3], '{"result":' .. result .. '}') == 1 then
        redis.call('RPUSH', rk .. ':done', rec[3])
      end
      redis.call('EXPIRE', rk, rec[4])
      redis.call('EXPIRE', rk .. ':done', rec[4])
    end
    if rec[5] then
      local uk = base .. 'unique:' .. rec[5]
      if redis.call('GET', uk) == id then
        if tonumber(rec[6]) > 0 then
          redis.call('PEXPIRE', uk, rec[6])
        else
          redis.call('DEL', uk)
        end
      end
    end
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', jk)
    done = done + 1
  else
    stale[#stale + 1] = id
  end
end
if done > 0 then
  redis.call('HINCRBY', KEYS[2], 'completed', done)
end
return stale
