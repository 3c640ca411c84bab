-- A client's request limit as GCRA (one key per client, no counters to sweep).
-- KEYS[1] client-rate key   ARGV[1] requests per second   ARGV[2] burst (requests)
-- Returns {1, 0} allowed or {0, retry_after_ms}.
if redis.replicate_commands then redis.replicate_commands() end
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = 1000 / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - (burst - 1) * interval
if now < allow_at then return {0, math.ceil(allow_at - now)} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return {1, 0}
