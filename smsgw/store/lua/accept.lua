-- Accept a send, with everything it depends on, in one script: the client's rate, the Idempotency-Key, the
-- message hash, its units' lane timers and a wake-up, written together or not at all.
-- ARGV[1] JSON {id, lane, ttl (s), deadline (ms, Redis clock), f: [field, value, ...], t: [[member, score], ...],
--               rate: [key, rate, burst] | null, idem: [key, body hash, record] | null,
--               retry: key | null (the facade call's fingerprint), facade: bool, exists: bool (check the id),
--               w: bool (the gateway WAITs for replicas after this call)}
-- (one JSON argument instead of thousands: packing arguments is the client's most expensive step)
-- Returns
--   {1, facade_id or ''}        written
--   {0}                         the id exists already (fixed ids: dead-letter replays)
--   {-1}                        past the deadline: the gateway has answered 503, nothing may be written
--   {-2, retry_after_ms}        the client is over its rate
--   {-3}                        Idempotency-Key used with another body
--   {2, message_id, code, facade_id, field, value, ...}   Idempotency-Key replay (fields: [] if gone)
--   {3, message_id, facade_id}  the same facade call again, before the first one's answer was confirmed heard
-- A facade call leaves its fingerprint (retry) pointing at what it stored, in this same script, until the gateway
-- has given a definite answer (Messages.facade_answered deletes it): an identical call meanwhile is a uBill
-- client's retry after "outcome unknown", a cut connection or a killed gateway, whichever process it reaches.
-- The deadline is when the gateway stops waiting: a script that a stalled Redis runs only after it (a long
-- fsync, a paused process) must write nothing, so that the gateway's find-out (findout.lua) is definitive.
local a = cjson.decode(ARGV[1])
-- A replay writes nothing, so the WAIT after it would not cover the original's write (made on another
-- connection, maybe another gateway): rewriting the replayed key's own expiry makes it do so.
local function touched(key)
  if a.w then touch_expiry(key) end
end
local now = redis_now()
if now > tonumber(a.deadline) then return {-1} end
if a.rate ~= cjson.null and a.rate ~= nil then
  local wait = gcra(a.rate[1], tonumber(a.rate[2]), tonumber(a.rate[3]), now)
  if wait > 0 then return {-2, wait} end
end
local idem = (a.idem ~= cjson.null and a.idem ~= nil) and a.idem or nil
local retry = a.retry ~= cjson.null and a.retry ~= nil
-- A plain keyed send reserves its key in the same command that reads it (SET NX GET, Redis >= 7.0): nothing
-- between here and the writes below can refuse it. A facade or fixed-id send, which may still be refused or
-- need its facade id in the record, reads first and writes the key at the end.
local reserve = idem and not (retry or a.facade or a.exists)
if idem then
  local v
  if reserve then
    v = redis.call('SET', idem[1], idem[3] .. '|', 'EX', C.IDEMPOTENCY_TTL, 'NX', 'GET')
  else
    v = redis.call('GET', idem[1])
  end
  if v then
    local state, hash, message_id, code, fid = string.match(v, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|?([^|]*)$')
    if hash ~= idem[2] then return {-3} end
    touched(idem[1])
    local out = {2, message_id, code, fid or ''}
    for _, item in ipairs(redis.call('HGETALL', P.msg .. message_id)) do out[#out + 1] = item end
    return out
  end
end
if retry then
  local v = redis.call('GET', a.retry)
  if v then
    local message_id, fid = string.match(v, '^([^|]*)|(.*)$')
    touched(a.retry)
    return {3, message_id, fid}
  end
end
local key = P.msg .. a.id
if a.exists and redis.call('EXISTS', key) == 1 then return {0} end
local fields = a.f
local i = 1
while i <= #fields do
  local j = math.min(i + 1999, #fields)
  redis.call('HSET', key, unpack(fields, i, j))
  i = j + 1
end
local lane = P.lane .. a.lane
for _, t in ipairs(a.t) do redis.call('ZADD', lane, t[2], t[1]) end
local facade_id = ''
if a.facade then
  facade_id = tostring(redis.call('INCR', C.FACADE_SEQ))
  redis.call('SET', P.facade .. facade_id, a.id, 'EX', a.ttl)
  redis.call('HSET', key, 'fid', facade_id)
end
redis.call('EXPIRE', key, a.ttl)
if retry then redis.call('SET', a.retry, a.id .. '|' .. facade_id, 'EX', C.FACADE_RETRY_TTL) end
if idem and not reserve then
  redis.call('SET', idem[1], idem[3] .. '|' .. facade_id, 'EX', C.IDEMPOTENCY_TTL)
end
local wake = P.wake .. a.lane
-- One command in the common case: push, and trim only when nobody has been taking the nudges.
if redis.call('LPUSH', wake, '1') > C.WAKE_CAP then redis.call('LTRIM', wake, 0, C.WAKE_CAP - 1) end
return {1, facade_id}
