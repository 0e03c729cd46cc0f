-- Shared by the scripts that put jobs into the failed store or take them out (each is loaded with
-- the definitions it calls, see script_source in core/scripts.py): the failed-job indexes, so a
-- filtered page never scans the store.
-- A failed job is indexed under its batch, its job name and its exception class (or its failure
-- kind when it has no class): <base>failed:<facet>:<value> (ZSET id -> failed ms), and each
-- facet's values are listed in <base>failed_values:<facet> (ZSET value -> latest failed ms).
-- Every write trims what is older than the store's retention and pushes the key's expiry out by
-- the retention, so an index never outlives the records it points to by more than that.

local F_FACETS = {'batch', 'f_name', 'f_exc'}
local F_NAMES = {'batch', 'name', 'exc'}

local function f_index(base, id, jk, at, now, retention)
  local vals = redis.call('HMGET', jk, unpack(F_FACETS))
  local cutoff = now - retention
  for i, facet in ipairs(F_NAMES) do
    local v = vals[i]
    if v and v ~= '' then
      local ik = base .. 'failed:' .. facet .. ':' .. v
      redis.call('ZADD', ik, at, id)
      redis.call('ZREMRANGEBYSCORE', ik, '-inf', cutoff)
      redis.call('PEXPIRE', ik, retention)
      local vk = base .. 'failed_values:' .. facet
      local latest = tonumber(redis.call('ZSCORE', vk, v) or '0')
      if at > latest then
        redis.call('ZADD', vk, at, v)
      end
      redis.call('ZREMRANGEBYSCORE', vk, '-inf', cutoff)
      redis.call('PEXPIRE', vk, retention)
    end
  end
end

local function f_unindex(base, id, jk)
  local vals = redis.call('HMGET', jk, unpack(F_FACETS))
  for i, facet in ipairs(F_NAMES) do
    local v = vals[i]
    if v and v ~= '' then
      redis.call('ZREM', base .. 'failed:' .. facet .. ':' .. v, id)
    end
  end
end

-- Record a job as failed for good (it is no longer reserved or queued): the failed store, its
-- indexes, its idempotency key released, and its failure written to its result sink.
-- Returns the job's batch id, or false.
local function f_record(base, id, jk, failed_key, failure, name, exc, now, retention)
  local rec = redis.call('HMGET', jk, 'sink', 'sink_field', 'sink_ttl', 'unique', 'batch')
  if rec[4] and redis.call('GET', base .. 'unique:' .. rec[4]) == id then
    redis.call('DEL', base .. 'unique:' .. rec[4])
  end
  redis.call('HSET', jk, 'state', 'failed', 'owner', '', 'failure', failure, 'failed_at', now,
    'f_name', name, 'f_exc', exc)
  redis.call('PEXPIRE', jk, retention)
  redis.call('ZADD', failed_key, now, id)
  redis.call('ZREMRANGEBYSCORE', failed_key, '-inf', now - retention)
  f_index(base, id, jk, now, now, retention)
  if rec[1] then
    sink_write(base, rec[1], rec[2], rec[3], '{"error":' .. failure .. '}')
  end
  return rec[5]
end
