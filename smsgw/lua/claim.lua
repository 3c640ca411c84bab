-- Start a dispatch attempt of unit k: the moment of dispatch, where cancel, expiry and send-once are decided.
-- KEYS[1] message hash
-- ARGV[1] k   ARGV[2] now ms   ARGV[3] now iso   ARGV[4] stream min id   ARGV[5] owner token
-- ARGV[6] unsettled ttl: an in-flight unit can be matched by number until its call is recorded
-- Returns one of
--   {'gone'}                      message expired from Redis
--   {'done', state}               unit already settled (acked/refused/unknown/dead/done): never send again
--   {'ambiguous', owner, tries, expires_ms}   an earlier attempt started a call and never recorded its end
--   {'empty', expired_count, created_ms}   nothing left to send (cancelled or expired now)
--   {'send', tries, client, lane, brand, text, stop_list, created_ms, send_at_ms, expires_ms, n1, n2, ...}
local key = KEYS[1]
local k = ARGV[1]
local unit = unit_parse(redis.call('HGET', key, 'u:' .. k))
if not unit then return {'gone'} end
if unit.st == 'calling' then
  return {'ambiguous', unit.owner, tostring(unit.tries), redis.call('HGET', key, 'ea')}
end
if unit.st ~= 'new' then return {'done', unit.st} end
local meta = meta_of(key)
local message_id = string.sub(key, #PREFIX + 5)
local now = tonumber(ARGV[2])
local expired = now >= tonumber(meta.ea)
local waiting = {queued = true, scheduled = true}
local send = {}
local expired_count = 0
for _, number in ipairs(split(redis.call('HGET', key, 'n:' .. k), ',')) do
  if expired then
    if move(key, meta, message_id, number, 'expired', ARGV[2], ARGV[3], ARGV[4],
            {err = 'not handed to uBill before expires_at'}, waiting) then
      expired_count = expired_count + 1
    end
  elseif move(key, meta, message_id, number, 'dispatching', ARGV[2], ARGV[3], ARGV[4], nil, waiting) then
    send[#send + 1] = number
  end
end
if #send == 0 then
  unit.st = 'done'
  unit.reason = expired and 'expired' or 'nothing to send'
  redis.call('HSET', key, 'u:' .. k, unit_str(unit))
  return {'empty', expired_count, meta.ca}
end
unit.st = 'calling'
unit.owner = ARGV[5]
redis.call('HSET', key, 'u:' .. k, unit_str(unit))
mark_unsettled(key, message_id, k, tonumber(ARGV[6]))
local out = {'send', tostring(unit.tries), meta.c, meta.p, meta.b, meta.t, meta.sl, meta.ca, meta.sa, meta.ea}
for _, number in ipairs(send) do out[#out + 1] = number end
return out
