-- queue_pause: pause or continue one queue for every worker on every host.  While the flag key
-- exists, pop_with_lease hands out no job of the queue; dispatches still land.
-- KEYS[1] paused flag  KEYS[2] ready  KEYS[3] delayed  KEYS[4] reserved  KEYS[5] wake
-- ARGV[1] "pause" or "continue"  ARGV[2] the flag's value (JSON: at, by)  ARGV[3] queue name
-- Returns {1 if the state changed else 0, ready, delayed, reserved}.
local now = now_ms()
local ready = redis.call('ZCARD', KEYS[2])
local delayed = redis.call('ZCARD', KEYS[3])
local reserved = redis.call('ZCARD', KEYS[4])
local changed = 0
local kind, message
if ARGV[1] == 'pause' then
  if redis.call('SET', KEYS[1], ARGV[2], 'NX') then
    changed = 1
    -- idle workers keep blocking on the wake list instead of waking for jobs they may not take
    redis.call('DEL', KEYS[5])
    kind = 'queue_paused'
    message = 'paused: ' .. ready .. ' ready job(s) stay queued, ' .. reserved .. ' running finish'
  end
else
  if redis.call('DEL', KEYS[1]) == 1 then
    changed = 1
    -- wake idle workers now (each one that fills up wakes the next, as after a dispatch)
    wake_fill(KEYS[5], ready)
    kind = 'queue_continued'
    message = 'continued: ' .. ready .. ' ready job(s) can start'
  end
end
if changed == 1 then
  add_event(events_key(KEYS[1]), {'kind', kind, 'queue', ARGV[3], 'ready', ready, 'delayed', delayed,
    'running', reserved, 'by', cjson.decode(ARGV[2]).by or '', 'message', message}, now / 1000)
end
return {changed, ready, delayed, reserved}
