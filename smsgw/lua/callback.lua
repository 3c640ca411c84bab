-- Apply one uBill delivery callback (or report line).
-- KEYS[1] smsgw:sms:{smsID}
-- ARGV[1] smsID   ARGV[2] number   ARGV[3] status   ARGV[4] statusID   ARGV[5] occurred iso   ARGV[6] now ms
-- ARGV[7] stream min id   ARGV[8] orphan ttl seconds   ARGV[9] smsID ttl
-- Returns {outcome, lane, created_ms, client} with outcome one of
--   applied | duplicate | ignored (number not in that send) | adopted (matched to an unknown outcome) | orphaned
local sms, number, status, sid, iso, now, minid = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local unit_id = redis.call('GET', KEYS[1])
local adopted = false
if not unit_id then
  -- An smsID we never learned: a unit whose call ended without an answer may be it. Adopt it only when the
  -- number points at exactly one such unit.
  local candidates = redis.call('SMEMBERS', PREFIX .. 'unsettled:' .. number)
  if #candidates == 1 then
    unit_id = candidates[1]
    adopted = true
  else
    local okey = PREFIX .. 'orphan:' .. sms
    redis.call('RPUSH', okey, number .. '|' .. status .. '|' .. sid .. '|' .. iso)
    redis.call('EXPIRE', okey, tonumber(ARGV[8]))
    redis.call('ZADD', PREFIX .. 'orphans', tonumber(now) + 1000 * tonumber(ARGV[8]), sms)
    return {'orphaned', '', '', ''}
  end
end
local message_id, k = string.match(unit_id, '^(.*):(%d+)$')
local key = msg_key(message_id)
local meta = meta_of(key)
if not meta.c then return {'ignored', '', '', ''} end
if adopted then
  local unit = unit_parse(redis.call('HGET', key, 'u:' .. k))
  clear_unsettled(key, message_id, k)
  unit.sms = sms
  if unit.st == 'unknown' or unit.st == 'calling' then unit.st = 'acked' end
  redis.call('HSET', key, 'u:' .. k, unit_str(unit))
  record_sms(key, meta, message_id, k, sms, now, minid, tonumber(ARGV[9]))
end
local outcome = apply_provider_status(key, meta, message_id, number, status, sid, sms, now, iso, minid)
if adopted and outcome ~= 'ignored' then outcome = 'adopted' end
return {outcome, meta.p, meta.ca, meta.c}
