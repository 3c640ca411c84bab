-- Record one check of a verification (the gateway compared the code in constant time: ARGV says whether
-- it matched). Every check of a pending verification counts; a final one counts nothing.
-- KEYS[1] record
-- ARGV[1] JSON {id, client, match, max_attempts, now, iso, minid, approval_window_ms (0: not counted)}
-- Returns {status, attempts, changed (1 when this check changed the status)} or {'missing'}
local a = cjson.decode(ARGV[1])
local key = KEYS[1]
local v = load(key)
if not v or v.c ~= a.client then return {'missing'} end
if v.st ~= 'pending' then return {v.st, v.att, 0} end
if a.now >= v.ea then
  finish(key, a.id, v, 'expired', v.att, a.now, a.iso, a.minid)
  return {'expired', v.att, 1}
end
local attempts = v.att + 1
if a.match then
  finish(key, a.id, v, 'approved', attempts, a.now, a.iso, a.minid)
  if a.approval_window_ms > 0 then
    local approved = V.guard_a .. prefix_of(v.to)
    redis.call('ZADD', approved, v.ca, a.id)
    redis.call('PEXPIRE', approved, a.approval_window_ms)
  end
  return {'approved', attempts, 1}
end
if attempts >= a.max_attempts then
  finish(key, a.id, v, 'failed', attempts, a.now, a.iso, a.minid)
  return {'failed', attempts, 1}
end
redis.call('HSET', key, 'att', attempts, 'ua', a.now)
return {'pending', attempts, 0}
