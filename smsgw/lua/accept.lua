-- Accept a message: its hash, its arq jobs and their lane entries, written together or not at all.
-- KEYS[1] message hash   KEYS[2] lane queue (arq zset)   KEYS[3] lane wake list
-- KEYS[4] idempotency key (or '')   KEYS[5] facade counter (or '')
-- ARGV[1] ttl seconds   ARGV[2] deadline ms   ARGV[3] idempotency value ('' = none)
-- ARGV[4] message id    ARGV[5] JSON {"f": [field, value, ...] (meta, units, recipients),
--                                   "j": [[job key, job payload, job id, queue score], ...]}
-- (one JSON argument instead of thousands: packing arguments is the client's most expensive step)
-- Returns {1, facade_id or ''} when written, {0} when the message id already exists, {-1} past the deadline.
-- The deadline is when the gateway gives up waiting and answers 503 "nothing accepted": a script that a
-- stalled Redis runs only after that (a long fsync, a paused process) must then write nothing.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[2]) then return {-1} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
local ttl = tonumber(ARGV[1])
local body = cjson.decode(ARGV[5])
local fields = body.f
local i = 1
while i <= #fields do
  local j = math.min(i + 1999, #fields)
  redis.call('HSET', KEYS[1], unpack(fields, i, j))
  i = j + 1
end
for _, job in ipairs(body.j) do
  redis.call('SET', job[1], job[2], 'EX', ttl)
  redis.call('ZADD', KEYS[2], job[4], job[3])
end
local facade_id = ''
if KEYS[5] ~= '' then
  facade_id = redis.call('INCR', KEYS[5])
  redis.call('SET', PREFIX .. 'facade:' .. facade_id, ARGV[4], 'EX', ttl)
  redis.call('HSET', KEYS[1], 'fid', facade_id)
end
redis.call('EXPIRE', KEYS[1], ttl)
if KEYS[4] ~= '' and ARGV[3] ~= '' then
  redis.call('SET', KEYS[4], ARGV[3], 'EX', {{IDEMPOTENCY_TTL}})
end
redis.call('LPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], 0, {{WAKE_CAP}} - 1)
return {1, tostring(facade_id)}
