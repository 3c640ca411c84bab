-- Idempotency-Key of POST /v1/messages.
-- KEYS[1] idempotency key   ARGV[1] 'begin' | 'abort'   ARGV[2] body hash   ARGV[3] pending ttl seconds
-- begin -> {'new'} (key reserved), {'inflight'}, {'replay', message_id, status_code}, {'mismatch'}
-- abort -> frees a reservation this request made (never a finished record)
local v = redis.call('GET', KEYS[1])
if ARGV[1] == 'abort' then
  if v == 'pending|' .. ARGV[2] then redis.call('DEL', KEYS[1]) end
  return {'ok'}
end
if not v then
  redis.call('SET', KEYS[1], 'pending|' .. ARGV[2], 'EX', tonumber(ARGV[3]))
  return {'new'}
end
local state, hash, message_id, code = string.match(v, '^([^|]*)|([^|]*)|?([^|]*)|?([^|]*)$')
if hash ~= ARGV[2] then return {'mismatch'} end
if state == 'pending' then return {'inflight'} end
return {'replay', message_id, code}
