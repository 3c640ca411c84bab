-- Shared by the verification scripts (store/verifications/scripts.py prepends it, after the generated
-- preludes: P and C from store/keys.py, V and VC from store/verifications/keys.py). Keys a script derives
-- from a record (resend, check, undo) are built from V; create gets its keys declared.
local EXPIRIES = VC.EXPIRIES

local function prefix_of(number) return string.sub(number, 1, #number - VC.PREFIX_DROP) end
local function window_keys(number, client)
  return {V.win_n .. number, V.win_p .. prefix_of(number), V.win_c .. client}
end
local WINDOW_NAMES = {'number', 'prefix', 'client'}

local function load(key)
  local f = redis.call('HMGET', key, 'c', 'to', 'st', 'ref', 'ea', 'att', 'sends', 'last', 'mid', 'ca', 'code',
                       'loc', 'b')
  if not f[1] then return nil end
  return {c = f[1], to = f[2], st = f[3], ref = f[4], ea = tonumber(f[5]), att = tonumber(f[6]),
          sends = tonumber(f[7]), last = tonumber(f[8]), mid = f[9], ca = tonumber(f[10]), code = f[11],
          loc = f[12], b = f[13]}
end

-- A sliding-window log of SMS: ms until one more fits (0: it fits now). A limit of 0 is no limit.
local function window_wait(key, limit, window_ms, now)
  if limit <= 0 then return 0 end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_ms)
  local count = redis.call('ZCARD', key)
  if count < limit then return 0 end
  local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window_ms - now)
end

local function window_add(key, limit, window_ms, now, member)
  if limit <= 0 then return end
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window_ms)
end

-- Every abuse window, checked then (when all allow) recorded: {} or {'limited', which, wait_ms}.
local function take_windows(wkeys, limits, now, member)
  for i = 1, 3 do
    local wait = window_wait(wkeys[i], limits[i][1], limits[i][2], now)
    if wait > 0 then return {'limited', WINDOW_NAMES[i], wait} end
  end
  for i = 1, 3 do window_add(wkeys[i], limits[i][1], limits[i][2], now, member) end
  return {}
end

-- The contract's event, on the client's stream and both channels, like a message status event.
local function emit(v, id, status, attempts, iso, minid)
  local ev = cjson.encode({
    kind = 'verification',
    verification_id = id,
    client = v.c,
    reference = (v.ref ~= nil and v.ref ~= '') and v.ref or cjson.null,
    number = v.to,
    status = status,
    attempts = attempts,
    occurred_at = iso,
  })
  redis.call('XADD', P.stream .. v.c, 'MINID', '~', minid, '*', 'event', ev, 'kind', 'verification')
  redis.call('PUBLISH', C.EVENTS_CHANNEL, ev)
  redis.call('PUBLISH', P.channel .. v.c, ev)
end

-- A final status: the sealed code goes (nothing will need it again), so does the expiry entry.
local function finish(key, id, v, status, attempts, now, iso, minid)
  redis.call('HSET', key, 'st', status, 'att', attempts, 'ua', now)
  redis.call('HDEL', key, 'code')
  redis.call('ZREM', EXPIRIES, id)
  emit(v, id, status, attempts, iso, minid)
end
