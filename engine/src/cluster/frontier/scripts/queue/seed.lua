-- seed(K; epoch, n, then n x (host, fp, shard, entry, robots, run, bounded, task))
-- Leader only, once per crawl: queues the crawl's seeds and marks it seeded (the crawl cannot
-- end before). Returns 1 when it seeded now, 0 when it was seeded before, -1 when `epoch` is
-- not the current leader's.
if not is_leader(ARGV[1]) then return -1 end
if redis.call('SET', KEY.seeded, '1', 'NX') == false then return 0 end
offer_all(0, tonumber(ARGV[2]), 3)
return 1
