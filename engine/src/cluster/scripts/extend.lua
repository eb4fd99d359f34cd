-- extend(K; lease_ms, ids...)
-- Pushes the end of each lease that still exists `lease_ms` from now; returns how many did.
local lease_ms = tonumber(ARGV[1])
local until_ms = now_ms() + lease_ms
local extended = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', K .. ':leases', ARGV[i]) then
    redis.call('ZADD', K .. ':leases', 'XX', until_ms, ARGV[i])
    extended = extended + 1
  end
end
return extended
