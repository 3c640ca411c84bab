-- Expire pending verifications whose time is up (with their events), trimming the expiry set as it goes.
-- KEYS[1] expiries   ARGV[1] now ms   ARGV[2] now iso   ARGV[3] stream min id   ARGV[4] batch size
-- Returns {entries looked at, client of each verification expired now...}
local now = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local out = {#ids}
for _, id in ipairs(ids) do
  local key = V.ver .. id
  local v = load(key)
  if v and v.st == 'pending' and now >= v.ea then
    finish(key, id, v, 'expired', v.att, now, ARGV[2], ARGV[3])
    out[#out + 1] = v.c
  elseif v and v.st == 'pending' then
    redis.call('ZADD', KEYS[1], v.ea, id)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
