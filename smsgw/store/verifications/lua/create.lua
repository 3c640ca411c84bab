-- Start a verification: Idempotency-Key, pumping block, abuse windows, pumping guard, then the record.
-- KEYS[1] record   KEYS[2] idempotency key ('' = none)   KEYS[3..5] number, prefix, client window
-- KEYS[6] guard started   KEYS[7] guard approved   KEYS[8] block   KEYS[9] blocks zset   KEYS[10] expiries
-- ARGV[1] JSON {id, now, ea, digest, idem_ttl, safe, lim: [[count, window_ms] x3], g: [min_started,
--               min_conversion, window_ms, block_ms], prefix, f: [field, value, ...], ttl (seconds)}
-- Returns {'ok', started, approved} | {'replay', id} | {'mismatch'} | {'inflight', id} | {'exists'}
--       | {'blocked', ms} | {'limited', which, ms} | {'guard', ms, started, approved} (a new block)
local a = cjson.decode(ARGV[1])
local now = a.now
if KEYS[2] ~= '' then
  local v = redis.call('GET', KEYS[2])
  if v then
    local state, hash, id = string.match(v, '^([^|]*)|([^|]*)|?([^|]*)')
    if hash ~= a.digest then return {'mismatch'} end
    if state == 'pending' then return {'inflight', id} end
    return {'replay', id}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local started, approved = 0, 0
if not a.safe then
  local blocked = redis.call('PTTL', KEYS[8])
  if blocked > 0 then return {'blocked', blocked} end
  for i = 1, 3 do
    local wait = window_wait(KEYS[2 + i], a.lim[i][1], a.lim[i][2], now)
    if wait > 0 then return {'limited', WINDOW_NAMES[i], wait} end
  end
  local g = a.g
  if g[1] > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - g[3])
    redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - g[3])
    started = redis.call('ZCARD', KEYS[6])
    approved = redis.call('ZCARD', KEYS[7])
    if started >= g[1] and approved < g[2] * started then
      redis.call('SET', KEYS[8], '1', 'PX', g[4])
      redis.call('ZADD', KEYS[9], now + g[4], a.prefix)
      redis.call('PEXPIRE', KEYS[9], g[4])
      return {'guard', g[4], started, approved}
    end
    redis.call('ZADD', KEYS[6], now, a.id)
    redis.call('PEXPIRE', KEYS[6], g[3])
    started = started + 1
  end
  for i = 1, 3 do window_add(KEYS[2 + i], a.lim[i][1], a.lim[i][2], now, a.id .. ':1') end
end
redis.call('HSET', KEYS[1], unpack(a.f))
redis.call('EXPIRE', KEYS[1], a.ttl)
redis.call('ZADD', KEYS[10], a.ea, a.id)
redis.call('EXPIRE', KEYS[10], VC.EXPIRIES_TTL)
if KEYS[2] ~= '' then
  redis.call('SET', KEYS[2], 'pending|' .. a.digest .. '|' .. a.id, 'EX', a.idem_ttl)
end
return {'ok', started, approved}
