-- elect(K; engine, ttl_ms)
-- Takes or renews the crawl's leader lease for `engine` (see `elect` in lib/leader.lua).
return elect(ARGV[1], tonumber(ARGV[2]))
