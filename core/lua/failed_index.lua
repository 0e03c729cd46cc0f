-- failed_index: add failed jobs to the failed-job indexes (the one-time rebuild for jobs that
-- failed before the indexes existed; adding a job twice changes nothing).
-- KEYS[1] failed
-- ARGV[1] key base  ARGV[2] retention ms, then triples: job id, job name, exception class
-- Returns the number of jobs indexed.
local base = ARGV[1]
local retention = tonumber(ARGV[2])
local now = now_ms()
local n = 0
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  local at = redis.call('ZSCORE', KEYS[1], id)
  local jk = base .. 'job:' .. id
  if at and redis.call('EXISTS', jk) == 1 then
    redis.call('HSET', jk, 'f_name', ARGV[i + 1], 'f_exc', ARGV[i + 2])
    f_index(base, id, jk, tonumber(at), now, retention)
    n = n + 1
  end
end
return n
