-- A facade call was answered for certain: its fingerprint stops marking a call without an answer, but only
-- if it still names this call (a later identical call, itself unanswered, may have marked it since).
-- KEYS[1] the call's fingerprint key   ARGV[1] its mark, "{message id}|{facade smsID}" (accept.lua)
-- Returns 1 when removed, 0 when it named another call or was gone.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
