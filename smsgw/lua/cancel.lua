-- Cancel every recipient not yet handed to uBill; drop the queue entries of units left with nothing to send.
-- KEYS[1] message hash   KEYS[2] lane queue
-- ARGV[1] client   ARGV[2] now ms   ARGV[3] now iso   ARGV[4] stream min id
-- Returns {'notfound'} or {'ok', cancelled_count}
local key = KEYS[1]
local meta = meta_of(key)
if not meta.c or meta.c ~= ARGV[1] then return {'notfound'} end
local message_id = string.sub(key, #PREFIX + 5)
local waiting = {queued = true, scheduled = true}
local count = 0
local fields = redis.call('HGETALL', key)
local units = {}
for i = 1, #fields, 2 do
  local f = fields[i]
  local kind = string.sub(f, 1, 2)
  if kind == 'r:' then
    local number = string.sub(f, 3)
    if move(key, meta, message_id, number, 'cancelled', ARGV[2], ARGV[3], ARGV[4], nil, waiting) then
      count = count + 1
    end
  elseif kind == 'u:' then
    units[#units + 1] = {k = string.sub(f, 3), unit = unit_parse(fields[i + 1])}
  end
end
for _, entry in ipairs(units) do
  if entry.unit.st == 'new' then
    local open = false
    for _, number in ipairs(split(redis.call('HGET', key, 'n:' .. entry.k), ',')) do
      local rec = rec_parse(redis.call('HGET', key, 'r:' .. number))
      if not is_terminal(rec.s) then open = true break end
    end
    if not open then
      local job_id = message_id .. ':' .. entry.k
      redis.call('ZREM', KEYS[2], job_id)
      redis.call('DEL', '{{ARQ_JOB_PREFIX}}' .. job_id)
      entry.unit.st = 'done'
      entry.unit.reason = 'cancelled'
      redis.call('HSET', key, 'u:' .. entry.k, unit_str(entry.unit))
    end
  end
end
return {'ok', count}
