-- Shared by every script (smsgw/lua.py prepends it). {{PREFIX}} is replaced with keys.PREFIX at load.
-- Records are compact strings so a 10,000-recipient message stays one small-ish hash:
--   recipient r:{number} = status|updated_ms|sms_id|status_id|error
--   unit      u:{k}      = state|owner|sms_id|tries|reason
local PREFIX = '{{PREFIX}}'

-- Keep in step with smsgw/statuses.py RANK.
local RANK = {scheduled = 0, queued = 1, dispatching = 2, unknown = 3, submitted = 4, sent = 5, pending = 6,
              delivered = 9, failed = 9, error = 9, rejected = 9, expired = 9, cancelled = 9}

local function is_terminal(status)
  return RANK[status] == 9
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
  local st, owner, sms, tries, reason = string.match(v, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  return {st = st, owner = owner, sms = sms, tries = tonumber(tries) or 0, reason = reason}
end

local function unit_str(u)
  return u.st .. '|' .. u.owner .. '|' .. u.sms .. '|' .. tostring(u.tries) .. '|' .. u.reason
end

local function split(s, sep)
  local out = {}
  if s == nil or s == '' then return out end
  for part in string.gmatch(s, '([^' .. sep .. ']+)') do out[#out + 1] = part end
  return out
end

local function msg_key(message_id)
  return PREFIX .. 'msg:' .. message_id
end

-- Meta fields every event or decision needs, in one HMGET.
local function meta_of(key)
  local v = redis.call('HMGET', key, 'c', 'p', 'ref', 'ca', 'sa', 'ea', 'b', 't', 'sl')
  return {c = v[1], p = v[2], ref = v[3], ca = v[4], sa = v[5], ea = v[6], b = v[7], t = v[8], sl = v[9]}
end

-- One status event: the contract's JSON on pub/sub (global + per client) and in the client's stream.
local function emit(meta, message_id, number, rec, iso, minid)
  local ev = cjson.encode({
    message_id = message_id,
    client = meta.c,
    reference = (meta.ref ~= nil and meta.ref ~= '') and meta.ref or cjson.null,
    number = number,
    status = rec.s,
    provider_sms_id = rec.sms ~= '' and rec.sms or cjson.null,
    provider_status_id = rec.sid ~= '' and tonumber(rec.sid) or cjson.null,
    occurred_at = iso,
  })
  redis.call('XADD', PREFIX .. 'stream:' .. meta.c, 'MINID', '~', minid, '*', 'event', ev)
  redis.call('PUBLISH', PREFIX .. 'events', ev)
  redis.call('PUBLISH', PREFIX .. 'events:' .. meta.c, ev)
end

-- Move one recipient to `status` if the state machine allows it; returns true when it changed.
-- `from` (optional) restricts the move to recipients currently in one of those statuses.
local function move(key, meta, message_id, number, status, now_ms, iso, minid, extra, from)
  local field = 'r:' .. number
  local v = redis.call('HGET', key, field)
  if not v then return false end
  local rec = rec_parse(v)
  if from and not from[rec.s] then return false end
  if not from then
    if is_terminal(rec.s) or RANK[status] <= RANK[rec.s] then return false end
  end
  rec.s = status
  rec.u = tostring(now_ms)
  if extra then
    if extra.sms then rec.sms = extra.sms end
    if extra.sid then rec.sid = extra.sid end
    if extra.err then rec.err = string.gsub(extra.err, '|', '/') end
  end
  redis.call('HSET', key, field, rec_str(rec))
  emit(meta, message_id, number, rec, iso, minid)
  return true
end

-- A provider status (callback, report or kept orphan) for one number of a known message.
-- Returns 'applied', 'duplicate' (not newer than what we have) or 'ignored' (number not in the message).
local function apply_provider_status(key, meta, message_id, number, status, sid, sms, now_ms, iso, minid)
  local v = redis.call('HGET', key, 'r:' .. number)
  if not v then return 'ignored' end
  if move(key, meta, message_id, number, status, now_ms, iso, minid, {sms = sms, sid = sid}, nil) then
    return 'applied'
  end
  return 'duplicate'
end

-- Callbacks kept for an smsID before the worker recorded it: apply them now.
local function apply_orphans(key, meta, message_id, sms, now_ms, minid)
  local okey = PREFIX .. 'orphan:' .. sms
  local kept = redis.call('LRANGE', okey, 0, -1)
  for _, entry in ipairs(kept) do
    local number, status, sid, iso = string.match(entry, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
    apply_provider_status(key, meta, message_id, number, status, sid, sms, now_ms, iso, minid)
  end
  if #kept > 0 then
    redis.call('DEL', okey)
    redis.call('ZREM', PREFIX .. 'orphans', sms)
  end
  return #kept
end

-- Remember a unit whose outcome is unknown under each of its numbers, so a callback for an smsID we never
-- learned can still be matched to it (see callback.lua).
local function mark_unsettled(key, message_id, k, ttl)
  local unit_id = message_id .. ':' .. k
  for _, number in ipairs(split(redis.call('HGET', key, 'n:' .. k), ',')) do
    local ukey = PREFIX .. 'unsettled:' .. number
    redis.call('SADD', ukey, unit_id)
    redis.call('EXPIRE', ukey, ttl)
  end
end

local function clear_unsettled(key, message_id, k)
  local unit_id = message_id .. ':' .. k
  for _, number in ipairs(split(redis.call('HGET', key, 'n:' .. k), ',')) do
    redis.call('SREM', PREFIX .. 'unsettled:' .. number, unit_id)
  end
end

-- Record that uBill accepted unit k under `sms`: index the smsID, queue it for reconciliation, apply orphans.
local function record_sms(key, meta, message_id, k, sms, now_ms, minid, sms_ttl)
  local unit_id = message_id .. ':' .. k
  redis.call('SET', PREFIX .. 'sms:' .. sms, unit_id, 'EX', sms_ttl)
  redis.call('ZADD', PREFIX .. 'awaiting', now_ms, unit_id)
  return apply_orphans(key, meta, message_id, sms, now_ms, minid)
end
