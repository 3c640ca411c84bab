-- Cancel every recipient not yet handed to uBill; a unit left with nothing to send is done and loses its timer.
-- ARGV[1] message id   ARGV[2] client   ARGV[3] now ms   ARGV[4] now iso   ARGV[5] stream min id
-- Returns {'notfound'} or {'ok', cancelled_count}
local message_id, client = ARGV[1], ARGV[2]
local ctx = {now = ARGV[3], iso = ARGV[4], minid = ARGV[5]}
local key = P.msg .. message_id
local owner, count = unpack(redis.call('HMGET', key, 'c', 'u'))
if not owner or owner ~= client then return {'notfound'} end
local cancelled = 0
for k = 0, tonumber(count) - 1 do
  local m, unit, numbers = load(message_id, k)
  if unit and unit.st == 'new' then
    local writes = {}
    local changed = plan(m, numbers, 'cancelled', ctx, nil, WAITING, writes)
    cancelled = cancelled + #changed
    if #changed == #numbers or count_open(m, numbers) == #changed then
      unit.st, unit.reason = 'done', 'cancelled'
      writes[#writes + 1] = 'u:' .. k
      writes[#writes + 1] = unit_str(unit)
      no_timer(m)
    end
    write(m, writes)
    emit_all(m, changed, ctx)
  end
end
return {'ok', cancelled}
