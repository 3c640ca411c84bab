-- Rewrite a key's own expiry: a write that changes nothing, so that the WAIT after it covers the write that
-- made the key, whichever connection made it (from Redis 7.2, WAIT counts only the connection's own writes).
-- Used before answering a replay as durable (SMSGW_REDIS_WAIT_REPLICAS); accept.lua does the same inline.
-- KEYS[1] the key. Returns its remaining ms (-2: gone, -1: no expiry).
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return ttl
