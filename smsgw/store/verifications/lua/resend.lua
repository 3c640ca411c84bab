-- Send a pending verification's code again: cooldown, sends limit, pumping block and abuse windows first.
-- KEYS[1] record
-- ARGV[1] JSON {id, client, now, iso, minid, cooldown_ms, max_sends, safe, lim: [[count, window_ms] x3], mid}
-- Returns {'ok', sends, ea, sealed code, locale, brand, number, reference, previous mid, previous last}
--       | {'missing'} | {'final', status, changed} | {'cooldown', ms} | {'sends', ms} | {'blocked', ms}
--       | {'limited', which, ms}
local a = cjson.decode(ARGV[1])
local key = KEYS[1]
local v = load(key)
if not v or v.c ~= a.client then return {'missing'} end
if v.st ~= 'pending' then return {'final', v.st, 0} end
if a.now >= v.ea then
  finish(key, a.id, v, 'expired', v.att, a.now, a.iso, a.minid)
  return {'final', 'expired', 1}
end
if not a.safe then
  local blocked = redis.call('PTTL', V.block .. prefix_of(v.to))
  if blocked > 0 then return {'blocked', blocked} end
end
if a.now - v.last < a.cooldown_ms then return {'cooldown', v.last + a.cooldown_ms - a.now} end
if v.sends >= a.max_sends then return {'sends', v.ea - a.now} end
local sends = v.sends + 1
if not a.safe then
  local refused = take_windows(window_keys(v.to, v.c), a.lim, a.now, a.id .. ':' .. sends)
  if #refused > 0 then return refused end
end
redis.call('HSET', key, 'sends', sends, 'last', a.now, 'mid', a.mid)
return {'ok', sends, tostring(v.ea), v.code, v.loc, v.b, v.to, v.ref or '', v.mid, tostring(v.last)}
