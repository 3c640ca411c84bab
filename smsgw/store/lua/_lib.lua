-- Shared by every script; comes after the generated prelude (P key prefixes, C constants, RANK, TERMINAL_RANK).
-- Scripts take ids (message id, unit k, smsID, lane, owner) and build keys with P; see smsgw/store/keys.py.
-- Records (smsgw/store/records.py reads the same formats):
--   recipient r:{number} = status|updated_ms|sms_id|status_id|error
--   unit      u:{k}      = state|owner|sms_id|tries|open|at_ms|reason   (absent: new, all numbers waiting)
-- Cost matters (every command and AOF byte is paid per message): a script reads each record once (one HMGET
-- for meta, unit, numbers and the records it already knows it needs) and writes the hash once.
if redis.replicate_commands then redis.replicate_commands() end

local WAITING = {queued = true, scheduled = true}
local ACKABLE = {dispatching = true, unknown = true, queued = true, scheduled = true}

local function is_terminal(status)
  return RANK[status] == TERMINAL_RANK
end

local function rec_parse(v)
  local s, u, sms, sid, err = string.match(v, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  return {s = s, u = u, sms = sms, sid = sid, err = err}
end

local function rec_str(r)
  return r.s .. '|' .. r.u .. '|' .. r.sms .. '|' .. r.sid .. '|' .. r.err
end

local function unit_parse(v)
  if not v then return nil end
  local st, owner, sms, tries, open, at, reason =
    string.match(v, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if not st then return nil end
  return {st = st, owner = owner, sms = sms, tries = tonumber(tries) or 0, open = tonumber(open) or 0,
          at = tonumber(at) or 0, reason = reason}
end

local function unit_str(u)
  local reason = string.gsub(u.reason or '', '|', '/')
  return u.st .. '|' .. u.owner .. '|' .. u.sms .. '|' .. tostring(u.tries) .. '|' .. tostring(u.open) .. '|'
    .. tostring(u.at) .. '|' .. reason
end

local function split(s, sep)
  local out = {}
  if s == nil or s == false or s == '' then return out end
  for part in string.gmatch(s, '([^' .. sep .. ']+)') do out[#out + 1] = part end
  return out
end

local function contains(list, value)
  for _, v in ipairs(list) do if v == value then return true end end
  return false
end

-- Redis's own clock in ms: the one clock every worker's liveness is written and read in.
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- One message: meta fields, unit k, its numbers, and the records of `known` numbers, in one HMGET.
-- Returns nil when the message is gone (expired from Redis). m.raws maps each known number to its record.
local function load(message_id, k, known)
  local key = P.msg .. message_id
  local fields = {'c', 'p', 'ref', 'ca', 'sa', 'ea', 'b', 't', 'sl', 'x', 'u:' .. k, 'n:' .. k}
  if known then for _, n in ipairs(known) do fields[#fields + 1] = 'r:' .. n end end
  local v = redis.call('HMGET', key, unpack(fields))
  if not v[1] then return nil end
  local m = {key = key, id = message_id, k = tostring(k), c = v[1], p = v[2], ref = v[3], ca = v[4], sa = v[5],
             ea = tonumber(v[6]), b = v[7], t = v[8], sl = v[9], x = v[10], raws = {}}
  if known then for i, n in ipairs(known) do m.raws[n] = v[12 + i] end end
  local numbers = split(v[12], ',')
  local unit = unit_parse(v[11])
  if not unit and v[12] then
    unit = {st = 'new', owner = '', sms = '', tries = 0, open = #numbers, at = 0, reason = ''}
  end
  return m, unit, numbers
end

-- One status event: the contract's JSON on pub/sub (global + per client) and in the client's stream (trimmed
-- by age by upkeep.lua, not on every append: MINID on each XADD costs AOF bytes per event).
local function emit(m, number, rec, ctx)
  local ev = cjson.encode({
    message_id = m.id,
    client = m.c,
    reference = (m.ref ~= nil and m.ref ~= false and m.ref ~= '') and m.ref or cjson.null,
    number = number,
    status = rec.s,
    provider_sms_id = rec.sms ~= '' and rec.sms or cjson.null,
    provider_status_id = rec.sid ~= '' and tonumber(rec.sid) or cjson.null,
    occurred_at = ctx.iso,
  })
  redis.call('XADD', P.stream .. m.c, '*', 'event', ev)
  redis.call('PUBLISH', C.EVENTS_CHANNEL, ev)
  redis.call('PUBLISH', P.channel .. m.c, ev)
end

-- Plan moving `numbers` to `status`: their records come from m.raws when load read them, else one HMGET.
-- Appends the changed ones to `writes` (HSET arguments) and returns the changed list ({number, rec}) and how
-- many of the others are not final. `from` (optional) restricts the move to recipients in one of those
-- statuses; otherwise a move only goes forward and never leaves a terminal status.
local function plan(m, numbers, status, ctx, extra, from, writes)
  local changed, still_open = {}, 0
  if #numbers == 0 then return changed, still_open end
  local raws = {}
  local missing = {}
  for i, n in ipairs(numbers) do
    local v = m.raws[n]
    if v == nil then missing[#missing + 1] = i else raws[i] = v end
  end
  if #missing > 0 then
    local fields = {}
    for j, i in ipairs(missing) do fields[j] = 'r:' .. numbers[i] end
    local got = redis.call('HMGET', m.key, unpack(fields))
    for j, i in ipairs(missing) do raws[i] = got[j] end
  end
  for i, n in ipairs(numbers) do
    local v = raws[i]
    if v then
      local rec = rec_parse(v)
      local ok
      if from then ok = from[rec.s] else ok = not is_terminal(rec.s) and RANK[status] > RANK[rec.s] end
      if ok then
        rec.s = status
        rec.u = ctx.now
        if extra then
          if extra.sms then rec.sms = extra.sms end
          if extra.sid then rec.sid = extra.sid end
          if extra.err then rec.err = string.gsub(extra.err, '|', '/') end
        end
        local s = rec_str(rec)
        m.raws[n] = s
        writes[#writes + 1] = 'r:' .. n
        writes[#writes + 1] = s
        changed[#changed + 1] = {n, rec}
      elseif not is_terminal(rec.s) then
        still_open = still_open + 1
      end
    end
  end
  return changed, still_open
end

-- The unit record joins the same HSET as the recipients.
local function with_unit(m, unit, writes)
  writes[#writes + 1] = 'u:' .. m.k
  writes[#writes + 1] = unit_str(unit)
  return writes
end

local function write(m, writes)
  if #writes > 0 then redis.call('HSET', m.key, unpack(writes)) end
end

local function emit_all(m, changed, ctx)
  for _, c in ipairs(changed) do emit(m, c[1], c[2], ctx) end
end

-- Plan, write (with the unit record when given) and publish in one go; returns the changed list.
local function move(m, numbers, status, ctx, extra, from, unit)
  local writes = {}
  local changed = plan(m, numbers, status, ctx, extra, from, writes)
  if unit then with_unit(m, unit, writes) end
  write(m, writes)
  emit_all(m, changed, ctx)
  return changed
end

-- A unit's lane timer: the next moment a worker must look at it (or none once it is finished).
local function timer(m, at)
  redis.call('ZADD', P.lane .. m.p, at, m.id .. ':' .. m.k)
end

local function no_timer(m)
  redis.call('ZREM', P.lane .. m.p, m.id .. ':' .. m.k)
end

-- Units whose outcome is unknown, indexed by number, so a callback for an smsID we never learned can be
-- matched to them (callback.lua).
local function mark_unsettled(m, numbers)
  local unit = m.id .. ':' .. m.k
  for _, number in ipairs(numbers) do
    local ukey = P.unsettled .. number
    redis.call('SADD', ukey, unit)
    redis.call('EXPIRE', ukey, C.UNSETTLED_TTL)
  end
end

local function clear_unsettled(m, numbers)
  local unit = m.id .. ':' .. m.k
  for _, number in ipairs(numbers) do redis.call('SREM', P.unsettled .. number, unit) end
end

-- A provider status (callback, report line or kept orphan) for one number of unit m.k, written together with
-- the unit's count of open recipients. Returns 'applied', 'duplicate' (not newer than what we have) or
-- 'ignored' (number not in that unit).
local function apply_status(m, unit, numbers, number, status, sid, sms, ctx)
  if not contains(numbers, number) then return 'ignored' end
  local writes = {}
  local changed = plan(m, {number}, status, ctx, {sms = sms, sid = sid}, nil, writes)
  if #changed == 0 then return 'duplicate' end
  local finished = false
  if unit and unit.st == 'acked' and is_terminal(status) then
    unit.open = math.max(0, unit.open - 1)
    with_unit(m, unit, writes)
    finished = unit.open == 0
  end
  write(m, writes)
  emit_all(m, changed, ctx)
  if finished then no_timer(m) end
  return 'applied'
end

-- The smsIDs with callbacks kept for `number`, dropping those whose kept callbacks expired (the number's set
-- is renewed by every new orphan, so it outlives them).
local function kept_for(number)
  local nkey = P.orphan_number .. number
  local live = {}
  for _, sms in ipairs(redis.call('SMEMBERS', nkey)) do
    if redis.call('EXISTS', P.orphan .. sms) == 1 then
      live[#live + 1] = sms
    else
      redis.call('SREM', nkey, sms)
    end
  end
  return live
end

local function drop_orphans(sms, entries)
  redis.call('DEL', P.orphan .. sms)
  redis.call('ZREM', C.ORPHANS, sms)
  for _, entry in ipairs(entries) do
    local number = string.match(entry, '^([^|]*)|')
    if number then redis.call('SREM', P.orphan_number .. number, sms) end
  end
end

-- Callbacks kept for `sms` before the worker recorded it: apply them now (unit must be acked with sms).
local function apply_orphans(m, unit, numbers, sms, ctx)
  local kept = redis.call('LRANGE', P.orphan .. sms, 0, -1)
  if #kept == 0 then return 0 end
  for _, entry in ipairs(kept) do
    local number, status, sid, iso = string.match(entry, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)')
    if number then apply_status(m, unit, numbers, number, status, sid, sms, {now = ctx.now, iso = iso}) end
  end
  drop_orphans(sms, kept)
  return #kept
end

-- uBill accepted unit m.k under `sms` (or adopted it by a callback): recipients submitted, smsID indexed,
-- kept callbacks applied, and the unit's timer set to its reconciliation time (or dropped when all are final).
-- `claimed`: the numbers the call carried (their records are in m.raws when load read them).
local function record_ack(m, unit, claimed, numbers, sms, ctx, reconcile_at)
  local writes = {}
  local changed, still_open = plan(m, claimed, 'submitted', ctx, {sms = sms}, ACKABLE, writes)
  unit.st, unit.sms, unit.reason, unit.at = 'acked', sms, '', tonumber(ctx.now)
  unit.open = #changed + still_open
  write(m, with_unit(m, unit, writes))
  emit_all(m, changed, ctx)
  if sms ~= '' then
    -- The index entry says whether callbacks came first (callback.lua leaves C.SMS_KEPT): one command, not two.
    local before = redis.call('SET', P.sms .. sms, m.id .. ':' .. m.k, 'EX', C.SMS_ID_TTL, 'GET')
    if before == C.SMS_KEPT then apply_orphans(m, unit, numbers, sms, ctx) end
  end
  if unit.open > 0 and sms ~= '' then timer(m, reconcile_at) else no_timer(m) end
  return #changed
end

-- GCRA: `rate` requests per second with a burst of `burst`; returns 0 when allowed, else ms to wait.
local function gcra(key, rate, burst, now)
  local interval = 1000 / rate
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local allow_at = tat - (burst - 1) * interval
  if now < allow_at then return math.ceil(allow_at - now) end
  local new_tat = tat + interval
  redis.call('SET', key, tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
  return 0
end

-- The matching rule for a lost answer (README: "Ambiguous outcomes"): a callback for an smsID we never learned
-- belongs to unit m.k only if the unit's call was out when it happened (date >= call start - slack), the unit's
-- outcome is unknown, and it is the only such reading: one smsID among the unit's numbers' kept callbacks, all
-- of whose numbers are in the unit. Returns true when the unit was adopted (acked with that smsID).
local ADOPT_SLACK_MS = 120000  -- uBill's date has second precision and its own clock
local function adopt_orphans(m, unit, claimed, numbers, ctx, reconcile_at)
  local found = nil
  for _, number in ipairs(claimed) do
    for _, sms in ipairs(kept_for(number)) do
      if found and found ~= sms then return false end
      found = sms
    end
  end
  if not found then return false end
  for _, entry in ipairs(redis.call('LRANGE', P.orphan .. found, 0, -1)) do
    local number, _, _, _, occurred = string.match(entry, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|?([^|]*)$')
    if not number or not contains(claimed, number) then return false end
    if (tonumber(occurred) or 0) < unit.at - ADOPT_SLACK_MS then return false end
  end
  record_ack(m, unit, claimed, numbers, found, ctx, reconcile_at)
  return true
end

-- Rewrite a key's own expiry: a write that changes nothing, so that a WAIT after the script covers the write
-- that made the key, whichever connection made it (from Redis 7.2, WAIT counts only a connection's own writes).
-- Returns the key's remaining ms (-2: gone, -1: no expiry).
local function touch_expiry(key)
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  return ttl
end
