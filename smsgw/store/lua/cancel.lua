-- Cancel every recipient not yet handed to uBill; a unit left with nothing to send is done and loses its timer.
-- ARGV[1] message id   ARGV[2] client   ARGV[3] now ms   ARGV[4] now iso
-- Returns {'notfound'} or {'ok', cancelled_count}
local message_id, client = ARGV[1], ARGV[2]
local ctx = {now = ARGV[3], iso = ARGV[4]}
local owner, count = unpack(redis.call('HMGET', P.msg .. message_id, 'c', 'u'))
if not owner or owner ~= client then return {'notfound'} end
local cancelled = 0
for k = 0, tonumber(count) - 1 do
  local m, unit, numbers = load(message_id, k)
  if unit and unit.st == 'new' then
    local writes = {}
    local changed = plan(m, numbers, 'cancelled', ctx, nil, WAITING, writes)
    cancelled = cancelled + #changed
    unit.open = math.max(0, unit.open - #changed)  -- a new unit's open count: its numbers still waiting
    if unit.open == 0 then unit.st, unit.reason = 'done', 'cancelled' end
    -- The HSET first: under maxmemory Redis refuses a script's first write if it may grow memory, and then
    -- the whole cancel is refused (a ZREM first would let everything after it through).
    if #changed > 0 then write(m, with_unit(m, unit, writes)) end
    if unit.open == 0 then no_timer(m) end
    emit_all(m, changed, ctx)
  end
end
return {'ok', cancelled}
