-- elect(K; engine, ttl_ms)
-- Takes or renews the crawl's leader lease for `engine` (see `elect` in common.lua).
return elect(ARGV[1], tonumber(ARGV[2]))
