-- A lane worker takes up to `want` due units in one call: expires what is past validity, takes uBill capacity,
-- claims (recipients dispatching, unit calling by `owner`, before any request leaves) and leases each one by
-- moving its timer to now + lease (the lease is the timer: a unit whose worker dies is due again after it).
-- ARGV[1] lane   ARGV[2] now ms   ARGV[3] now iso   ARGV[4] want   ARGV[5] lease ms   ARGV[6] owner
-- ARGV[7] how many due timers to look at   ARGV[8] grace ms (liveness)
-- ARGV[9] capacity JSON {calls, numbers, shares: {otp, transactional, bulk}} or '' (no uBill rate limit)
-- Returns {wait_ms, next_ms, job, job, ...}: wait_ms > 0 when it stopped for want of capacity; next_ms, when it
-- found nothing more due, is the lane's next timer ('none' if none; '' when more may be due), so an idle worker
-- knows how long to block.
-- A job is one of
--   {'send', unit, tries, client, brand, text, stop_list, created_ms, send_at_ms, expires_ms, sealed, n1, ...}
--   {'mine', unit, tries, expires_ms, created_ms, n1, ...}    claimed by this owner earlier (the runner knows
--                                                               whether that attempt sent anything)
--   {'orphaned', unit, owner, tries, expires_ms, created_ms, n1, ...}   its worker is provably gone mid-call
--   {'reconcile', unit, sms_id, acked_ms, n1, ...}             accepted; its callbacks did not all come
--   {'expired', unit, count, created_ms}                       validity ran out before dispatch
local lane, now, want = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
local ctx = {now = ARGV[2], iso = ARGV[3]}
local lease, owner, grace = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[8])
local caps = ARGV[9] ~= '' and cjson.decode(ARGV[9]) or nil
local qkey = P.lane .. lane
local rnow = nil

-- The soonest timer this take sets (the lane's next timer may be one of them).
local soonest = nil
local set_timer = timer
local function timer(m, at)
  if not soonest or at < soonest then soonest = at end
  set_timer(m, at)
end

local function clock()
  if not rnow then rnow = redis_now() end
  return rnow
end

local function liveness(who)
  local v = redis.call('GET', P.worker .. who)
  if not v then return nil, nil end
  local since, beat = string.match(v, '^(%d+)|(%d+)$')
  return tonumber(since), tonumber(beat)
end

-- Is `other` provably gone? Only when it missed every beat during a span in which Redis served this worker
-- without a gap for longer than the grace: after any outage each live worker beats again within a third of it,
-- so a worker that was merely cut off with everyone else is never taken for dead.
-- Returns gone, ms until it is worth asking again.
local function gone(other)
  local t = clock()
  local _, beat = liveness(other)
  if beat and t - beat <= grace then return false, grace - (t - beat) + 10 end
  local since, mine = liveness(owner)
  if since and mine and t - mine <= grace and t - since > grace then return true, 0 end
  return false, grace
end

-- uBill capacity, shared by every worker through one-second windows (Redis clock). Per dimension:
--   never more than the cap in a window, except one call bigger than a whole window, alone in an empty one
--   (a unit made under a larger limit must not wait forever); a lane may always use its own share; beyond it,
--   it leaves OTP's unused reserve and a waiting lower lane's unused share, and yields to a waiting higher lane.
local ORDER = {'otp', 'transactional', 'bulk'}
local function capacity(n)
  local t = clock()
  local second = math.floor(t / 1000)
  local wkey = P.rate .. second
  local used = {}
  local flat = redis.call('HGETALL', wkey)
  for i = 1, #flat, 2 do used[flat[i]] = tonumber(flat[i + 1]) end
  local waiting = {}
  for _, other in ipairs(ORDER) do waiting[other] = redis.call('EXISTS', P.demand .. other) == 1 end
  local need = {calls = 1, numbers = n}
  local function quota(name, cap) return math.floor((caps.shares[name] or 0) * cap) end
  local function fits(dim)
    local cap = tonumber(caps[dim]) or 0
    if cap <= 0 then return true end
    local total = used[dim] or 0
    local higher_waiting = false
    for _, other in ipairs(ORDER) do
      if other == lane then break end
      if waiting[other] then higher_waiting = true end
    end
    if need[dim] > cap then return total == 0 and not higher_waiting end
    if total + need[dim] > cap then return false end
    local mine = used[dim .. ':' .. lane] or 0
    if mine + need[dim] <= quota(lane, cap) then return true end
    if higher_waiting then return false end
    local reserve = 0
    for _, other in ipairs(ORDER) do
      if other ~= lane and (other == 'otp' or waiting[other]) then
        reserve = reserve + math.max(0, quota(other, cap) - (used[dim .. ':' .. other] or 0))
      end
    end
    return total + need[dim] + reserve <= cap
  end
  if fits('calls') and fits('numbers') then
    redis.call('HINCRBY', wkey, 'calls', 1)
    redis.call('HINCRBY', wkey, 'calls:' .. lane, 1)
    redis.call('HINCRBY', wkey, 'numbers', n)
    redis.call('HINCRBY', wkey, 'numbers:' .. lane, n)
    redis.call('PEXPIRE', wkey, C.RATE_WINDOW_TTL_MS)
    return 0
  end
  redis.call('SET', P.demand .. lane, '1', 'PX', C.DEMAND_TTL_MS)
  return 1000 - (t % 1000)
end

local function append(out, job, numbers)
  for _, n in ipairs(numbers) do job[#job + 1] = n end
  out[#out + 1] = job
end

local function dispatching(m, numbers)
  local fields = {}
  for i, n in ipairs(numbers) do fields[i] = 'r:' .. n end
  local out = {}
  for i, v in ipairs(redis.call('HMGET', m.key, unpack(fields))) do
    if v and rec_parse(v).s == 'dispatching' then out[#out + 1] = numbers[i] end
  end
  return out
end

-- The gone owner whose attempt this worker took over, while the unit is still that attempt (else nil).
local function inherited(unit)
  local n = string.len(C.TAKEN_OVER)
  if string.sub(unit.reason, 1, n) == C.TAKEN_OVER then return string.sub(unit.reason, n + 1) end
  return nil
end

-- Claim: recipients still waiting become dispatching. A unit whose every number is waiting (open = all) is
-- written without reading its records: a waiting record holds no smsID, status code or error.
local function claim(m, unit, numbers)
  local writes = {}
  if unit.open == #numbers then
    local changed = {}
    for _, n in ipairs(numbers) do
      local rec = {s = 'dispatching', u = ctx.now, sms = '', sid = '', err = ''}
      writes[#writes + 1] = 'r:' .. n
      writes[#writes + 1] = rec_str(rec)
      changed[#changed + 1] = {n, rec}
    end
    return changed, writes
  end
  return plan(m, numbers, 'dispatching', ctx, nil, WAITING, writes), writes
end

local out = {0, ''}
local taken = 0
local window = tonumber(ARGV[7])
-- The lane's head by rank: the due timers and, after them, the next one, so a take of a lane with little due
-- reads once. Only a head that is all due needs the due range read in full.
local head = redis.call('ZRANGE', qkey, 0, C.TAKE_HEAD - 1, 'WITHSCORES')
local due, upcoming = {}, nil
for i = 1, #head, 2 do
  if tonumber(head[i + 1]) > now then upcoming = tonumber(head[i + 1]) break end
  due[#due + 1] = head[i]
end
local head_all_due = upcoming == nil and #head == 2 * C.TAKE_HEAD
if head_all_due then due = redis.call('ZRANGEBYSCORE', qkey, '-inf', now, 'LIMIT', 0, window) end
for _, member in ipairs(due) do
  if taken >= want then break end
  local id, k = string.match(member, '^(.*):(%d+)$')
  local m, unit, numbers = nil, nil, nil
  if id then m, unit, numbers = load(id, k) end
  if not m or not unit then
    redis.call('ZREM', qkey, member)
  elseif unit.st == 'new' then
    if now >= m.ea then
      unit.st, unit.reason = 'done', 'expired'
      local changed = move(m, numbers, 'expired', ctx, {err = 'not handed to uBill before expires_at'}, WAITING, unit)
      no_timer(m)
      out[#out + 1] = {'expired', member, #changed, m.ca}
    else
      local wait = caps and capacity(#numbers) or 0
      if wait > 0 then out[1] = wait break end
      local changed, writes = claim(m, unit, numbers)
      unit.st, unit.owner, unit.at, unit.open = 'calling', owner, now, #changed
      if #changed == 0 then
        unit.st, unit.owner, unit.reason = 'done', '', 'nothing to send'
        no_timer(m)
      else
        timer(m, now + lease)
      end
      write(m, with_unit(m, unit, writes))
      emit_all(m, changed, ctx)
      if #changed > 0 then
        local sending = {}
        for i, c in ipairs(changed) do sending[i] = c[1] end
        append(out, {'send', member, unit.tries, m.c, m.b, m.t, m.sl or '', m.ca, m.sa or '', m.ea, m.x or ''}, sending)
        taken = taken + 1
      end
    end
  elseif unit.st == 'calling' then
    if unit.owner == owner then
      timer(m, now + lease)
      -- This worker's own claim comes back when it lost track of it (the take's answer lost, the job cut
      -- short). One it took over is still the gone owner's attempt, which may have reached uBill: orphaned
      -- again, so the ambiguity policy decides, never "nothing was sent".
      local previous = inherited(unit)
      if previous then
        append(out, {'orphaned', member, previous, unit.tries, m.ea, m.ca}, dispatching(m, numbers))
      else
        append(out, {'mine', member, unit.tries, m.ea, m.ca}, dispatching(m, numbers))
      end
      taken = taken + 1
    else
      local is_gone, recheck = gone(unit.owner)
      if is_gone then
        -- Take the attempt over: its outcome is this worker's to settle (by the ambiguity policy) now.
        local previous = unit.owner
        unit.owner, unit.reason = owner, C.TAKEN_OVER .. previous
        write(m, with_unit(m, unit, {}))
        timer(m, now + lease)
        append(out, {'orphaned', member, previous, unit.tries, m.ea, m.ca}, dispatching(m, numbers))
        taken = taken + 1
      else
        timer(m, now + recheck)
      end
    end
  elseif unit.st == 'acked' and unit.open > 0 and unit.sms ~= '' and now - unit.at < C.RECONCILE_GIVE_UP_MS then
    timer(m, now + lease)
    append(out, {'reconcile', member, unit.sms, unit.at}, numbers)
    taken = taken + 1
  else
    redis.call('ZREM', qkey, member)
  end
end
if taken < want and out[1] == 0 and #due < window then
  if head_all_due then
    upcoming = tonumber(redis.call('ZRANGEBYSCORE', qkey, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2])
  end
  if soonest and (not upcoming or soonest < upcoming) then upcoming = soonest end
  out[2] = upcoming and string.format('%.0f', upcoming) or 'none'
end
return out
