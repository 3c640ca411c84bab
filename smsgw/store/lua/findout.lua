-- Did an accept whose answer was lost write its message? Definitive once Redis's clock is past the accept's
-- deadline: accept.lua refuses to write after it, so an accept still waiting in Redis can no longer land.
-- ARGV[1] message id   ARGV[2] the accept's deadline (ms, Redis clock)
-- Returns {'wait', ms} (ask again then), {'stored', facade_id or ''} or {'absent'}.
local now = redis_now()
local deadline = tonumber(ARGV[2])
if now <= deadline then return {'wait', deadline - now + 1} end
local key = P.msg .. ARGV[1]
if redis.call('EXISTS', key) == 0 then return {'absent'} end
return {'stored', redis.call('HGET', key, 'fid') or ''}
