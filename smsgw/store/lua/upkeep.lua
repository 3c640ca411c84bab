-- Housekeeping that must not depend on anyone scraping metrics: kept orphan callbacks past their TTL
-- (counted: they were for smsIDs this gateway never recorded), dead letters past retention, and the event
-- streams, trimmed by age here rather than on every XADD (which would write MINID into the AOF per event).
-- ARGV[1] now ms   ARGV[2] dead letters kept until (ms)   ARGV[3] stream min id   ARGV[4] JSON [client, ...]
-- Returns {orphans_expired, dead_letters_dropped, stream_entries_trimmed}
local now = tonumber(ARGV[1])
local orphans = redis.call('ZREMRANGEBYSCORE', C.ORPHANS, '-inf', now)
local dead = redis.call('ZREMRANGEBYSCORE', C.DEAD, '-inf', '(' .. ARGV[2])
-- A dead letter is also gone with its message (its hash expired): look at the oldest ones, a batch per round.
for _, dead_id in ipairs(redis.call('ZRANGE', C.DEAD, 0, 99)) do
  local message_id = string.match(dead_id, '^(.*):%d+$')
  if not message_id or redis.call('EXISTS', P.msg .. message_id) == 0 then
    dead = dead + redis.call('ZREM', C.DEAD, dead_id)
  end
end
local trimmed = 0
for _, client in ipairs(cjson.decode(ARGV[4])) do
  trimmed = trimmed + redis.call('XTRIM', P.stream .. client, 'MINID', '~', ARGV[3])
end
return {orphans, dead, trimmed}
