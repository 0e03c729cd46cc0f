-- ack: finish jobs that succeeded, if the caller still holds their lease, and store the
-- result of each job that was dispatched with a result sink (first write wins).
-- KEYS[1] reserved  KEYS[2] stats  KEYS[3] lanes  KEYS[4] ready  KEYS[5] wake
-- ARGV[1] key base  ARGV[2] owner  ARGV[3] flags: "t" to record telemetry, "p" when the caller
--         pops this queue next in the same round trip (a freed batch slot then wakes no worker)
-- then one argument per job: "<runtime ms>:<length of the id>:<id><result JSON>" (no result JSON
-- for none): one argument rather than three, as the worker's encoding of them cost more than this
-- Returns the ids whose lease the caller no longer held (they were not acknowledged).
-- Telemetry costs O(1) per job: counters, a fixed-bucket runtime histogram and the minute's
-- shortest and longest runtime in one hash per queue and minute ("m:<minute>"), kept MINUTE_TTL.
local base = ARGV[1]
local owner = ARGV[2]
local telemetry = string.find(ARGV[3], 't', 1, true) ~= nil
local wake_key = not string.find(ARGV[3], 'p', 1, true) and KEYS[5] or nil
local stale = {}
local done = 0
local mk, rt_sum, rt_max, rt_min = nil, 0, 0, nil
local buckets = {}
local finished, records, seen = {}, {}, {}  -- removed in one ZREM and one DEL after the loop
local batches, sinks = {}, {}  -- per batch its count of acknowledged jobs, and the sinks written
local bounds = RT_BOUNDS
for i = 4, #ARGV do
  local packed = ARGV[i]
  local c1 = string.find(packed, ':', 1, true)
  local c2 = string.find(packed, ':', c1 + 1, true)
  local id_end = c2 + tonumber(string.sub(packed, c1 + 1, c2 - 1))
  local id = string.sub(packed, c2 + 1, id_end)
  local jk = base .. 'job:' .. id
  local rec = redis.call('HMGET', jk, 'owner', 'sink', 'sink_field', 'sink_ttl', 'unique', 'unique_for', 'batch')
  -- a second ack of one job in the same call finds it gone, as it would had the first one
  -- deleted it at once (the record goes after the loop)
  if rec[1] == owner and not seen[id] then
    seen[id] = true
    if rec[2] then
      local result = string.sub(packed, id_end + 1)
      if result == '' then
        result = 'null'
      end
      sink_write(base, rec[2], rec[3], rec[4], '{"result":' .. result .. '}', sinks)
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
    done = done + 1
    finished[done] = id
    records[done] = jk
    if rec[7] then
      b_not_running(base, rec[7], id, wake_key)
      if not batches[rec[7]] then
        batches[#batches + 1] = rec[7]
        batches[rec[7]] = 0
      end
      batches[rec[7]] = batches[rec[7]] + 1
    end
    if telemetry then
      local rt = tonumber(string.sub(packed, 1, c1 - 1)) or 0
      rt_sum = rt_sum + rt
      if rt > rt_max then
        rt_max = rt
      end
      if rt_min == nil or rt < rt_min then
        rt_min = rt
      end
      local b = #bounds + 1
      for j = 1, #bounds do
        if rt <= bounds[j] then
          b = j
          break
        end
      end
      buckets[b] = (buckets[b] or 0) + 1
    end
  else
    stale[#stale + 1] = id
  end
end
sink_expire(sinks)
for _, bid in ipairs(batches) do
  b_jobs_ok(base, KEYS[3], KEYS[4], KEYS[5], bid, batches[bid])
end
if done > 0 then
  -- in slices: unpack has a limit on how many values it spreads
  for i = 1, done, 1000 do
    local j = math.min(i + 999, done)
    redis.call('ZREM', KEYS[1], unpack(finished, i, j))
    redis.call('DEL', unpack(records, i, j))
  end
  redis.call('HINCRBY', KEYS[2], 'completed', done)
  if telemetry then
    mk = tm_count(base, now_ms(), 'completed', done, 'rt_sum', rt_sum)
    local old = tonumber(redis.call('HGET', mk, 'rt_max') or '0')
    if rt_max > old then
      redis.call('HSET', mk, 'rt_max', rt_max)
    end
    -- the observed extremes bound the percentiles read from the buckets
    local low = redis.call('HGET', mk, 'rt_min')
    if not low or rt_min < tonumber(low) then
      redis.call('HSET', mk, 'rt_min', rt_min)
    end
    for b, n in pairs(buckets) do
      redis.call('HINCRBY', mk, 'rt:' .. b, n)
    end
  end
end
return stale
