-- offer(K; bounded, n, then n x (host, fp, shard, entry, robots, run, bounded, task))
-- Queues new URLs with dedup; returns one code per URL (see offer in lib/offer.lua).
return offer_all(tonumber(ARGV[1]), tonumber(ARGV[2]), 3)
