-- Apply one uBill delivery status (a callback, or a line of uBill's report) for (smsID, number).
-- ARGV[1] smsID   ARGV[2] number   ARGV[3] status   ARGV[4] statusID   ARGV[5] occurred iso   ARGV[6] now ms
-- ARGV[7] orphan ttl s   ARGV[8] occurred ms   ARGV[9] reconcile at ms (for a unit adopted now)
-- ARGV[10] '1' when a WAIT follows: a callback that changes nothing (a repeat of one answered 503 because the
--   replicas had not confirmed it) rewrites the message's expiry, so that WAIT covers what it repeats.
-- The smsID index holds C.SMS_KEPT while callbacks wait for an smsID not recorded yet (see record_ack).
-- Returns {outcome, lane, created_ms, client} with outcome one of
--   applied | duplicate | ignored (number not in that call) | adopted (matched to a lost answer) | orphaned
-- A status only reaches a recipient uBill provably accepted from this gateway: a recorded smsID, or the
-- matching rule for a unit whose answer was lost (outcome unknown; never a unit still in flight, whose own
-- answer — a refusal or a 5xx means uBill did not send it — must decide). Anything else is kept as an orphan
-- until its smsID is recorded or its TTL ends: callbacks for smsIDs we never sent change nothing.
local sms, number, status, sid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ctx = {now = ARGV[6], iso = ARGV[5]}
local occurred = tonumber(ARGV[8])
local unit_id = redis.call('GET', P.sms .. sms)
if unit_id == C.SMS_KEPT then unit_id = false end  -- callbacks already wait for this smsID
local adopted = false
if not unit_id then
  local match = nil
  for _, candidate in ipairs(redis.call('SMEMBERS', P.unsettled .. number)) do
    local id, k = string.match(candidate, '^(.*):(%d+)$')
    local u = id and unit_parse(redis.call('HGET', P.msg .. id, 'u:' .. k))
    if u and u.st == 'unknown' and u.at <= occurred + ADOPT_SLACK_MS then
      if match then match = false break end
      match = candidate
    end
  end
  if match then
    unit_id, adopted = match, true
  else
    local ttl = tonumber(ARGV[7])
    local okey = P.orphan .. sms
    redis.call('RPUSH', okey, number .. '|' .. status .. '|' .. sid .. '|' .. ARGV[5] .. '|' .. ARGV[8])
    redis.call('EXPIRE', okey, ttl)
    local nkey = P.orphan_number .. number
    kept_for(number)  -- the set lives as long as orphans keep coming: only live ones stay in it
    redis.call('SADD', nkey, sms)
    redis.call('EXPIRE', nkey, ttl)
    redis.call('ZADD', C.ORPHANS, tonumber(ARGV[6]) + 1000 * ttl, sms)
    -- The smsID's index entry says so: the settle that records it learns in the same SET that it has callbacks.
    redis.call('SET', P.sms .. sms, C.SMS_KEPT, 'EX', ttl)
    return {'orphaned', '', '', ''}
  end
end
local id, k = string.match(unit_id, '^(.*):(%d+)$')
local m, unit, numbers = load(id, k, {number})
if not m or not unit then return {'ignored', '', '', ''} end
if adopted then
  clear_unsettled(m, numbers)
  record_ack(m, unit, numbers, numbers, sms, {now = ARGV[6], iso = ARGV[5]}, tonumber(ARGV[9]))
end
local outcome = apply_status(m, unit, numbers, number, status, sid, sms, ctx)
-- Only after the writes, and only when there were none: a script's first write decides whether Redis at
-- maxmemory refuses it (a PEXPIRE first would let the HSET and XADD after it through).
if ARGV[10] == '1' and not adopted and outcome ~= 'applied' then touch_expiry(m.key) end
if adopted and outcome ~= 'ignored' then outcome = 'adopted' end
return {outcome, m.p, m.ca, m.c}
