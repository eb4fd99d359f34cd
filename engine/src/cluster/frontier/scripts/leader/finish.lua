-- finish(K; epoch)
-- Leader only: marks the crawl done when it was seeded and nothing is queued, leased or
-- deferred, all checked in one step. Returns 1 when it is done (now or before), 0 when work
-- is left, -1 when `epoch` is not the current leader's.
if redis.call('EXISTS', KEY.done) == 1 then return 1 end
if not is_leader(ARGV[1]) then return -1 end
return finish_crawl()
