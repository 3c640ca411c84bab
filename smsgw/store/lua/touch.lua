-- Before answering a replay as durable (SMSGW_REDIS_WAIT_REPLICAS): rewrite the replayed key's expiry, so the
-- WAIT after this script covers the original's write (touch_expiry in _lib.lua; accept.lua does the same).
-- KEYS[1] the key. Returns its remaining ms (-2: gone, -1: no expiry).
return touch_expiry(KEYS[1])
