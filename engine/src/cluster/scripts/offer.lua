-- offer(K; per_host, max_queue, bounded, n, then n x (host, fp, shard, entry))
-- Queues new URLs with dedup; returns one code per URL (see offer in common.lua).
local per_host = tonumber(ARGV[1])
local max_queue = tonumber(ARGV[2])
local bounded = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local out = {}
for i = 0, n - 1 do
  local b = 5 + i * 4
  out[#out + 1] = offer(ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], bounded, max_queue, per_host)
end
return out
