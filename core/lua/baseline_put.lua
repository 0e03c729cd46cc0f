-- baseline_put: store a promoted baseline and list it, in one step, so `baseline list` never
-- shows a name without a document or keeps a document it does not list.
-- KEYS[1] the baseline's document  KEYS[2] the index of baselines (name -> promoted ms)
-- ARGV[1] name  ARGV[2] document JSON  ARGV[3] promoted at (ms)
-- Returns 1 when a baseline of that name was replaced, 0 when it is new.
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), ARGV[1])
return existed
