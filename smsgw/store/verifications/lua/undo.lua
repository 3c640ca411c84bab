-- Take back a create or a resend whose SMS was provably not accepted (the accept script wrote nothing):
-- the record (create) or its send count (resend), and the abuse-window entries it took.
-- KEYS[1] record   KEYS[2] idempotency key ('' = none)
-- ARGV[1] JSON {id, mode: 'create' | 'resend', mid, digest, prev_mid, prev_last}
-- Returns 1 (taken back), or 0 when the SMS (message mid) is stored: then nothing is touched.
local a = cjson.decode(ARGV[1])
local key = KEYS[1]
-- Stored after all (a retry with the create's key sent the same SMS under the same id): nothing to take back.
if redis.call('EXISTS', P.msg .. a.mid) == 1 then return 0 end
local v = load(key)
if v and v.mid == a.mid then
  local wkeys = window_keys(v.to, v.c)
  for i = 1, 3 do redis.call('ZREM', wkeys[i], a.id .. ':' .. v.sends) end
  if a.mode == 'create' then
    redis.call('DEL', key)
    redis.call('ZREM', EXPIRIES, a.id)
    redis.call('ZREM', V.guard_s .. prefix_of(v.to), a.id)
  else
    redis.call('HSET', key, 'sends', v.sends - 1, 'last', a.prev_last, 'mid', a.prev_mid)
  end
end
if KEYS[2] ~= '' and redis.call('GET', KEYS[2]) == 'pending|' .. a.digest .. '|' .. a.id then
  redis.call('DEL', KEYS[2])
end
return 1
