-- Record how a dispatch attempt of unit k ended.
-- KEYS[1] message hash
-- ARGV[1] k   ARGV[2] outcome: acked | refused | retry | unknown | dead   ARGV[3] now ms   ARGV[4] now iso
-- ARGV[5] stream min id   ARGV[6] smsID ('' if none)   ARGV[7] reason   ARGV[8] smsID ttl   ARGV[9] unsettled ttl
-- Returns {moved_count, lane, created_ms, send_at_ms, tries}
local key = KEYS[1]
local k = ARGV[1]
local outcome = ARGV[2]
local now, iso, minid, sms, reason = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local unit = unit_parse(redis.call('HGET', key, 'u:' .. k))
if not unit then return {0, '', '', '', 0} end
local meta = meta_of(key)
local message_id = string.sub(key, #PREFIX + 5)
local numbers = split(redis.call('HGET', key, 'n:' .. k), ',')
local function move_all(status, from, extra)
  local moved = 0
  for _, number in ipairs(numbers) do
    if move(key, meta, message_id, number, status, now, iso, minid, extra, from) then moved = moved + 1 end
  end
  return moved
end
local moved = 0
if unit.st == 'acked' and outcome ~= 'acked' then
  -- A callback already proved uBill accepted this unit (see callback.lua): that beats a lost answer.
  outcome, sms = 'acked', unit.sms
end
if outcome == 'acked' then
  -- A callback may have adopted this unit already (same smsID): moving only dispatching/unknown recipients
  -- keeps this idempotent.
  moved = move_all('submitted', {dispatching = true, unknown = true}, {sms = sms})
  local known = unit.st == 'acked' and unit.sms == sms
  unit.st, unit.sms, unit.reason = 'acked', sms, ''
  if sms == '' then
    mark_unsettled(key, message_id, k, tonumber(ARGV[9]))
  else
    clear_unsettled(key, message_id, k)
    if not known then record_sms(key, meta, message_id, k, sms, now, minid, tonumber(ARGV[8])) end
  end
elseif outcome == 'refused' then
  moved = move_all('rejected', {dispatching = true}, {err = reason})
  unit.st, unit.reason = 'refused', reason
  clear_unsettled(key, message_id, k)
elseif outcome == 'retry' then
  moved = move_all('queued', {dispatching = true}, {err = ''})
  unit.st, unit.reason, unit.tries = 'new', reason, unit.tries + 1
  clear_unsettled(key, message_id, k)
elseif outcome == 'unknown' then
  moved = move_all('unknown', {dispatching = true}, {err = reason})
  unit.st, unit.reason = 'unknown', reason
  mark_unsettled(key, message_id, k, tonumber(ARGV[9]))
elseif outcome == 'dead' then
  moved = move_all('failed', {dispatching = true, queued = true}, {err = reason})
  unit.st, unit.reason, unit.tries = 'dead', reason, unit.tries + 1
  clear_unsettled(key, message_id, k)
  redis.call('ZADD', PREFIX .. 'dead', now, message_id .. ':' .. k)
else
  return redis.error_reply('unknown outcome ' .. outcome)
end
redis.call('HSET', key, 'u:' .. k, unit_str(unit))
return {moved, meta.p, meta.ca, meta.sa, unit.tries}
