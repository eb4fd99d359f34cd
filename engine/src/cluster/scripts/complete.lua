-- complete(K; id, host, per_host, max_queue, hold_ms, requeue, defer_ms, robots,
--          crawl_delay_ms, robots_request, run, n, then n x (host, fp, shard, entry, robots,
--          run, bounded))
-- Ends lease `id`: frees its host's slot (unless `release` did), holds the host `hold_ms` from now when that is
-- later than it was held anyway (429/503 back-off), puts `requeue` (when not empty) back at
-- the front of the host's queue, or among the deferred requests due `defer_ms` from now (a
-- retry after a back-off), records the host's robots.txt when `robots` is not empty (and
-- its Crawl-delay), and queues the page's new links with dedup, all at once. A lease that no
-- longer exists (completed already, or expired and reaped) changes nothing but the host's
-- hold (a 429 still slows the host) and its links, which are queued all the same (the
-- engine will not offer them again): returns 0.
if complete_lease(ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
    tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9]), ARGV[10] == '1',
    ARGV[11], 13, tonumber(ARGV[12])) then
  return 1
end
return 0
