-- offer(K; per_host, max_queue, bounded, n, then n x (host, fp, shard, entry, robots, run, bounded))
-- Queues new URLs with dedup; returns one code per URL (see offer in common.lua).
return offer_all(tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), 5)
