-- dispatch: add jobs to one queue, ready at once or delayed.
-- KEYS[1] lanes  KEYS[2] ready  KEYS[3] delayed  KEYS[4] wake  KEYS[5] stats
-- ARGV[1] key base of the queue ("<prefix>:{q:<queue>}:")
-- then for each job: id, envelope JSON, lane, delay ms, result sink ("" for none), sink field, sink ttl s
-- Returns the number of jobs added (a job id that already exists is not added again).
local base = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local added, ready = 0, 0
for i = 2, #ARGV, 7 do
  local id, data, lane, delay = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local jk = base .. 'job:' .. id
  if redis.call('EXISTS', jk) == 0 then
    added = added + 1
    redis.call('HSET', jk, 'data', data, 'lane', lane, 'enqueued_at', now,
      'attempts', 0, 'releases', 0, 'exceptions', 0, 'lost', 0)
    if ARGV[i + 4] ~= '' then
      redis.call('HSET', jk, 'sink', ARGV[i + 4], 'sink_field', ARGV[i + 5], 'sink_ttl', ARGV[i + 6])
    end
    if delay > 0 then
      redis.call('HSET', jk, 'state', 'delayed')
      redis.call('ZADD', KEYS[3], now + delay, id)
    else
      redis.call('HSET', jk, 'state', 'ready', 'ready_at', now)
      if redis.call('RPUSH', base .. 'lane:' .. lane, id) == 1 then
        redis.call('RPUSH', KEYS[1], lane)
      end
      redis.call('ZADD', KEYS[2], now, id)
      ready = ready + 1
    end
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[5], 'dispatched', added)
end
if ready > 0 and redis.call('LLEN', KEYS[4]) < 16 then
  -- One token per call: the worker that takes it passes the word on while work remains.
  redis.call('RPUSH', KEYS[4], '1')
end
return added
