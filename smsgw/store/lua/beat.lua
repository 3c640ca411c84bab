-- A worker's heartbeat: its liveness record (Redis clock) and the leases of the units it is working on.
-- ARGV[1] owner   ARGV[2] grace ms   ARGV[3] now ms (worker clock, for timers)   ARGV[4] lease ms
-- ARGV[5] JSON {lane: [unit, ...]} of the units this worker runs   ARGV[6] '1' to sign off (clean stop)
-- `since` restarts after any gap longer than the grace, so take.lua can tell a worker Redis has served
-- continuously from one that has just come back (see take.lua: gone). A lease is extended only while the unit
-- is still `calling` by this worker: a settle that landed first (a retry due soon, reconciliation later, no
-- timer at all) is never overwritten, so settles need no ordering against heartbeats.
local key = P.worker .. ARGV[1]
if ARGV[6] == '1' then
  redis.call('DEL', key)
  return 0
end
local now = redis_now()
local since = now
local v = redis.call('GET', key)
if v then
  local s, b = string.match(v, '^(%d+)|(%d+)$')
  if s and now - tonumber(b) <= tonumber(ARGV[2]) then since = tonumber(s) end
end
redis.call('SET', key, string.format('%d|%d', since, now), 'PX', C.WORKER_TTL_MS)
local at = tonumber(ARGV[3]) + tonumber(ARGV[4])
local extended = 0
for lane, units in pairs(cjson.decode(ARGV[5])) do
  for _, unit in ipairs(units) do
    local id, k = string.match(unit, '^(.*):(%d+)$')
    local u = id and unit_parse(redis.call('HGET', P.msg .. id, 'u:' .. k))
    if u and u.st == 'calling' and u.owner == ARGV[1] then
      extended = extended + redis.call('ZADD', P.lane .. lane, 'XX', 'CH', at, unit)
    end
  end
end
return extended
