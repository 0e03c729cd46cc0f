-- online_score: record one judged score of an online monitor and decide the drift alert.
-- KEYS[1] scores (LIST)  KEYS[2] window (LIST)  KEYS[3] state (HASH)  KEYS[4] trend (HASH)
-- KEYS[5] events (STREAM)  KEYS[6] monitors (SET)
-- ARGV[1] entry JSON  ARGV[2] score ('' when the judge gave none)  ARGV[3] passed (1/0)
-- ARGV[4] keep  ARGV[5] window  ARGV[6] min_samples  ARGV[7] threshold  ARGV[8] hysteresis
-- ARGV[9] UTC day (YYYY-MM-DD)  ARGV[10] monitor name
-- The alert fires once per crossing: when the rolling mean of the newest `window` scores (at
-- least `min_samples` of them) drops below `threshold`; it re-arms only once the mean is back at
-- `threshold + hysteresis` or above, so a mean hovering at the threshold does not flap.
-- Returns {mean as string ('' below min_samples), samples, transition ('drift', 'recovered', '')}.
local now = now_ms() / 1000
redis.call('SADD', KEYS[6], ARGV[10])
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[4]) - 1)
redis.call('HSET', KEYS[3], 'last_at', string.format('%.3f', now))
if ARGV[2] == '' then
  redis.call('HINCRBY', KEYS[3], 'failed', 1)
  return {'', 0, ''}
end
local score = tonumber(ARGV[2])
redis.call('HINCRBY', KEYS[3], 'scored', 1)
redis.call('HINCRBY', KEYS[3], 'passed', tonumber(ARGV[3]))
redis.call('HINCRBY', KEYS[4], ARGV[9] .. ':n', 1)
redis.call('HINCRBYFLOAT', KEYS[4], ARGV[9] .. ':sum', score)
redis.call('HINCRBY', KEYS[4], ARGV[9] .. ':passed', tonumber(ARGV[3]))
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
local values = redis.call('LRANGE', KEYS[2], 0, -1)
local n = #values
local sum = 0
for _, v in ipairs(values) do
  sum = sum + tonumber(v)
end
local mean = sum / n
redis.call('HSET', KEYS[3], 'mean', string.format('%.17g', mean), 'samples', n)
if n < tonumber(ARGV[6]) then
  return {'', n, ''}
end
local threshold = tonumber(ARGV[7])
local alerting = redis.call('HGET', KEYS[3], 'alerting') == '1'
local transition = ''
if not alerting and mean < threshold then
  transition = 'drift'
  redis.call('HSET', KEYS[3], 'alerting', '1', 'alert_at', string.format('%.3f', now))
elseif alerting and mean >= threshold + tonumber(ARGV[8]) then
  transition = 'recovered'
  redis.call('HSET', KEYS[3], 'alerting', '0')
end
if transition ~= '' then
  local message
  if transition == 'drift' then
    message = string.format('online monitor %s: rolling mean %.4f of the last %d scores fell below %.4f', ARGV[10], mean, n, threshold)
  else
    message = string.format('online monitor %s: rolling mean %.4f of the last %d scores is back at or above %.4f', ARGV[10], mean, n, threshold + tonumber(ARGV[8]))
  end
  add_event(KEYS[5], {'kind', 'online_' .. transition, 'monitor', ARGV[10], 'mean', string.format('%.6f', mean),
    'threshold', ARGV[7], 'samples', n, 'message', message}, now)
end
return {string.format('%.17g', mean), n, transition}
