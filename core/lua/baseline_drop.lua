-- baseline_drop: forget a baseline and its entry in the index together.
-- KEYS[1] the baseline's document  KEYS[2] the index of baselines
-- ARGV[1] name
-- Returns 1 when there was such a baseline, 0 otherwise.
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return existed
