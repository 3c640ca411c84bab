-- Take up to ARGV[2] due jobs of one arq queue that no worker runs, and mark them running (arq's in-progress
-- key, with the lease as its expiry). What arq does per job with WATCH/EXISTS/ZSCORE/MULTI (four round
-- trips), for a whole batch in one.
-- KEYS[1] lane queue   ARGV[1] now ms   ARGV[2] how many   ARGV[3] lease ms   ARGV[4] how far to look
-- Returns {job_id, score, job_id, score, ...}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
local wanted = tonumber(ARGV[2])
local out = {}
for i = 1, #due, 2 do
  if #out >= 2 * wanted then break end
  if redis.call('SET', '{{ARQ_IN_PROGRESS_PREFIX}}' .. due[i], '1', 'NX', 'PX', tonumber(ARGV[3])) then
    out[#out + 1] = due[i]
    out[#out + 1] = due[i + 1]
  end
end
return out
