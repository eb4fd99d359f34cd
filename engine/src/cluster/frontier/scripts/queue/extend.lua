-- extend(K; lease_ms, ids...)
-- Pushes the end of each lease that still exists `lease_ms` from now; returns the ids of
-- those that do not (completed, or expired and reaped: their requests are another's now).
local lease_ms = tonumber(ARGV[1])
local until_ms = now_ms() + lease_ms
local missing = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEY.leases, ARGV[i]) then
    redis.call('ZADD', KEY.leases, 'XX', until_ms, ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
return missing
