-- A client's request limit (GCRA, one self-expiring key per client) for calls other than sends, whose accept
-- script checks the same limit itself. ARGV[1] key   ARGV[2] requests per second   ARGV[3] burst
-- Returns 0 when allowed, else the ms to wait.
return gcra(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), redis_now())
