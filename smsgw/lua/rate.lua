-- Take uBill capacity for one call of `n` numbers from `lane`, shared by every worker (one-second windows).
-- ARGV[1] lane   ARGV[2] n   ARGV[3] calls/s cap (0 = none)   ARGV[4] numbers/s cap (0 = none)
-- ARGV[5] otp reserve   ARGV[6] transactional min share   ARGV[7] bulk min share
-- Returns {1, 0} granted or {0, wait_ms}.
-- Rules, per dimension (calls, numbers):
--   * never more than the cap in a window;
--   * a lane may always use its own share (otp: reserve, others: min share) while there is room;
--   * beyond its share a lane must leave the unused shares of others: OTP's always (so an OTP never waits
--     behind bulk), a lower lane's only while it is waiting (so idle reservations cost nothing);
--   * beyond its share a lane yields to any higher lane that is waiting (priority on the surplus).
if redis.replicate_commands then redis.replicate_commands() end
local lane, n = ARGV[1], tonumber(ARGV[2])
local caps = {calls = tonumber(ARGV[3]), numbers = tonumber(ARGV[4])}
local need = {calls = 1, numbers = n}
local share = {otp = tonumber(ARGV[5]), transactional = tonumber(ARGV[6]), bulk = tonumber(ARGV[7])}
-- Shares are whole units of the cap: 10% of 1 call/s reserves nothing rather than blocking every call.
local function quota(lane_name, cap) return math.floor(share[lane_name] * cap) end
local order = {'otp', 'transactional', 'bulk'}
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wkey = PREFIX .. 'rate:' .. t[1]
local used = {}
local flat = redis.call('HGETALL', wkey)
for i = 1, #flat, 2 do used[flat[i]] = tonumber(flat[i + 1]) end
local waiting = {}
for _, other in ipairs(order) do
  waiting[other] = redis.call('EXISTS', PREFIX .. 'demand:' .. other) == 1
end
local function fits(dim)
  local cap = caps[dim]
  if cap <= 0 then return true end
  local total = used[dim] or 0
  if total + need[dim] > cap then return false end
  local mine = used[dim .. ':' .. lane] or 0
  if mine + need[dim] <= quota(lane, cap) then return true end
  local reserve = 0
  local higher = true
  for _, other in ipairs(order) do
    if other == lane then
      higher = false
    else
      if higher and waiting[other] then return false end
      if other == 'otp' or waiting[other] then
        reserve = reserve + math.max(0, quota(other, cap) - (used[dim .. ':' .. other] or 0))
      end
    end
  end
  return total + need[dim] + reserve <= cap
end
if fits('calls') and fits('numbers') then
  redis.call('HINCRBY', wkey, 'calls', 1)
  redis.call('HINCRBY', wkey, 'calls:' .. lane, 1)
  redis.call('HINCRBY', wkey, 'numbers', n)
  redis.call('HINCRBY', wkey, 'numbers:' .. lane, n)
  redis.call('PEXPIRE', wkey, {{RATE_WINDOW_TTL_MS}})
  return {1, 0}
end
redis.call('SET', PREFIX .. 'demand:' .. lane, '1', 'PX', {{DEMAND_TTL_MS}})
return {0, 1000 - (now_ms % 1000)}
