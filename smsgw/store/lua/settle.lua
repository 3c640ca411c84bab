-- Record how a dispatch attempt of unit k ended, and set the unit's lane timer to match, atomically.
-- ARGV[1] message id   ARGV[2] k   ARGV[3] outcome: acked | refused | retry | defer | unknown | dead | reconciled
-- ARGV[4] now ms   ARGV[5] now iso   ARGV[6] owner (who made the attempt)   ARGV[7] smsID ('' if none)
-- ARGV[8] reason   ARGV[9] next timer (retry, defer, reconciled) ms   ARGV[10] reconcile at ms (acked)
-- ARGV[11...] the numbers the attempt carried (their records are read with the meta, in one HMGET)
-- Returns {'ok', moved_count, tries} | {'gone'} | {'stale', state}
--   stale: another worker owns the unit now; an acceptance is still recorded (it is the truth), anything else
--   is dropped so an attempt that was given up on cannot overwrite a newer one. A stale settle rewrites the
--   message's expiry, so the WAIT after it covers the state it found (a settle written again until the replicas
--   confirm it finds its own earlier write; from Redis 7.2 WAIT counts only the connection's own writes).
local claimed = {}
for i = 11, #ARGV do claimed[#claimed + 1] = ARGV[i] end
local m, unit, numbers = load(ARGV[1], ARGV[2], claimed)
if not m or not unit then return {'gone'} end
if #claimed == 0 then claimed = numbers end
local outcome, sms, reason = ARGV[3], ARGV[7], ARGV[8]
local ctx = {now = ARGV[4], iso = ARGV[5]}
local next_at, reconcile_at = tonumber(ARGV[9]), tonumber(ARGV[10])

if outcome == 'reconciled' then
  -- uBill's report was read: look again later while some recipients are not final.
  if unit.st == 'acked' and unit.open > 0 then timer(m, next_at) else no_timer(m) end
  return {'ok', 0, unit.tries}
end
if unit.st == 'acked' then
  -- Already accepted (a callback adopted it, or a duplicate attempt): a lost answer or a failure of another
  -- attempt changes nothing; a second acceptance is indexed so its callbacks apply too.
  if outcome == 'acked' and sms ~= '' and sms ~= unit.sms then
    redis.call('SET', P.sms .. sms, m.id .. ':' .. m.k, 'EX', C.SMS_ID_TTL)
  end
  touch_expiry(m.key)
  return {'stale', unit.st}
end
local mine = unit.st == 'calling' and unit.owner == ARGV[6]
if outcome == 'acked' then
  if unit.st == 'unknown' then clear_unsettled(m, numbers) end
  -- An attempt given up on (another worker took it over and ran out of attempts) was accepted after all.
  if unit.st == 'dead' then redis.call('ZREM', C.DEAD, m.id .. ':' .. m.k) end
  local moved = record_ack(m, unit, claimed, numbers, sms, ctx, reconcile_at)
  return {mine and 'ok' or 'stale', moved, unit.tries}
end
if not mine then
  touch_expiry(m.key)
  return {'stale', unit.st}
end

local moved = 0
if outcome == 'refused' then
  unit.st, unit.reason = 'refused', reason
  moved = #move(m, claimed, 'rejected', ctx, {err = reason}, {dispatching = true}, unit)
  no_timer(m)
elseif outcome == 'retry' or outcome == 'defer' then
  -- defer: nothing was tried (breaker open, a claim whose answer was lost): no attempt is spent.
  unit.st, unit.owner, unit.reason = 'new', '', reason
  if outcome == 'retry' then unit.tries = unit.tries + 1 end
  local writes = {}
  local changed = plan(m, claimed, 'queued', ctx, {err = ''}, {dispatching = true}, writes)
  unit.open = #changed
  write(m, with_unit(m, unit, writes))
  emit_all(m, changed, ctx)
  moved = #changed
  timer(m, next_at)
elseif outcome == 'unknown' then
  -- A callback that came while the call was out is kept as an orphan (never applied to a unit in flight):
  -- now that the answer is lost, it may be this unit's.
  if adopt_orphans(m, unit, claimed, numbers, ctx, reconcile_at) then return {'ok', #claimed, unit.tries} end
  unit.st, unit.reason = 'unknown', reason
  moved = #move(m, claimed, 'unknown', ctx, {err = reason}, {dispatching = true}, unit)
  mark_unsettled(m, claimed)
  no_timer(m)
elseif outcome == 'dead' then
  unit.st, unit.reason, unit.tries = 'dead', reason, unit.tries + 1
  moved = #move(m, numbers, 'failed', ctx, {err = reason}, {dispatching = true, queued = true}, unit)
  redis.call('ZADD', C.DEAD, ARGV[4], m.id .. ':' .. m.k)
  no_timer(m)
else
  return redis.error_reply('unknown outcome ' .. outcome)
end
return {'ok', moved, unit.tries}
