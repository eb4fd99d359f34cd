-- complete(K; id, host, pace, requeue, defer_ms, robots, crawl_delay_ms, robots_request,
--          run, counted, n, then n x (host, fp, shard, entry, robots, run, bounded, task))
-- Ends lease `id`: frees its host's slot (unless `release` did), moves the host's shared
-- 429/503 back-off as `pace` says and holds the host that long from now when that is later
-- than it was held anyway (see pace_host), puts `requeue` (when not empty) back at the front
-- of the host's queue, or among the deferred requests due `defer_ms` from now (a retry after
-- a back-off), records the host's robots.txt when `robots` is not empty (and its
-- Crawl-delay; `robots_request` '?' stores it only while the host's robots.txt is pending),
-- and queues the page's new links with dedup, all at once. A lease that no
-- longer exists (completed already, or expired and reaped) changes nothing but the host's
-- pace (a 429 still slows the host) and its links, which are queued all the same (the
-- engine will not offer them again): returns 0. `counted` '1' is a page sent and done for
-- good: one more of its host's pages (see `max_pages_per_host` in claim).
if complete_lease(ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6],
    tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10] == '1', 12, tonumber(ARGV[11])) then
  return 1
end
return 0
